"""Wallets: where the payer's key comes from, and the signer protocol.

A payer is anything that satisfies :class:`Signer` (``pubkey()`` and ``sign_message(bytes)``).
:class:`solders.keypair.Keypair` does; so can a KMS or a hardware wallet, which lets the SDK
pay without ever holding the key. Keys given as text are parsed by :func:`load_signer` and kept
inside :class:`KeypairSigner`, whose ``repr`` shows only the public key.

Nothing in this module puts key material into an exception, a log line or a ``repr``: errors
describe the *shape* of what was wrong (bad base58, wrong length, a public key where a secret
was expected) and are raised outside any ``except`` block, so no underlying parser error (which
would hold the text it failed on) is chained to them.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, NoReturn, Protocol, TypeGuard, TypeVar, runtime_checkable

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from .exceptions import SDKConfigurationError, TransactionBuildError

__all__ = [
    "KeypairSigner",
    "OwnSignature",
    "Signer",
    "is_async_signer",
    "load_signer",
    "own_key",
    "require_sync_signer",
    "sign_async",
    "signature_of",
    "signer_failed",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

ENV_PRIVATE_KEY = "SOLANA_PRIVATE_KEY"
ENV_KEYPAIR_PATH = "SOLANA_KEYPAIR_PATH"

_ACCEPTED_FORMS = (
    "a base58-encoded 64-byte secret key (as Phantom or Solflare export), "
    "a JSON array of 64 numbers (the solana-keygen format; as text, bytes or a list), "
    "or the path to a solana-keygen keypair file"
)
_MAX_KEYFILE_BYTES = 4096
_MISMATCHED_HALVES = (
    "its two halves do not match: a keypair is the 32-byte secret followed by its own 32-byte "
    "public key, and this second half is the public key of another secret (a corrupted key, or "
    "halves of two different keys)"
)
_BASE58_RUN = re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,}")
_BASE58_TEXT = re.compile(r"[1-9A-HJ-NP-Za-km-z]+")
_QUOTES = "\"'"


@runtime_checkable
class Signer(Protocol):
    """What the SDK needs from a payer: its public key and ed25519 signatures of messages."""

    def pubkey(self) -> Pubkey:
        """The payer's public key."""
        ...

    def sign_message(self, message: bytes) -> Signature:
        """Sign ``message`` (the serialized transaction message) with the payer's key."""
        ...


class KeypairSigner:
    """A :class:`Signer` over an in-memory keypair that never reveals it.

    ``repr`` and ``str`` show only the public key, and the object refuses to be pickled so
    the secret cannot leak into a cache, a queue or a crash dump by accident.
    """

    __slots__ = ("_keypair", "_pubkey")

    def __init__(self, keypair: Keypair) -> None:
        self._keypair = keypair
        self._pubkey = keypair.pubkey()

    def pubkey(self) -> Pubkey:
        """The keypair's public key."""
        return self._pubkey

    def sign_message(self, message: bytes) -> Signature:
        """Sign ``message`` with the keypair (ed25519)."""
        return self._keypair.sign_message(message)

    def __repr__(self) -> str:
        return f"KeypairSigner(pubkey={self._pubkey})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("KeypairSigner holds a secret key and cannot be pickled")


class OwnSignature(NamedTuple):
    """A driver's answer to a ``Sign`` effect when its signer is a :class:`KeypairSigner` of the
    key asked for: solders computed the signature from the key the signer holds, so the flow
    does not verify it again (a signature from any other signer is verified before use)."""

    signature: Signature


def own_key(signer: object, pubkey: Pubkey) -> TypeGuard[KeypairSigner]:
    """Whether ``signer`` is this SDK's own :class:`KeypairSigner` (not a subclass, which may
    sign otherwise) of ``pubkey``: its signatures are right by construction."""
    return type(signer) is KeypairSigner and signer.pubkey() == pubkey


class _ExternalSigner:
    """Adapts a caller's signer object: caches its public key, normalises its signatures."""

    __slots__ = ("_inner", "_pubkey")

    def __init__(self, inner: Any, pubkey: Pubkey) -> None:
        self._inner = inner
        self._pubkey = pubkey

    def pubkey(self) -> Pubkey:
        return self._pubkey

    def sign_message(self, message: bytes) -> Signature:
        require_sync_signer(self)
        return signature_of(self._inner.sign_message(message))

    @property
    def inner(self) -> Any:
        """The caller's signer object, as given."""
        return self._inner

    def __repr__(self) -> str:
        return f"ExternalSigner(pubkey={self._pubkey})"


