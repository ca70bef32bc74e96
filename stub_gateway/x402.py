"""x402 "exact" on Solana, served by the stub gateway: a facilitator and the rules it checks.

:class:`ExactFacilitator` verifies a payment the way the reference Python facilitator (x402
2.25.0) does, rule by rule in its order and with its ``invalidReason`` codes (``PROTOCOL.md``
section 3.2), and adds the specification's fee-payer isolation: the facilitator's key may not
appear in any instruction. Where the v2 specification is stricter than that reference, it
follows the specification, as the official TypeScript facilitator (``@x402/svm``) does: the
transfer MUST equal the required amount, so an overpayment is refused
(``invalid_exact_svm_payload_amount_mismatch``; the Python reference accepts it), and a
transaction with bytes after its end is not a transaction (the same payment cannot be
re-presented in new byte forms). Settling re-verifies, refuses a transaction seen in the last 120
seconds (``duplicate_settlement``), co-signs as fee payer and executes on the ledger.

A paywall settles with :meth:`ExactFacilitator.process`: the payment is decoded, verified and
simulated once, then executed (the reference resource server's verify-then-settle would
simulate twice). The settled transactions are remembered in insertion order, so those older
than 120 seconds are dropped from the front: amortized constant time per payment, however
many were settled.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from solders.keypair import Keypair
from solders.message import Message, MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction
from spl.memo.constants import MEMO_PROGRAM_ID

from human_rpc_sdk._networks import x402_names
from human_rpc_sdk.solana_utils import TOKEN_PROGRAMS, associated_token_address

from .instructions import COMPUTE_BUDGET_PROGRAM_ID, decompile, exact_transaction
from .ledger import Execution, Ledger
from .replies import PaymentIds

__all__ = [
    "ID_BUSY_REASON",
    "ID_CONFLICT_REASON",
    "ExactFacilitator",
    "IdClaim",
    "Outcome",
    "Verification",
]

LIGHTHOUSE_PROGRAM_ID: Final = Pubkey.from_string("L2TExMFKdjpN9kozasaurPirfHy9P8sbXoAN1qA3S95")
MAX_COMPUTE_UNIT_PRICE: Final = 5_000_000
SETTLEMENT_TTL: Final = 120.0
ID_CONFLICT_REASON: Final = "payment_identifier_conflict"
"""A settle failure of a paywall's payment whose id is bound to another payment (its 409)."""
ID_BUSY_REASON: Final = "payment_identifier_busy"
"""A settle failure of a paywall's payment whose id another payment was still settling under
(its 503: send it again)."""
IdClaim = tuple[str, str, str]
"""A paywall payment's claim of its id: (scope, payment id, digest of the payload)."""
_P: Final = "invalid_exact_svm_payload"
_ORDINALS: Final = ("fourth", "fifth", "sixth")


@dataclass(frozen=True)
class Verification:
    """A verify answer; ``transaction`` is the co-signed transaction when it is valid."""

    is_valid: bool
    invalid_reason: str | None = None
    invalid_message: str | None = None
    payer: str | None = None
    transaction: VersionedTransaction | None = None
    signatures_checked: bool = False
    """Every signature of ``transaction`` (co-signed) verified already (a worker process's
    check): settling it does not verify them again."""

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"isValid": self.is_valid}
        if self.invalid_reason:
            document["invalidReason"] = self.invalid_reason
        if self.invalid_message:
            document["invalidMessage"] = self.invalid_message
        if self.payer:
            document["payer"] = self.payer
        return document


@dataclass(frozen=True)
class Outcome:
    """What :meth:`ExactFacilitator.process` did with a payment.

    ``verification`` is None when the payment was refused before being verified (a
    transaction settled in the last 120 seconds); ``settlement`` is the ``/settle`` answer.
    """

    verification: Verification | None
    settlement: dict[str, Any]


def _invalid(reason: str, message: str | None = None, payer: str | None = None) -> Verification:
    return Verification(False, reason, message, payer)


