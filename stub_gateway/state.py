"""Keep a gateway's chain across restarts: ``python -m stub_gateway --state FILE``.

LiteSVM has no snapshot of its own, but every account can be read and written
(``get_account``/``set_account``), and the :class:`~.ledger.Ledger` knows every address that
matters: those written at genesis, those each transaction and airdrop involved (and the ones
it loaded through address lookup tables). A state file is therefore a JSON document
(versioned, written atomically, mode 0600) holding:

* the chain's identity: network, seed and genesis hash (a restored gateway is built with
  them, so clients keep recognising its chain);
* every account the ledger knows: wallets, mints (their supply), token accounts, the
  treasury, closed accounts (as empty ones); not programs and sysvars, which the runtime
  provides again;
* the slot, the usable blockhashes and the blockhash counter (the chain goes on from the
  same slot, a transaction signed before the restart over a recent blockhash still lands,
  and no blockhash is ever issued twice);
* every transaction's status, fee, logs, balances before and after and the transaction
  itself, and the per-address signature lists: ``getSignatureStatuses``,
  ``getTransaction`` and ``getSignaturesForAddress`` answer as before, so a client
  recovering its payment after a restart finds it, and a transaction executed before the
  restart is refused as already processed after it;
* the payment desk's invoices, paid ones with the transaction that paid them (a 402 issued
  before the restart can be paid after it; a paid one stays paid);
* the tasks, with their votes and results, and the review script's position.

Times kept by the gateway's monotonic clock (invoice and task expiry, review time) are saved
as seconds from the moment of saving; the time the gateway was down counts, as the wall
clock says. Not kept: the same-request answer cache of paid requests (a settled payment sent
again after a restart is refused as already paid rather than answered again), the x402
facilitator's replay cache (the ledger's signature statuses still refuse a replay), the
task creation rate limit's window, armed faults, and LiteSVM's airdrop pool (a fresh one,
a billion SOL, serves the faucet).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from solders.account import Account
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import InnerInstruction
from solders.transaction_status import TransactionConfirmationStatus, TransactionStatus

from .ledger import ChainState, Execution
from .payments import Invoice, Price
from .tasks import Task, Vote

if TYPE_CHECKING:
    from .app import Gateway

__all__ = [
    "FORMAT",
    "VERSION",
    "SavedState",
    "StateError",
    "StateKeeper",
    "chain_for",
    "keep_state",
    "load_state",
    "read_state",
    "restore",
    "save_state",
    "snapshot",
    "write_state",
]

FORMAT: Final = "human-rpc-stub-gateway-state"
VERSION: Final = 1
SAVE_INTERVAL: Final = 5.0

logger = logging.getLogger(__name__)


class StateError(ValueError):
    """A state file that cannot be used: unreadable, corrupt, of another version or chain."""


@dataclass(frozen=True)
class SavedState:
    """A state file's content: what to build the gateway with, then what to restore in it."""

    network: str
    seed: str
    genesis_hash: str
    document: dict[str, Any]


# -- the high-level API ------------------------------------------------------------------


def save_state(gateway: Gateway, path: str | os.PathLike[str]) -> None:
    """Write ``gateway``'s chain, invoices and tasks to ``path`` (atomically, mode 0600)."""
    write_state(snapshot(gateway), path)


def load_state(gateway: Gateway, path: str | os.PathLike[str]) -> None:
    """Restore the state saved in ``path`` into ``gateway``, a fresh gateway built with the
    file's network, seed and genesis hash (see :func:`read_state`)."""
    restore(gateway, read_state(path))