def signature_of(raw: object) -> Signature:
    """What a signer's ``sign_message`` returned, as a solders ``Signature``: a ``Signature``
    or 64 signature bytes. Only the type of anything else is named, never its value.

    :raises SDKConfigurationError: when ``raw`` is neither.
    """
    if isinstance(raw, Signature):
        return raw
    if isinstance(raw, bytes | bytearray) and len(raw) == 64:
        return Signature.from_bytes(bytes(raw))
    size = f" of {len(raw)} bytes" if isinstance(raw, bytes | bytearray) else ""
    raise SDKConfigurationError(
        "signer.sign_message() must return a solders Signature or 64 signature bytes, "
        f"but returned {type(raw).__name__}{size}; fix the signer adapter",
        parameter="signer",
        reason="bad_signer",
    )


def signer_failed(exc: BaseException, pubkey: Pubkey) -> TransactionBuildError:
    """The error a driver tells the flow of when its signer raised something that is no SDK
    error (a KMS outage): what happened, never the signer's message (it may echo inputs)."""
    return TransactionBuildError(
        f"the signer of {pubkey} raised {type(exc).__name__} while signing a payment. Nothing "
        "was sent; check the signer (or its service) and try again",
        reason="signer_failed",
    )


def is_async_signer(signer: object) -> bool:
    """Whether ``signer.sign_message`` is a coroutine function (a remote signer to await),
    looking through the adapter :func:`load_signer` puts around a caller's signer."""
    if isinstance(signer, _ExternalSigner):
        signer = signer.inner
    return inspect.iscoroutinefunction(getattr(signer, "sign_message", None))


def require_sync_signer(signer: object) -> None:
    """Refuse a signer that can only sign asynchronously where a signature is needed now.

    :raises SDKConfigurationError: when ``signer.sign_message`` is a coroutine function.
    """
    if is_async_signer(signer):
        raise SDKConfigurationError(
            "this signer signs asynchronously (its sign_message is a coroutine function), so "
            "it cannot sign here: use it with AsyncAutoAgent, or give a signer whose "
            "sign_message returns the signature",
            parameter="signer",
            reason="async_signer",
        )


async def sign_async(signer: Signer, message: bytes) -> Signature:
    """``signer``'s signature of ``message``, awaited when its ``sign_message`` is a coroutine
    function (looking through :func:`load_signer`'s adapter), else called (in a worker thread
    unless it is a local :class:`KeypairSigner`): what an async driver does with a
    :class:`~human_rpc_sdk._effects.Sign` effect.

    :raises SDKConfigurationError: when the signer returns no signature (:func:`signature_of`).
    """
    inner: Any = signer.inner if isinstance(signer, _ExternalSigner) else signer
    if is_async_signer(inner):
        return signature_of(await inner.sign_message(message))
    if isinstance(signer, KeypairSigner):  # a local key signs in microseconds
        return signer.sign_message(message)
    # Any other signer may wait on a device or a service: not on the event loop.
    import asyncio  # loaded with the event loop; a synchronous agent never imports it

    return signature_of(await asyncio.to_thread(signer.sign_message, message))