class ExactFacilitator:
    """Verifies and settles exact payments on ``ledger`` with ``fee_payer`` for ``cluster``."""

    def __init__(
        self, ledger: Ledger, fee_payer: Keypair, cluster: str, *, clock: Callable[[], float]
    ) -> None:
        self.ledger = ledger
        self.fee_payer = fee_payer
        self._fee_payer_key = fee_payer.pubkey()  # derived once: pubkey() hashes the seed
        self.fee_payer_address = str(self._fee_payer_key)
        self.cluster = cluster
        self.v1_network, self.caip2 = x402_names(cluster)
        self._clock = clock
        self._lock = threading.RLock()
        self._settled: OrderedDict[str, float] = OrderedDict()
        """Settlement keys and when each settled, oldest first (the lock guards it)."""
        self._networks = tuple(n for n in (self.caip2, self.v1_network) if n)
        self.payment_ids: PaymentIds | None = None
        """Where a paywall's payments bind their payment ids (see :meth:`conclude`)."""

    def supported(self) -> dict[str, Any]:
        """``GET /supported``: the kinds this facilitator settles and its signer."""
        extra = {"feePayer": self.fee_payer_address}
        kinds = []
        if self.caip2:
            kinds.append(
                {"x402Version": 2, "scheme": "exact", "network": self.caip2, "extra": extra}
            )
        if self.v1_network:
            kinds.append(
                {"x402Version": 1, "scheme": "exact", "network": self.v1_network, "extra": extra}
            )
        return {"kinds": kinds, "extensions": [], "signers": {"solana:*": [self.fee_payer_address]}}

    def networks(self) -> tuple[str, ...]:
        return self._networks

    # -- verify -----------------------------------------------------------------------------

    def verify(self, payload: Mapping[str, Any], requirements: Mapping[str, Any]) -> Verification:
        """Check ``payload`` against ``requirements`` (both as the JSON of x402 v1 or v2),
        then simulate the co-signed transaction on the ledger."""
        verification = self._check(payload, requirements)
        if not verification.is_valid or verification.transaction is None:
            return verification
        simulation = self.ledger.simulate(verification.transaction)
        if not simulation.ok:
            return _simulation_failed(simulation, verification.payer)
        return verification

    def _check(
        self,
        payload: Mapping[str, Any],
        requirements: Mapping[str, Any],
        transaction: VersionedTransaction | None = None,
    ) -> Verification:
        """Every rule of verify but the simulation; a valid answer carries the co-signed
        transaction. ``transaction`` is the payload's, when already decoded (it reads no
        state: a worker process can run it)."""
        version = payload.get("x402Version")
        accepted = payload.get("accepted") if version == 2 else payload
        if not isinstance(accepted, Mapping):
            return _invalid("invalid_payload", "the payment payload is not an object")
        if accepted.get("scheme") != "exact" or requirements.get("scheme") != "exact":
            return _invalid("unsupported_scheme")
        if accepted.get("network") != requirements.get("network"):
            return _invalid("network_mismatch")
        if requirements.get("network") not in self.networks():
            return _invalid(
                "unsupported_network", f"this facilitator settles {', '.join(self.networks())}"
            )
        extra = requirements.get("extra")
        if not isinstance(extra, Mapping):
            extra = {}
        fee_payer = extra.get("feePayer")
        if not isinstance(fee_payer, str):
            return _invalid(f"{_P}_missing_fee_payer")
        if fee_payer != self.fee_payer_address:
            return _invalid("fee_payer_not_managed_by_facilitator")
        if transaction is None:
            transaction = _payload_transaction(payload)
        if transaction is None:
            return _invalid(f"{_P}_transaction_could_not_be_decoded")
        return self._verify_transaction(transaction, requirements, extra)

    def _verify_transaction(
        self,
        transaction: VersionedTransaction,
        requirements: Mapping[str, Any],
        extra: Mapping[str, Any],
    ) -> Verification:
        message = transaction.message
        instructions = decompile(message) if isinstance(message, Message | MessageV0) else None
        if instructions is None:
            return _invalid(f"{_P}_transaction_could_not_be_decoded")
        if not 3 <= len(instructions) <= 6:
            return _invalid(f"{_P}_transaction_instructions_length")
        limit, price = instructions[0], instructions[1]
        if limit.program_id != COMPUTE_BUDGET_PROGRAM_ID or bytes(limit.data)[:1] != b"\x02":
            return _invalid(f"{_P}_transaction_instructions_compute_limit_instruction")
        price_data = bytes(price.data)
        if (
            price.program_id != COMPUTE_BUDGET_PROGRAM_ID
            or len(price_data) < 9
            or price_data[0] != 3
        ):
            return _invalid(f"{_P}_transaction_instructions_compute_price_instruction")
        if int.from_bytes(price_data[1:9], "little") > MAX_COMPUTE_UNIT_PRICE:
            return _invalid(f"{_P}_transaction_instructions_compute_price_instruction_too_high")
        if not any(
            ix.program_id in TOKEN_PROGRAMS and len(ix.accounts) >= 4 for ix in instructions
        ):
            return _invalid(f"{_P}_no_transfer_instruction")
        transfer = instructions[2]
        if transfer.program_id not in TOKEN_PROGRAMS:
            return _invalid(f"{_P}_no_transfer_instruction")
        for position, ix in enumerate(instructions[3:]):
            if ix.program_id not in (LIGHTHOUSE_PROGRAM_ID, MEMO_PROGRAM_ID):
                return _invalid(f"{_P}_unknown_{_ORDINALS[position]}_instruction")
        wanted_memo = extra.get("memo")
        if isinstance(wanted_memo, str) and wanted_memo:
            memos = [ix for ix in instructions[3:] if ix.program_id == MEMO_PROGRAM_ID]
            if len(memos) != 1:
                return _invalid(f"{_P}_memo_count")
            if bytes(memos[0].data).decode("utf-8", "replace") != wanted_memo:
                return _invalid(f"{_P}_memo_mismatch")
        data = bytes(transfer.data)
        if len(data) < 10 or data[0] != 12 or len(transfer.accounts) < 4:
            return _invalid(f"{_P}_no_transfer_instruction")
        _source, mint, destination, authority = (m.pubkey for m in transfer.accounts[:4])
        fee_payer = self._fee_payer_key
        payer = str(authority)
        if authority == fee_payer:
            return _invalid(f"{_P}_transaction_fee_payer_transferring_funds", payer=payer)
        if any(meta.pubkey == fee_payer for ix in instructions for meta in ix.accounts):
            return _invalid(
                f"{_P}_transaction_fee_payer_included_in_instruction_accounts", payer=payer
            )
        if str(mint) != requirements.get("asset"):
            return _invalid(f"{_P}_mint_mismatch", payer=payer)
        try:
            pay_to = Pubkey.from_string(str(requirements.get("payTo")))
        except ValueError:
            return _invalid(f"{_P}_recipient_mismatch", payer=payer)
        if destination != associated_token_address(pay_to, mint, transfer.program_id):
            return _invalid(f"{_P}_recipient_mismatch", payer=payer)
        required = requirements.get("amount", requirements.get("maxAmountRequired"))
        if not isinstance(required, str) or not required.isdigit():
            return _invalid(
                "invalid_payment_requirements", "the required amount is not a digit string"
            )
        paid = int.from_bytes(data[1:9], "little")
        if paid < int(required):
            return _invalid(f"{_P}_amount_insufficient", payer=payer)
        if paid > int(required):
            return _invalid(
                f"{_P}_amount_mismatch",
                f"the transfer is {paid} base units; the exact scheme requires {required}",
                payer,
            )
        return Verification(True, payer=payer, transaction=self._co_sign(transaction))

    def _co_sign(self, transaction: VersionedTransaction) -> VersionedTransaction:
        # As the reference: sign the message and overwrite slot 0 (the fee payer's).
        signature = self.fee_payer.sign_message(to_bytes_versioned(transaction.message))
        signatures = list(transaction.signatures)
        signatures[0] = signature
        return VersionedTransaction.populate(transaction.message, signatures)

    # -- settle -----------------------------------------------------------------------------

    def already_settled(self, payload: Mapping[str, Any]) -> bool:
        """Whether this payment's transaction was settled in the last 120 seconds."""
        transaction = _payload_transaction(payload)
        return transaction is not None and self._recently_settled(_settlement_key(transaction))

    @property
    def remembered(self) -> int:
        """How many settlements the duplicate check remembers now (expired ones included
        until the next check drops them)."""
        with self._lock:
            return len(self._settled)

    def _recently_settled(self, key: str) -> bool:
        now = self._clock()
        with self._lock:
            settled = self._settled
            # Oldest first: drop from the front until one is young enough (amortized O(1)).
            while settled:
                at = next(iter(settled.values()))
                if now - at < SETTLEMENT_TTL:
                    break
                settled.popitem(last=False)
            return key in settled

    def settle(self, payload: Mapping[str, Any], requirements: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /settle``: verify again, refuse duplicates, co-sign, execute."""
        return self.process(payload, requirements).settlement

    def process(
        self,
        payload: Mapping[str, Any],
        requirements: Mapping[str, Any],
        claim: IdClaim | None = None,
    ) -> Outcome:
        """Settle ``payload``: refuse a duplicate, check every rule of verify, then simulate
        and commit in one run of the runtime (:meth:`Ledger.settle`).

        The outcome carries the verification (a failed simulation is a verify refusal,
        ``transaction_simulation_failed``, as in :meth:`verify`), so a paywall can answer an
        invalid payment as a verify refusal and a failed settlement as a settle failure.
        ``claim`` (scope, payment id, payload digest) binds the payment's id when, and only
        when, it settles (see :meth:`conclude`).
        """
        network = str(requirements.get("network", ""))
        transaction = _payload_transaction(payload)
        verification = self._check(payload, requirements, transaction)
        if transaction is None:
            failure = _settle_failure(f"{_P}_transaction_could_not_be_decoded", network)
            return Outcome(verification, failure)
        return self.conclude(_settlement_key(transaction), verification, network, claim)

    def conclude(
        self, key: str, verification: Verification, network: str, claim: IdClaim | None = None
    ) -> Outcome:
        """Settle a payment whose transaction has settlement key ``key`` and which
        :meth:`_check` judged ``verification``: refuse a duplicate (checked first: a landed
        transaction no longer simulates, the runtime says AlreadyProcessed, and the protocol's
        reason for a replay is this one), then simulate and commit the co-signed transaction.

        With ``claim``, a valid payment claims its payment id in :attr:`payment_ids` first
        (the id bound to another settled payment: :data:`ID_CONFLICT_REASON`; another payment
        under it still settling after the wait: :data:`ID_BUSY_REASON`), and the id is bound
        to it if it settles, released if it does not. An invalid payment never binds an id;
        any payment under an id bound to another is the conflict, checked first."""
        ids = self.payment_ids if claim is not None else None
        if claim is not None and ids is not None and ids.conflicts(*claim):
            return Outcome(verification, _settle_failure(ID_CONFLICT_REASON, network))
        if self._recently_settled(key):
            return Outcome(None, _settle_failure("duplicate_settlement", network))
        if not verification.is_valid or verification.transaction is None:
            failure = _settle_failure(
                verification.invalid_reason or "invalid_payload", network, verification.payer
            )
            return Outcome(verification, failure)
        transaction = verification.transaction
        if claim is None or ids is None:
            return self._commit(key, transaction, verification, network)
        claimed = ids.claim(*claim)
        if claimed != "claimed":
            reason = ID_CONFLICT_REASON if claimed == "conflict" else ID_BUSY_REASON
            return Outcome(verification, _settle_failure(reason, network, verification.payer))
        outcome = None
        try:
            outcome = self._commit(key, transaction, verification, network)
        finally:
            if outcome is not None and outcome.settlement["success"]:
                ids.confirm(*claim)
            else:
                ids.release(*claim)
        return outcome

    def _commit(
        self,
        key: str,
        transaction: VersionedTransaction,
        verification: Verification,
        network: str,
    ) -> Outcome:
        """Simulate and commit a valid payment, unless it settled meanwhile (a duplicate)."""
        with self._lock:
            if self._recently_settled(key):
                failure = _settle_failure("duplicate_settlement", network, verification.payer)
                return Outcome(verification, failure)
            execution = self.ledger.settle(
                transaction, signatures_checked=verification.signatures_checked
            )
            if not execution.ok:
                refused = _simulation_failed(execution, verification.payer)
                failure = _settle_failure("transaction_simulation_failed", network, refused.payer)
                return Outcome(refused, failure)
            self._settled[key] = self._clock()
        settlement = {
            "success": True,
            "transaction": str(execution.signature),
            "network": network,
            "payer": verification.payer,
        }
        return Outcome(verification, settlement)


def _settlement_key(transaction: VersionedTransaction) -> str:
    # The message only (as the reference): re-signing slot 0 cannot dodge the duplicate check.
    return base64.b64encode(hashlib.sha256(bytes(transaction.message)).digest()).decode()


def _simulation_failed(simulation: Execution, payer: str | None) -> Verification:
    return _invalid("transaction_simulation_failed", simulation.describe(), payer)


def _payload_transaction(payload: Mapping[str, Any]) -> VersionedTransaction | None:
    inner = payload.get("payload")
    return _decode(inner.get("transaction") if isinstance(inner, Mapping) else None)


def _decode(text: Any) -> VersionedTransaction | None:
    if not isinstance(text, str):
        return None
    try:
        return exact_transaction(base64.b64decode(text, validate=True))
    except Exception:  # noqa: BLE001 - any undecodable payload is simply not a transaction
        return None


def _settle_failure(
    reason: str, network: str, payer: str | None = None, message: str | None = None
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "success": False,
        "transaction": "",
        "network": network,
        "errorReason": reason,
    }
    if payer:
        document["payer"] = payer
    if message:
        document["errorMessage"] = message
    return document
