"""Sign-in-with-x on the stub gateway: ``GET /x402/v2/members``, paid once, then reachable by
signing in.

The route is an x402 v2 ``exact`` paywall settled by the gateway's facilitator (as
``/x402/v2/premium``) whose 402 also offers the ``sign-in-with-x`` extension (x402
``specs/extensions/sign-in-with-x.md``) on the gateway's chain (the CAIP-2 id its offers name),
``ed25519`` (Sign-In-With-Solana). A wallet whose payment of the route settled may come back
for ``siwx_ttl`` seconds with a ``SIGN-IN-WITH-X`` header instead of a payment; after that, it
pays again. Every other route stays pay-per-request.

A proof is admitted only when all of these hold (else the answer is the route's 402, whose
``error`` says ``sign_in_refused: <why>``, with a fresh challenge):

* it is base64 JSON with every field the spec requires, ``type`` ``ed25519``;
* its nonce is one this gateway issued (a MAC over every field of the challenge: see
  :class:`Members`), with exactly those fields (domain, uri, times, statement, chain, ...),
  for this route, not expired, and not used before;
* the domain and uri are the gateway's origin (``siwx_origin``; by default the loopback origin
  the request came to: ``127.0.0.1``, ``localhost`` or ``[::1]`` at the port the gateway
  listens on; a request under another host name is offered no sign-in, since a ``Host``
  header is the caller's to choose);
* the signature is the address's ed25519 signature of the exact SIWS message of its fields;
* that address's payment of this route settled within ``siwx_ttl`` seconds.

The nonce is spent by the first proof whose signature verifies (admitted or not). Times come
from ``siwx_now`` (a wall clock; tests inject one). State (the payments, the nonces spent and
the key) lives in the process that holds the ledger: with ``--workers``, the worker processes
forward this route whole to it (:func:`.workers.forwarding`; it is not one of the paid routes
they serve themselves), so a challenge issued through one worker is admitted through another,
a nonce spent through one is spent for all, and a payment is recorded where it settles.
``--state`` does not save it (after a restart, wallets pay once again).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from human_rpc_sdk._headers import b64json, unb64json
from human_rpc_sdk._siwx import (
    SIGN_IN_HEADER,
    SIGN_IN_WITH_X,
    SignInChallenge,
    parse_time,
    proof_problem,
    read_proof,
)

from ._http import current_gateway
from .paywall import X402Payment, paywall

__all__ = ["DEFAULT_SIWX_TTL", "EXTENSION", "Members", "members", "members_of"]

EXTENSION: Final = "stub_gateway.siwx"
DEFAULT_SIWX_TTL: Final = 3600.0
"""How long, in seconds, a wallet's payment of the route lets it sign in."""
CHALLENGE_LIFETIME: Final = timedelta(minutes=5)
STATEMENT: Final = "Sign in to the stub gateway's members route, paid for by this wallet"
_LOOPBACK: Final = ("127.0.0.1", "localhost", "::1")

members = Blueprint("members", __name__, url_prefix="/x402/v2")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Members:
    """Who paid for which route, and the sign-in nonces spent (thread-safe).

    A nonce is 8 random bytes and a MAC (HMAC-SHA256 under a key of this process, cut to 8
    bytes) over them and every field of the challenge issued with it: 32 hex characters, as
    the spec asks. So a proof's challenge is known to be one this gateway issued, unchanged,
    with no state kept per 402 (a flood of 402s cannot push a member's challenge out). What is
    kept: the nonces spent, until their challenge expires, and the payments.
    """

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_SIWX_TTL,
        origin: str | None = None,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
            raise ValueError(f"siwx_ttl must be a number of seconds above 0 (got {ttl!r})")
        self.ttl = timedelta(seconds=float(ttl))
        self.origin = None if origin is None else _origin(origin)
        self.now = now
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._spent: dict[str, datetime] = {}
        """Nonces used, with when their challenge expires (then they are forgotten)."""
        self._paid: dict[tuple[str, str], datetime] = {}

    def origin_for(self, environ: Mapping[str, Any]) -> str | None:
        """The origin sign-ins are bound to for a request with WSGI ``environ`` (None: none)."""
        if self.origin is not None:
            return self.origin
        host = str(environ.get("HTTP_HOST") or "")
        parts = urlsplit(f"//{host}")
        try:
            port = parts.port
        except ValueError:
            return None
        if parts.hostname not in _LOOPBACK or str(port) != str(environ.get("SERVER_PORT")):
            return None
        return f"{environ.get('wsgi.url_scheme', 'http')}://{host}"

    def declare(self, origin: str, path: str, chain_id: str) -> dict[str, Any]:
        """A fresh ``sign-in-with-x`` declaration for ``path``."""
        now = self.now()
        uri = f"{origin}{path}"
        unsigned = SignInChallenge(
            domain=urlsplit(origin).netloc,
            uri=uri,
            version="1",
            chain_id=chain_id,
            nonce="",
            issued_at=_iso(now),
            statement=STATEMENT,
            expiration_time=_iso(now + CHALLENGE_LIFETIME),
            resources=(uri,),
        )
        salt = secrets.token_bytes(8)
        challenge = replace(unsigned, nonce=(salt + self._mac(salt, unsigned)).hex())
        document = challenge.proof("", "")
        info = {k: v for k, v in document.items() if k not in _NOT_INFO}
        chain = {"chainId": chain_id, "type": "ed25519", "signatureScheme": "siws"}
        return {"info": info, "supportedChains": [chain], "schema": _SCHEMA}

    def record(self, path: str, address: str) -> None:
        """``address``'s payment of ``path`` settled now."""
        with self._lock:
            self._paid[(path, address)] = self.now()

    def admit(self, header: str, origin: str, path: str, chain_id: str) -> str:
        """The address a ``SIGN-IN-WITH-X`` header signs in for ``path``.

        :raises Refused: why not (see the module's rules).
        """
        try:
            proof = read_proof(header)
        except ValueError as exc:
            raise Refused(f"malformed proof: {exc}") from None
        challenge, now = proof.challenge, self.now()
        _check_bound(challenge, origin, path, chain_id)
        if not self._issued(challenge):
            raise Refused("its nonce and fields are not a challenge this gateway issued")
        expires = parse_time(challenge.expiration_time or "")  # ours: always there
        if now >= expires:
            raise Refused("its challenge expired")
        problem = proof_problem(proof)
        if problem is not None:
            raise Refused(problem)
        with self._lock:
            self._spent = {n: t for n, t in self._spent.items() if t > now}
            if challenge.nonce in self._spent:
                raise Refused("its nonce was used already")
            self._spent[challenge.nonce] = expires
            paid = self._paid.get((path, proof.address))
        if paid is None:
            raise Refused("this wallet has not paid for this route")
        if now >= paid + self.ttl:
            raise Refused(f"this wallet's payment is older than {self.ttl.total_seconds():g} s")
        return proof.address

    def _mac(self, salt: bytes, challenge: SignInChallenge) -> bytes:
        fields = asdict(replace(challenge, nonce="", signature_scheme=None))
        text = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(self._key, salt + text, hashlib.sha256).digest()[:8]

    def _issued(self, challenge: SignInChallenge) -> bool:
        try:
            raw = bytes.fromhex(challenge.nonce)
        except ValueError:
            return False
        if len(raw) != 16:
            return False
        return hmac.compare_digest(raw[8:], self._mac(raw[:8], challenge))