def read_state(path: str | os.PathLike[str]) -> SavedState:
    """Read and check a state file; build the gateway with its ``network``, ``seed`` and
    ``genesis_hash``, then :func:`restore` it. Raises :class:`StateError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"cannot read the state file {os.fspath(path)!r}: {exc}") from None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise StateError(
            f"the state file {os.fspath(path)!r} is not valid JSON (damaged?); "
            "restore a copy or remove it to start a new chain"
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise StateError(
            f"{os.fspath(path)!r} is not a stub gateway state file; pass another --state file"
        )
    if document.get("version") != VERSION:
        raise StateError(
            f"the state file {os.fspath(path)!r} has version {document.get('version')!r}; "
            f"this gateway reads version {VERSION} only"
        )
    try:
        saved = SavedState(
            network=_text(document["network"]),
            seed=_text(document["seed"]),
            genesis_hash=str(Hash.from_string(_text(document["genesis_hash"]))),
            document=document,
        )
        _check_body(document)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(
            f"the state file {os.fspath(path)!r} is damaged ({type(exc).__name__}: {exc}); "
            "restore a copy or remove it to start a new chain"
        ) from None
    return saved


def restore(gateway: Gateway, state: SavedState) -> None:
    """Put ``state`` into ``gateway``, which must be built with its network, seed and genesis
    hash (and be fresh: nothing paid or funded yet). Raises :class:`StateError`."""
    if (gateway.network, gateway.genesis.seed, gateway.genesis_hash) != (
        state.network,
        state.seed,
        state.genesis_hash,
    ):
        raise StateError(
            f"the state file is for the chain {state.genesis_hash} ({state.network}, seed "
            f"{state.seed!r}); build the gateway with that network, seed and genesis hash"
        )
    document = state.document
    try:
        elapsed = max(0.0, time.time() - float(document["saved_at"]))
        ledger = document["ledger"]
        chain = ChainState(
            slot=int(ledger["slot"]),
            issued=int(ledger["issued"]),
            blockhashes=tuple((Hash.from_string(h), int(s)) for h, s in ledger["blockhashes"]),
            accounts=tuple(
                (Pubkey.from_string(a["address"]), _account(a)) for a in ledger["accounts"]
            ),
            executions=tuple(_execution(e) for e in ledger["transactions"]),
            history={
                Pubkey.from_string(a): tuple(Signature.from_string(s) for s in signatures)
                for a, signatures in ledger["history"].items()
            },
        )
        now = gateway.desk.now()
        invoices = [_invoice(gateway, i, now - elapsed) for i in document["invoices"]]
        tasks = [_task(t, now - elapsed) for t in document["tasks"]["tasks"]]
        script_position = int(document["tasks"]["script_position"])
    except (KeyError, TypeError, ValueError, AttributeError, InvalidOperation) as exc:
        raise StateError(
            f"the state file is damaged ({type(exc).__name__}: {exc}); "
            "restore a copy or remove it to start a new chain"
        ) from None
    gateway.ledger.restore(chain)
    gateway.desk.restore_invoices(invoices)
    gateway.tasks.restore_tasks(tasks, script_position)


def snapshot(gateway: Gateway) -> dict[str, Any]:
    """``gateway``'s state as the JSON document a state file holds."""
    with gateway.desk.held() as invoices:  # no payment settles half-way through the snapshot
        chain = gateway.ledger.snapshot()
        now = gateway.desk.now()
    tasks, script_position = gateway.tasks.export()
    return {
        "format": FORMAT,
        "version": VERSION,
        "saved_at": time.time(),
        "network": gateway.network,
        "seed": gateway.genesis.seed,
        "genesis_hash": gateway.genesis_hash,
        "ledger": {
            "slot": chain.slot,
            "issued": chain.issued,
            "blockhashes": [[str(h), s] for h, s in chain.blockhashes],
            "accounts": [_account_json(a, account) for a, account in chain.accounts],
            "transactions": [_execution_json(e) for e in chain.executions],
            "history": {str(a): [str(s) for s in sigs] for a, sigs in chain.history.items()},
        },
        "invoices": [_invoice_json(i, now) for i in invoices],
        "tasks": {
            "tasks": [_task_json(t, now) for t in tasks],
            "script_position": script_position,
        },
    }


