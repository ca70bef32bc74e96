"""Cross-site protection for the console's state-changing requests (its votes).

A vote from the page must carry the console's token in the ``X-Console-Token`` header: the
token is written into the console's pages, which another site's script cannot read (the
same-origin policy), and a cross-site form cannot set a header, while a cross-site ``fetch``
with one needs a CORS preflight this gateway never grants. Independently, a request a
browser marks as coming from another site (``Origin`` naming another host, or
``Sec-Fetch-Site`` other than ``same-origin``) is refused. The JSON API
(``POST /api/v1/tasks/<id>/votes``) stays as it is: it is for programs, not browsers.
"""

from __future__ import annotations

import secrets
from typing import Final
from urllib.parse import urlsplit

from flask import Request
from flask.sansio.app import App

__all__ = ["TOKEN_EXTENSION", "TOKEN_HEADER", "cross_site_problem", "token_of"]

TOKEN_EXTENSION: Final = "stub_gateway.console_token"  # noqa: S105 - where, not what
TOKEN_HEADER: Final = "X-Console-Token"  # noqa: S105 - a header name


def token_of(app: App) -> str:
    """The app's console token (made once per app, when the console is registered)."""
    token: str = app.extensions.setdefault(TOKEN_EXTENSION, secrets.token_urlsafe(32))
    return token


def cross_site_problem(request: Request, token: str) -> str | None:
    """Why ``request`` may be a cross-site request (so is refused), or None when it is not."""
    sent = request.headers.get(TOKEN_HEADER, "")
    if not secrets.compare_digest(sent.encode(), token.encode()):
        return (
            f"the vote has no valid {TOKEN_HEADER} header (the console's pages send it); "
            "reload the review page and vote again, or vote through /api/v1/tasks/<id>/votes"
        )
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        return f"a vote from another site ({origin}) is refused; vote from this gateway's page"
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        return f"a {site} vote is refused; vote from this gateway's own review page"
    return None