class Refused(Exception):
    """A sign-in proof the gateway does not admit; the message says why."""


_NOT_INFO: Final = ("address", "chainId", "type", "signatureScheme", "signature")
_SCHEMA: Final = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": [
        "domain",
        "address",
        "uri",
        "version",
        "chainId",
        "type",
        "nonce",
        "issuedAt",
        "signature",
    ],
}


def _check_bound(challenge: SignInChallenge, origin: str, path: str, chain_id: str) -> None:
    """Refuse a challenge bound to another origin, chain or route than this request's."""
    if challenge.domain != urlsplit(origin).netloc or not challenge.uri.startswith(origin + "/"):
        raise Refused("its domain or uri is not this gateway's origin")
    if challenge.chain_id != chain_id:
        raise Refused(f"its chain is not {chain_id}")
    if urlsplit(challenge.uri).path != path:
        raise Refused("it was issued for another route")


def _origin(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"siwx_origin must be an origin such as https://api.example.com: {text!r}")
    return f"{parts.scheme}://{parts.netloc}"


def members_of(app: Flask) -> Members:
    """The :class:`Members` of a gateway app."""
    found: Members = app.extensions[EXTENSION]
    return found


class MembersPayment(X402Payment):
    """The members route's x402 v2 payment: its 402 offers sign-in, its settlements are
    remembered."""

    def __init__(self, book: Members, refused: str | None) -> None:
        gateway = current_gateway()
        super().__init__(gateway, gateway.x402_price, 2, "members' content (x402 v2, sign-in)")
        self.book = book
        self.refused = refused

    def settle(self) -> Response | None:
        refused = super().settle()
        payer = self.settlement.get("payer")
        if refused is None and isinstance(payer, str):
            self.book.record(request.path, payer)
        return refused

    def challenge(self) -> Response:
        why = "Payment required" if self.refused is None else f"sign_in_refused: {self.refused}"
        return self._challenge(why)

    def _challenge(self, error: str) -> Response:
        response = super()._challenge(error)
        origin = self.book.origin_for(request.environ)
        chain = self.gateway.facilitator.caip2
        if origin is None or chain is None:
            return response
        document = unb64json(response.headers["PAYMENT-REQUIRED"], "PAYMENT-REQUIRED")
        extensions = document.setdefault("extensions", {})
        extensions[SIGN_IN_WITH_X] = self.book.declare(origin, request.path, chain)
        response.headers["PAYMENT-REQUIRED"] = b64json(document)
        return response


@members.get("/members")
def members_route() -> Any:
    book = members_of(current_app)
    refused = None
    header = request.headers.get(SIGN_IN_HEADER)
    if header:
        origin = book.origin_for(request.environ)
        chain = current_gateway().facilitator.caip2
        try:
            if origin is None or chain is None:
                raise Refused("this gateway offers no sign-in under this host name")
            address = book.admit(header, origin, request.path, chain)
        except Refused as exc:
            refused = str(exc)
        else:
            response = jsonify(_content(address, signed_in=True))
            response.headers["Cache-Control"] = "private"
            return response

    @paywall(current_gateway(), lambda: MembersPayment(book, refused))
    def content() -> Response:
        return jsonify(_content(g.x402_settlement.get("payer"), signed_in=False))

    return content()


def _content(address: str | None, *, signed_in: bool) -> dict[str, Any]:
    return {
        "resource": "members",
        "content": "members' x402 v2 content, unlocked",
        "member": address,
        "signed_in": signed_in,
    }