def write_state(document: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``document`` to ``path`` atomically (a temporary file in the same folder, then
    ``os.replace``), readable by its owner only."""
    target = Path(path)
    folder = target.parent
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=folder)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), 0o600)
            json.dump(document, file, separators=(",", ":"))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class StateKeeper:
    """Saves a gateway's state to ``path`` every ``interval`` seconds when it changed, and
    once more on :meth:`close` (a clean shutdown); a ``kill -9`` loses at most ``interval``."""

    def __init__(
        self, gateway: Gateway, path: str | os.PathLike[str], *, interval: float = SAVE_INTERVAL
    ) -> None:
        self.gateway = gateway
        self.path = path
        self.interval = interval
        self._last: Any = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="state-keeper", daemon=True)

    def start(self) -> StateKeeper:
        """Save once (the file holds this chain from the first moment), then keep saving."""
        try:
            self.save()
        except OSError as exc:
            raise StateError(
                f"cannot write the state file {os.fspath(self.path)!r}: {exc}"
            ) from None
        self._thread.start()
        return self

    def save(self) -> bool:
        """Save now if anything changed since the last save; True when written."""
        with self._lock:
            document = snapshot(self.gateway)
            comparable = _comparable(document)
            if comparable == self._last:
                return False
            write_state(document, self.path)
            self._last = comparable
            return True

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.save()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.save()
            except Exception:  # keep serving; the next round tries again
                logger.exception("could not save the gateway state to %s", self.path)


def keep_state(
    gateway: Gateway, path: str | os.PathLike[str] | None, saved: SavedState | None
) -> StateKeeper | None:
    """The command line's ``--state``: restore ``saved`` (read by :func:`chain_for`) into the
    fresh ``gateway``, then keep saving to ``path``; None without a path. Close the keeper
    at shutdown. Raises :class:`StateError`."""
    if saved is not None:
        restore(gateway, saved)
    return None if path is None else StateKeeper(gateway, path).start()


def chain_for(
    path: str | os.PathLike[str] | None, *, network: str, seed: str | None
) -> SavedState | None:
    """The state in ``path`` when there is one (None: no path, or no file yet: a new chain),
    checked against the ``network`` and ``seed`` asked for (a ``seed`` of None takes the
    file's). Raises :class:`StateError`."""
    if path is None or not Path(path).exists():
        return None
    saved = read_state(path)
    if network != saved.network or seed not in (None, saved.seed):
        raise StateError(
            f"the state file {os.fspath(path)!r} holds a {saved.network} chain of seed "
            f"{saved.seed!r}, not {network} of seed {seed!r}; pass --network {saved.network} "
            "(and that seed or none), or another --state file"
        )
    return saved


# -- the pieces --------------------------------------------------------------------------


def _comparable(document: dict[str, Any]) -> Any:
    """What tells whether anything happened since the last save: the document without what
    merely passing time changes (the slot, blockhashes, deadlines as seconds from now)."""
    ledger = document["ledger"]
    return (
        ledger["accounts"],
        ledger["transactions"],
        [
            {k: v for k, v in i.items() if k not in ("issued", "expires")}
            for i in document["invoices"]
        ],
        [{k: v for k, v in t.items() if k not in _TASK_CLOCKS} for t in document["tasks"]["tasks"]],
        document["tasks"]["script_position"],
    )


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {type(value).__name__}")
    return value


def _check_body(document: dict[str, Any]) -> None:
    for key, kind in (
        ("saved_at", (int, float)),
        ("ledger", dict),
        ("invoices", list),
        ("tasks", dict),
    ):
        if not isinstance(document.get(key), kind):
            raise TypeError(f"{key!r} is missing or of the wrong type")


def _account_json(address: Pubkey, account: Account) -> dict[str, Any]:
    return {
        "address": str(address),
        "lamports": account.lamports,
        "owner": str(account.owner),
        "executable": account.executable,
        "data": base64.b64encode(bytes(account.data)).decode("ascii"),
        "rent_epoch": account.rent_epoch,
    }


def _account(document: dict[str, Any]) -> Account:
    return Account(
        lamports=int(document["lamports"]),
        data=base64.b64decode(document["data"], validate=True),
        owner=Pubkey.from_string(document["owner"]),
        executable=bool(document["executable"]),
        rent_epoch=int(document["rent_epoch"]),
    )


def _maybe_account(document: dict[str, Any] | None) -> Account | None:
    return None if document is None else _account(document)


def _err_json(err: Any) -> Any:
    if err is None:
        return None
    status = TransactionStatus(0, None, err, err, TransactionConfirmationStatus.Finalized)
    return json.loads(status.to_json())["err"]


def _err(document: Any) -> Any:
    if document is None:
        return None
    status = {
        "slot": 0,
        "confirmations": None,
        "status": {"Err": document},
        "err": document,
        "confirmationStatus": "finalized",
    }
    return TransactionStatus.from_json(json.dumps(status)).err


def _execution_json(execution: Execution) -> dict[str, Any]:
    transaction = execution.transaction
    return {
        "signature": str(execution.signature),
        "err": _err_json(execution.err),
        "logs": execution.logs,
        "units": execution.units,
        "slot": execution.slot,
        "fee": execution.fee,
        "transaction": None
        if transaction is None
        else base64.b64encode(bytes(transaction)).decode("ascii"),
        "pre_accounts": [_optional_account_json(a) for a in execution.pre_accounts],
        "post_accounts": [_optional_account_json(a) for a in execution.post_accounts],
        "inner": [[json.loads(i.to_json()) for i in group] for group in execution.inner],
    }


def _optional_account_json(account: Account | None) -> dict[str, Any] | None:
    return None if account is None else _account_json(Pubkey.default(), account)


def _execution(document: dict[str, Any]) -> Execution:
    raw = document["transaction"]
    return Execution(
        signature=Signature.from_string(document["signature"]),
        err=_err(document["err"]),
        logs=[str(line) for line in document["logs"]],
        units=int(document["units"]),
        slot=int(document["slot"]),
        fee=int(document["fee"]),
        transaction=None
        if raw is None
        else VersionedTransaction.from_bytes(base64.b64decode(raw, validate=True)),
        pre_accounts=tuple(_maybe_account(a) for a in document["pre_accounts"]),
        post_accounts=tuple(_maybe_account(a) for a in document["post_accounts"]),
        inner=tuple(
            [InnerInstruction.from_json(json.dumps(i)) for i in group]
            for group in document["inner"]
        ),
    )


def _invoice_json(invoice: Invoice, now: float) -> dict[str, Any]:
    return {
        "reference": invoice.reference,
        "resource": invoice.resource,
        "amount": str(invoice.price.amount),
        "currency": invoice.price.currency,
        "price_recipient": None
        if invoice.price.recipient is None
        else str(invoice.price.recipient),
        "recipient": str(invoice.recipient),
        "token": None if invoice.token is None else invoice.token.symbol,
        "atomic": invoice.atomic,
        "destination": str(invoice.destination),
        "issued": invoice.issued - now,
        "expires": invoice.expires - now,
        "paid_by": invoice.paid_by,
        "overcharged": invoice.overcharged,
    }


def _invoice(gateway: Gateway, document: dict[str, Any], base: float) -> Invoice:
    recipient = document["price_recipient"]
    token = document["token"]
    paid_by = document["paid_by"]
    return Invoice(
        reference=_text(document["reference"]),
        resource=_text(document["resource"]),
        price=Price(
            Decimal(_text(document["amount"])),
            _text(document["currency"]),
            None if recipient is None else Pubkey.from_string(recipient),
        ),
        recipient=Pubkey.from_string(document["recipient"]),
        token=None if token is None else gateway.genesis.token(_text(token)),
        atomic=int(document["atomic"]),
        destination=Pubkey.from_string(document["destination"]),
        issued=base + float(document["issued"]),
        expires=base + float(document["expires"]),
        paid_by=None if paid_by is None else _text(paid_by),
        overcharged=bool(document["overcharged"]),
    )


_TASK_CLOCKS: Final = ("created_clock", "expires_clock", "review_at")
_TASK_TIMES: Final = ("created", "updated")


def _task_json(task: Task, now: float) -> dict[str, Any]:
    document: dict[str, Any] = {f.name: getattr(task, f.name) for f in fields(task)}
    for name in _TASK_CLOCKS:
        document[name] = document[name] - now
    for name in _TASK_TIMES:
        moment = document[name]
        document[name] = None if moment is None else moment.isoformat()
    document["votes"] = [
        {"decision": v.decision, "user_id": v.user_id, "comment": v.comment, "at": v.at.isoformat()}
        for v in task.votes
    ]
    return document


def _task(document: dict[str, Any], base: float) -> Task:
    values = dict(document)
    for name in _TASK_CLOCKS:
        values[name] = base + float(values[name])
    for name in _TASK_TIMES:
        moment = values[name]
        values[name] = None if moment is None else datetime.fromisoformat(_text(moment))
    values["votes"] = [
        Vote(
            decision=_text(v["decision"]),
            user_id=v["user_id"],
            comment=v["comment"],
            at=datetime.fromisoformat(_text(v["at"])),
        )
        for v in values["votes"]
    ]
    names = {f.name for f in fields(Task)}
    if set(values) != names:
        raise ValueError(f"a task has the fields {sorted(values)}, not {sorted(names)}")
    return Task(**values)
