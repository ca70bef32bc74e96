"""The reviewer console: server-rendered pages of the stub gateway, for people.

* ``GET /`` - an index of the gateway: its chain (network, genesis hash, RPC URL), its
  treasury and mints, every route, links.
* ``GET /review`` - the pending tasks (question, the AI's answer and confidence, reward, voters
  needed, votes so far) with Approve and Reject buttons and an optional comment, and the
  latest decided tasks. ``POST /review/tasks/<id>/votes`` records a vote through the very view
  of ``POST /api/v1/tasks/<id>/votes`` (:func:`stub_gateway.task_routes.vote`), after a
  cross-site check (:mod:`.guard`).
* ``GET /payments`` - the treasury's balances and its recent settlements; ``?q=`` looks up a
  transaction by signature or an account by address (``/payments/tx/<signature>``,
  ``/payments/account/<address>``).

The pages update themselves by light polling: ``/review/live`` and ``/payments/live`` answer
the page's changing part as HTML, with an ETag, and 304 while nothing changed
(``static/console.js``). No front-end build step: Jinja2 templates, one small script, one
stylesheet. What the pages show is read by Flask-free modules (:mod:`.cards`, :mod:`.chain`).
"""

from __future__ import annotations

from .routes import console

__all__ = ["console"]