def load_signer(
    solana_private_key: Any = None,
    signer: Any = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Signer:
    """Return the payer's :class:`Signer`.

    Exactly one source is used, in this order: ``signer``, ``solana_private_key``, the
    ``SOLANA_PRIVATE_KEY`` environment variable, the file named by ``SOLANA_KEYPAIR_PATH``.

    :param solana_private_key: a base58 64-byte secret, a solana-keygen JSON array (as text,
        bytes or a list), a path to a keypair file, or a :class:`~solders.keypair.Keypair`.
    :param signer: an object with ``pubkey()`` and ``sign_message(bytes)`` (KMS, hardware);
        ``sign_message`` may be a coroutine function, for the async agent only (see
        :func:`is_async_signer`).
    :raises SDKConfigurationError: when no source is configured or the key is malformed.
    """
    try:
        return _load_signer(solana_private_key, signer, environ)
    except SDKConfigurationError as exc:
        error = exc
    finally:
        del solana_private_key, environ
    # Raised afresh from this frame, which no longer holds the key: the frames that parsed it
    # (their locals hold its text) are not in the traceback a crash reporter may capture.
    raise error.with_traceback(None)


def _load_signer(solana_private_key: Any, signer: Any, environ: Mapping[str, str] | None) -> Signer:
    if signer is not None and solana_private_key is not None:
        raise SDKConfigurationError(
            "pass either solana_private_key or signer, not both",
            parameter="signer",
        )
    if signer is not None:
        return _adapt_signer(signer)
    if solana_private_key is not None:
        return KeypairSigner(_keypair_from(solana_private_key, "solana_private_key"))
    env = os.environ if environ is None else environ
    if env.get(ENV_PRIVATE_KEY):
        return KeypairSigner(_keypair_from(env[ENV_PRIVATE_KEY], ENV_PRIVATE_KEY))
    if env.get(ENV_KEYPAIR_PATH):
        path = _expand(env[ENV_KEYPAIR_PATH])
        return KeypairSigner(_keypair_from_file(path, ENV_KEYPAIR_PATH))
    raise SDKConfigurationError(
        "no wallet configured: pass solana_private_key=... or signer=..., or set "
        f"{ENV_PRIVATE_KEY} (base58 secret key) or {ENV_KEYPAIR_PATH} (solana-keygen file)",
        parameter="solana_private_key",
        reason="missing_key",
    )


def _adapt_signer(signer: Any) -> Signer:
    if isinstance(signer, Keypair):
        return KeypairSigner(signer)
    if not (
        callable(getattr(signer, "pubkey", None))
        and callable(getattr(signer, "sign_message", None))
    ):
        raise SDKConfigurationError(
            "signer must have pubkey() and sign_message(message: bytes) methods "
            f"(got {type(signer).__name__}); a solders Keypair or a KMS adapter works",
            parameter="signer",
        )
    raw = signer.pubkey()
    if isinstance(raw, Pubkey):
        return _ExternalSigner(signer, raw)
    if isinstance(raw, str):
        try:
            return _ExternalSigner(signer, Pubkey.from_string(raw))
        except ValueError:
            pass
    raise SDKConfigurationError(
        "signer.pubkey() must return a solders Pubkey or a base58 public key string, "
        f"but returned {type(raw).__name__}",
        parameter="signer",
    )


def _keypair_from(value: Any, source: str) -> Keypair:
    if isinstance(value, Keypair):
        return value
    if isinstance(value, KeypairSigner):
        return value._keypair
    if isinstance(value, bytes | bytearray):
        return _keypair_from_raw(bytes(value), source)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return _keypair_from_json_array(value, source)
    if isinstance(value, os.PathLike):
        return _keypair_from_file(Path(value), source)
    if not isinstance(value, str):
        _bad_key(source, f"it is a {type(value).__name__}")
    return _keypair_from_text(value, source, paths=True)


def _keypair_from_text(value: str, source: str, *, paths: bool) -> Keypair:
    text = value.strip()
    if not text:
        _bad_key(source, "it is empty")
    if text[0] in _QUOTES or text[-1] in _QUOTES:
        _bad_key(
            source,
            "it begins or ends with a quote character, and quotes are not part of a key: "
            "remove them (a .env file or a shell script may have quoted the value twice)",
        )
    if text.startswith("["):
        return _keypair_from_json_text(text, source)
    if paths and _looks_like_path(text):
        return _keypair_from_file(_expand(text), source)
    return _keypair_from_base58(text, source)


def _keypair_from_raw(raw: bytes, source: str) -> Keypair:
    """64 bytes are the secret key itself; other bytes may be a key's text (a keypair file
    read with ``read_bytes()``: a JSON array, or base58)."""
    if len(raw) == 64:
        return _keypair_from_bytes(raw, source)
    text = (_quietly(raw.decode, "utf-8") or "").strip()
    if text and (text[0] in "[" + _QUOTES or _BASE58_TEXT.fullmatch(text)):
        return _keypair_from_text(text, source, paths=False)
    _bad_key(
        source,
        f"it is {len(raw)} bytes long instead of 64, and not the text of a key either "
        "(a JSON array or base58)",
    )


def _expand(text: str) -> Path:
    """``~`` expanded when possible (``~nobody`` without a home stays as written)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        return Path(text)


def _looks_like_path(text: str) -> bool:
    # Base58 has no '/', '.', '~' or '\\', so these can only be paths.
    if any(c in text for c in "/.~\\"):
        return True
    try:
        return Path(text).exists()
    except (OSError, ValueError):  # a name too long, or unrepresentable, is no file
        return False


def _keypair_from_base58(text: str, source: str) -> Keypair:
    keypair = _quietly(Keypair.from_base58_string, text)
    if keypair is not None:
        return keypair
    if _quietly(Signature.from_string, text) is not None:  # base58 of 64 bytes, like a key
        _bad_key(source, _MISMATCHED_HALVES)
    if _quietly(Pubkey.from_string, text) is None:
        _bad_key(source, "it is not valid base58 of 64 bytes")
    _bad_key(
        source, "it decodes to 32 bytes: that is a public key (or a bare seed), not a secret key"
    )


def _keypair_from_json_text(text: str, source: str) -> Keypair:
    data = _quietly(json.loads, text)
    if data is None:
        _bad_key(source, "it starts with '[' but is not a valid JSON array")
    return _keypair_from_json_array(data, source)


def _keypair_from_json_array(data: Any, source: str) -> Keypair:
    if not isinstance(data, list | tuple):
        _bad_key(source, "it is not a JSON array")
    if len(data) != 64:
        _bad_key(source, f"the array has {len(data)} numbers instead of 64")
    if not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in data):
        _bad_key(source, "the array must hold 64 integers between 0 and 255")
    return _keypair_from_bytes(bytes(data), source)


def _keypair_from_bytes(raw: bytes, source: str) -> Keypair:
    if len(raw) != 64:
        _bad_key(source, f"it is {len(raw)} bytes long instead of 64")
    keypair = _quietly(Keypair.from_bytes, raw)
    if keypair is None:
        _bad_key(source, _MISMATCHED_HALVES)
    return keypair


def _keypair_from_file(path: Path, source: str) -> Keypair:
    where = f"{source} (file {_show_path(path)})"
    stat = _quietly(path.stat)
    if stat is None:
        raise SDKConfigurationError(
            f"{source}: keypair file {_show_path(path)} does not exist or cannot be read; "
            "create one with `solana-keygen new -o <path>` or fix the path",
            parameter=source,
            reason="bad_key",
        )
    if stat.st_size > _MAX_KEYFILE_BYTES:
        _bad_key(where, f"the file is {stat.st_size} bytes, too large for a keypair file")
    if os.name == "posix" and stat.st_mode & 0o077:
        logger.warning(
            "keypair file %s is readable by other users (mode %o); run `chmod 600` on it",
            _show_path(path),
            stat.st_mode & 0o777,
        )
    text = _quietly(lambda: path.read_text(encoding="utf-8"))
    if text is None:
        _bad_key(where, "the file cannot be read as UTF-8 text")
    return _keypair_from_text(text, where, paths=False)


def _quietly(fn: Callable[..., T], *args: Any) -> T | None:
    """Call ``fn``; on failure return None and drop the exception.

    Parsing errors of key material carry the text they failed on (``JSONDecodeError.doc``,
    ``UnicodeDecodeError.object``). Raising our own error *outside* the ``except`` block keeps
    such an exception out of ``__context__``, so no traceback or debugger can reach the key.
    """
    try:
        return fn(*args)
    except (ValueError, OSError, TypeError, RecursionError):
        return None


def _show_path(path: Path) -> str:
    """A path for an error message, unless it may hold a key (a long base58 run)."""
    text = str(path)
    if _BASE58_RUN.search(text):
        return "<path hidden: it contains a long base58 string that may be a key>"
    return repr(text)


def _bad_key(source: str, problem: str) -> NoReturn:
    raise SDKConfigurationError(
        f"{source} is not a usable Solana secret key: {problem}. Expected {_ACCEPTED_FORMS}.",
        parameter=source.split(" ", 1)[0],
        reason="bad_key",
    )
