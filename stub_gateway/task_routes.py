"""The HumanRPC task API routes: create a task (paid), list and read tasks, vote on one."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Final

from flask import Blueprint, g, jsonify, request

from human_rpc_sdk._headers import PAYMENT_HEADER
from human_rpc_sdk._money import MoneyError, format_amount, parse_decimal

from ._http import current_gateway, json_error
from .payments import Price, Settlement
from .tasks import VoteRejected

__all__ = ["tasks"]

MAX_TASK_REWARD: Final = Decimal(1000)
MAX_TASK_TEXT: Final = 20_000
TASK_STATES: Final = ("pending", "completed", "expired")
DEFAULT_LIST_LIMIT: Final = 100
MAX_LIST_LIMIT: Final = 1000

tasks = Blueprint("tasks", __name__, url_prefix="/api/v1/tasks")
"""The HumanRPC task API: create (paid), read, vote."""


@tasks.post("")
def create_task() -> Any:
    gateway = current_gateway()
    body = request.get_json(silent=True)
    problem = _task_problem(body)
    if problem is not None or not isinstance(body, dict):
        return json_error(400, "bad_task", problem or "expected a JSON object")
    try:
        price = _task_price(body, gateway.task_price)
    except ValueError as exc:
        return json_error(400, "bad_reward", str(exc))
    try:
        gateway.base_units(price.currency, price.amount)
    except ValueError as exc:
        return json_error(400, "bad_reward", f"rewardAmount: {exc}")
    agent = str(body.get("agentName") or request.remote_addr or "anonymous")
    if PAYMENT_HEADER not in request.headers:
        wait = gateway.tasks.retry_after(agent)
        if wait is not None:
            response = json_error(429, "rate_limited", f"too many tasks; retry after {wait:.1f} s")
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response

    @gateway.require_payment(price)
    def paid() -> Any:
        settlement: Settlement = g.settlement
        payment = {
            "signature": settlement.signature,
            "amount": format_amount(price.amount),
            "currency": price.currency,
        }
        task = gateway.tasks.create(body, _certainty(body), payment, agent)
        response = jsonify(
            {
                "status": "pending",
                "task_id": task.id,
                "consensus": task.consensus_json(),
                "paymentDetails": payment,
            }
        )
        response.status_code = 202
        return response

    return paid()


@tasks.get("")
def list_tasks() -> Any:
    """The tasks, oldest first; ``?status=pending`` (or completed, expired) filters them, so a
    person acting as reviewer finds what to judge. ``?limit=`` caps the list (default 100)."""
    status = request.args.get("status") or None
    if status is not None and status not in TASK_STATES:
        return json_error(400, "bad_status", f"status must be one of {', '.join(TASK_STATES)}")
    limit_text = request.args.get("limit", str(DEFAULT_LIST_LIMIT))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIST_LIMIT:
        return json_error(400, "bad_limit", f"limit must be a whole number 1..{MAX_LIST_LIMIT}")
    found = current_gateway().tasks.all(status)
    return jsonify(
        {"tasks": [task.to_json() for task in found[: int(limit_text)]], "total": len(found)}
    )


@tasks.get("/<task_id>")
def read_task(task_id: str) -> Any:
    gateway = current_gateway()
    task = gateway.tasks.get(task_id)
    if task is None:
        return json_error(404, "not_found", "Task not found")
    return jsonify(task.to_json())


@tasks.post("/<task_id>/votes")
def vote(task_id: str) -> Any:
    gateway = current_gateway()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return json_error(400, "bad_vote", "Invalid request body. Expected JSON.")
    try:
        return jsonify(
            gateway.tasks.vote(
                task_id, body.get("decision"), body.get("userId"), body.get("comment")
            )
        )
    except VoteRejected as exc:
        response = jsonify({"error": exc.message, **exc.body})
        response.status_code = exc.status
        return response


def _task_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return 'send JSON such as {"text": "Is this answer right?", "rewardAmount": "0.05"}'
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        return "Text field is required"
    if len(text) > MAX_TASK_TEXT:
        return f"text is longer than {MAX_TASK_TEXT} characters"
    if body.get("context") is not None and not isinstance(body["context"], dict):
        return "context must be a JSON object"
    return None


def _task_price(body: dict[str, Any], default: Price) -> Price:
    """The task's reward: ``rewardAmount`` in ``rewardCurrency`` (or the unit in ``reward``)."""
    raw = body.get("rewardAmount")
    reward_text = body.get("reward")
    currency = body.get("rewardCurrency")
    if raw is None and isinstance(reward_text, str) and reward_text.strip():
        raw, _, unit = reward_text.strip().partition(" ")
        currency = currency or unit or None
    if raw is None:
        return default
    try:
        amount = parse_decimal(raw)
    except MoneyError as exc:
        raise ValueError(f"rewardAmount {exc}") from None
    if amount > MAX_TASK_REWARD:
        raise ValueError(f"rewardAmount may be at most {MAX_TASK_REWARD}")
    symbol = str(currency or default.currency).upper()
    if symbol not in ("SOL", "USDC", "PYUSD"):
        raise ValueError("rewardCurrency must be SOL, USDC or PYUSD")
    return Price(amount, symbol)


def _certainty(body: dict[str, Any]) -> float:
    """The AI's confidence, from context.data (aiConfidence or confidence), else 0.5."""
    context = body.get("context")
    data = context.get("data") if isinstance(context, dict) else None
    for source in (data if isinstance(data, dict) else {}, body):
        for key in ("aiConfidence", "confidence"):
            value = source.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
                return float(value)
    return 0.5
