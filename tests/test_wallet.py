"""Loading the payer's key from every accepted form, and refusing bad ones without leaking."""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from human_rpc_sdk import KeypairSigner, SDKConfigurationError, load_signer

KEY = Keypair.from_seed(bytes(range(32)))
SECRET_B58 = str(KEY)
SECRET_JSON = json.dumps(list(bytes(KEY)))


@pytest.mark.parametrize(
    "value",
    [SECRET_B58, SECRET_JSON, list(bytes(KEY)), bytes(KEY), KEY, f"  {SECRET_B58}\n"],
    ids=["base58", "json-text", "json-list", "bytes", "keypair", "padded-base58"],
)
def test_accepts_every_documented_form(value: object) -> None:
    """Base58, solana-keygen JSON (text or list), raw bytes and Keypair all load."""
    assert load_signer(value).pubkey() == KEY.pubkey()


def test_reads_a_solana_keygen_file(tmp_path: Path) -> None:
    """A path to a solana-keygen file loads the key in it."""
    path = tmp_path / "id.json"
    path.write_text(SECRET_JSON)
    path.chmod(0o600)
    assert load_signer(str(path)).pubkey() == KEY.pubkey()
    assert load_signer(path).pubkey() == KEY.pubkey()


def test_warns_about_a_world_readable_key_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A key file other users can read is loaded, with a warning to chmod it."""
    path = tmp_path / "id.json"
    path.write_text(SECRET_JSON)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="human_rpc_sdk"):
        load_signer(str(path))
    assert "chmod 600" in caplog.text


def test_environment_private_key_then_path(tmp_path: Path) -> None:
    """SOLANA_PRIVATE_KEY wins over SOLANA_KEYPAIR_PATH; the path is used alone."""
    other = Keypair()
    path = tmp_path / "k.json"
    path.write_text(json.dumps(list(bytes(other))))
    both = {"SOLANA_PRIVATE_KEY": SECRET_B58, "SOLANA_KEYPAIR_PATH": str(path)}
    assert load_signer(environ=both).pubkey() == KEY.pubkey()
    assert load_signer(environ={"SOLANA_KEYPAIR_PATH": str(path)}).pubkey() == other.pubkey()


def test_explicit_key_wins_over_environment() -> None:
    """An argument beats the environment."""
    other = Keypair()
    assert load_signer(other, environ={"SOLANA_PRIVATE_KEY": SECRET_B58}).pubkey() == other.pubkey()


def test_missing_key_says_how_to_configure_one() -> None:
    """With no key anywhere, the error names every way to provide one."""
    with pytest.raises(SDKConfigurationError) as caught:
        load_signer(environ={})
    assert caught.value.reason == "missing_key"
    for hint in ("solana_private_key", "signer", "SOLANA_PRIVATE_KEY", "SOLANA_KEYPAIR_PATH"):
        assert hint in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "empty"),
        ("not base58!", "not valid base58"),
        (str(KEY.pubkey()), "public key"),
        ("[1, 2, 3]", "3 numbers instead of 64"),
        ("[1, 2", "not a valid JSON array"),
        (json.dumps([256] * 64), "between 0 and 255"),
        (bytes(32), "32 bytes long"),
        (list(bytes(KEY))[:32] + list(bytes(Keypair().pubkey())), "corrupted"),
        ("/no/such/dir/id.json", "does not exist"),
        (3.14, "float"),
    ],
)
def test_bad_keys_are_refused_with_a_reason(value: object, expected: str) -> None:
    """Each malformed key gets an SDKConfigurationError that says what is wrong."""
    with pytest.raises(SDKConfigurationError) as caught:
        load_signer(value)
    assert expected in str(caught.value)
    assert caught.value.parameter == "solana_private_key"


def test_errors_never_carry_the_key_or_its_parse_error() -> None:
    """A near-miss key (one character off) appears nowhere in the error or its chain."""
    near_miss = SECRET_B58[:-1] + ("1" if SECRET_B58[-1] != "1" else "2")
    for value in (near_miss, SECRET_JSON[:-1], SECRET_B58 + "!"):
        with pytest.raises(SDKConfigurationError) as caught:
            load_signer(value)
        error = caught.value
        assert error.__cause__ is None
        assert error.__context__ is None
        for text in (str(error), repr(error)):
            assert value not in text
            assert SECRET_B58[:20] not in text


def test_keypair_signer_hides_its_secret() -> None:
    """repr and str show only the public key; pickling is refused."""
    signer = KeypairSigner(KEY)
    for text in (repr(signer), str(signer)):
        assert str(KEY.pubkey()) in text
        assert SECRET_B58 not in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(signer)


class KmsSigner:
    """A stand-in for a KMS: signs through a callback, never exposes a key object."""

    def __init__(self) -> None:
        self._key = Keypair()
        self.calls = 0

    def pubkey(self) -> str:
        return str(self._key.pubkey())

    def sign_message(self, message: bytes) -> bytes:
        self.calls += 1
        return bytes(self._key.sign_message(message))


def test_external_signer_is_adapted() -> None:
    """A signer returning a string key and raw signature bytes works as a Signer."""
    kms = KmsSigner()
    signer = load_signer(signer=kms)
    assert signer.pubkey() == Pubkey.from_string(kms.pubkey())
    signature = signer.sign_message(b"hello")
    assert isinstance(signature, Signature)
    assert signature.verify(signer.pubkey(), b"hello")


@pytest.mark.parametrize("bad", [object(), "not a signer", 42])
def test_objects_without_signer_methods_are_refused(bad: object) -> None:
    """signer= must have pubkey() and sign_message()."""
    with pytest.raises(SDKConfigurationError, match="pubkey"):
        load_signer(signer=bad)


def test_key_and_signer_together_are_refused() -> None:
    """Only one source of keys at a time."""
    with pytest.raises(SDKConfigurationError, match="not both"):
        load_signer(KEY, signer=KmsSigner())


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_unreadable_key_file_is_refused(tmp_path: Path) -> None:
    """A key file that is too large is refused before it is read."""
    path = tmp_path / "big.json"
    path.write_text("[" + ",".join(["1"] * 3000) + "]")
    with pytest.raises(SDKConfigurationError, match="too large"):
        load_signer(str(path))


@pytest.mark.parametrize("value", ["~nosuchuser0/id.json", "~0", "x" * 300, "a\x00b"])
def test_odd_text_is_a_configuration_error_not_a_crash(value: str) -> None:
    """Text that breaks path handling (unknown ~user, too long, NUL) is refused cleanly."""
    with pytest.raises(SDKConfigurationError):
        load_signer(value)
