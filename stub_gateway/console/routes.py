"""The console's Flask views (see the package docstring); what they show comes from
:mod:`.cards` and :mod:`.chain`, how votes are guarded from :mod:`.guard`."""

from __future__ import annotations

from typing import Any, Final

from flask import (
    Blueprint,
    Response,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.sansio.blueprints import BlueprintSetupState
from markupsafe import Markup
from werkzeug.http import generate_etag, quote_etag

from .. import task_routes
from .._http import current_gateway, json_error
from . import cards, chain
from .guard import cross_site_problem, token_of

__all__ = ["console"]

POLL_MILLISECONDS: Final = 1500
SECURITY_HEADERS: Final = {
    # Nothing but this origin's own script and stylesheet runs or loads: even a value that
    # escaped escaping could not execute. No framing (the buttons cannot be clickjacked).
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

console = Blueprint(
    "console",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/console/static",
)


@console.record_once
def _made(state: BlueprintSetupState) -> None:
    token_of(state.app)


@console.context_processor
def _shared() -> dict[str, Any]:
    gateway = current_gateway()
    return {
        "network": gateway.network,
        "genesis_hash": gateway.genesis_hash,
        "console_token": token_of(current_app),
        "poll_ms": POLL_MILLISECONDS,
    }


@console.after_request
def _secured(response: Response) -> Response:
    if request.endpoint != "console.static":
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


@console.get("/")
def index() -> str:
    """This page: the gateway's chain, treasury, mints and routes."""
    gateway = current_gateway()
    base = request.host_url.rstrip("/")
    return render_template(
        "console/index.html",
        base=base,
        treasury=str(gateway.treasury),
        fee_payer=str(gateway.genesis.fee_payer.pubkey()),
        tokens=list(gateway.genesis.tokens.values()),
        policy=gateway.tasks.policy.kind,
        routes=_routes(),
    )


@console.get("/review")
def review() -> str:
    """The reviewer console: pending tasks to approve or reject."""
    live, etag = _live("console/_review.html", board=cards.board(current_gateway().tasks))
    return render_template(
        "console/review.html", live=live, etag=etag, live_url=url_for(".review_live")
    )


@console.get("/review/live")
def review_live() -> Response:
    """The review page's tasks as HTML, 304 while unchanged (the page polls it)."""
    return _conditional("console/_review.html", board=cards.board(current_gateway().tasks))


@console.post("/review/tasks/<task_id>/votes")
def vote(task_id: str) -> Any:
    """A vote from the review page: the task API's own vote, once the request is same-site."""
    problem = cross_site_problem(request, token_of(current_app))
    if problem is not None:
        return json_error(403, "cross_site_request", problem)
    return task_routes.vote(task_id)


@console.get("/payments")
def payments() -> Any:
    """The treasury and its recent settlements; ``?q=`` looks up a signature or address."""
    query = request.args.get("q")
    if query is not None:
        found = chain.parse_lookup(query)
        if found is not None:
            kind, key = found
            if kind == "transaction":
                return redirect(url_for(".transaction", signature=key))
            return redirect(url_for(".account", address=key))
    live, etag = _live("console/_payments.html", **_payments_now())
    page = render_template(
        "console/payments.html",
        live=live,
        etag=etag,
        live_url=url_for(".payments_live"),
        query=query,
        bad_query=query is not None,
    )
    return page if query is None else (page, 400)


@console.get("/payments/live")
def payments_live() -> Response:
    """The payments page's treasury and settlements as HTML, 304 while unchanged."""
    return _conditional("console/_payments.html", **_payments_now())


@console.get("/payments/tx/<signature>")
def transaction(signature: str) -> Any:
    """One transaction: status, fee, signers, balance changes, logs."""
    found = chain.parse_lookup(signature)
    view = None
    if found is not None and found[0] == "transaction":
        view = chain.transaction_view(current_gateway(), found[1])
    page = render_template("console/transaction.html", signature=signature, tx=view)
    return page if view is not None else (page, 404)


@console.get("/payments/account/<address>")
def account(address: str) -> Any:
    """One account: balance, owner, what it holds, its latest transactions."""
    found = chain.parse_lookup(address)
    if found is None or found[0] != "account":
        return render_template("console/account.html", address=address, view=None), 404
    view = chain.account_view(current_gateway(), found[1])
    return render_template("console/account.html", address=address, view=view)


def _payments_now() -> dict[str, Any]:
    gateway = current_gateway()
    return {
        "treasury": chain.treasury(gateway),
        "settlements": chain.recent_settlements(gateway),
    }


def _live(template: str, **context: Any) -> tuple[Markup, str]:
    """A page's changing part, rendered (autoescaped) once, and its ETag."""
    html = render_template(template, **context)
    return Markup(html), quote_etag(generate_etag(html.encode()))  # noqa: S704 - rendered


def _conditional(template: str, **context: Any) -> Response:
    html, etag = _live(template, **context)
    response = make_response(str(html))
    response.set_etag(etag.strip('"'))
    response.make_conditional(request)
    return response


def _routes() -> list[tuple[str, str, str]]:
    """Every route of the app: rule, methods, the first line of its view's docstring."""
    found = []
    for rule in current_app.url_map.iter_rules():
        if rule.endpoint.endswith("static"):
            continue
        methods = ", ".join(sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}))
        view = current_app.view_functions.get(rule.endpoint)
        doc = (view.__doc__ or "").strip().splitlines() if view is not None else []
        found.append((rule.rule, methods, doc[0] if doc else ""))
    return sorted(found)
