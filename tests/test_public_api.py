"""The public API as a type checker and a reader see it: docstrings on every public callable,
precise parameter and return types, and an editable install type checkers can find."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from collections.abc import Coroutine, Iterator
from importlib.metadata import distributions
from pathlib import Path
from typing import Any, assert_type
from urllib.parse import unquote
from urllib.request import url2pathname

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

import human_rpc_sdk
import stub_gateway
from human_rpc_sdk import AutoAgent, GuardResponse, guard
from stub_gateway.faults import Faults

ROOT = Path(__file__).resolve().parent.parent


def public_callables() -> Iterator[tuple[str, Any]]:
    """Every exported callable, and the public methods and properties of exported classes
    (and of ``server.faults``, which the README documents)."""
    classes: list[tuple[str, type]] = [("stub_gateway.Faults", Faults)]
    for module in (human_rpc_sdk, stub_gateway):
        for name in module.__all__:
            value = getattr(module, name)
            if callable(value):
                yield f"{module.__name__}.{name}", value
            if isinstance(value, type):
                classes.append((f"{module.__name__}.{name}", value))
    for qualified, cls in classes:
        for attr, value in vars(cls).items():
            if attr.startswith("_"):
                continue
            if isinstance(value, staticmethod | classmethod):
                value = value.__func__
            if isinstance(value, property) or inspect.isfunction(value):
                yield f"{qualified}.{attr}", value


def test_every_public_callable_has_a_docstring() -> None:
    found = dict(public_callables())
    assert "human_rpc_sdk.AutoAgent.get" in found
    assert "stub_gateway.GatewayServer.faults" in found
    missing = sorted(name for name, value in found.items() if not (value.__doc__ or "").strip())
    assert missing == []


def test_the_requests_verbs_say_what_they_do() -> None:
    for verb in ("get", "post", "put", "patch", "delete", "head", "options"):
        doc = getattr(AutoAgent, verb).__doc__
        assert verb.upper() in doc, verb
        assert "402" in doc, verb


def test_the_server_exposes_its_gateways_faults() -> None:
    """``server.faults`` (the README's spelling) is the gateway's Faults."""
    with stub_gateway.serve_in_thread() as server:
        assert server.faults is server.gateway.faults
        server.faults.slow_rpc(2.0)
        assert [f.mode for f in server.gateway.faults.armed()] == ["slow_rpc"]


# -- types: checked by mypy --strict over tests/ (make typecheck); no-ops when run ----------


def test_a_guarded_function_keeps_its_parameters_and_result_type() -> None:
    @guard(threshold=0.5)
    def classify(text: str) -> tuple[str, float]:
        return ("spam", 0.9)

    @guard(threshold=0.5)
    async def aclassify(text: str) -> dict[str, float]:
        return {"confidence": 0.9}

    assert_type(classify("x"), tuple[str, float] | GuardResponse)
    coroutine = assert_type(aclassify("x"), Coroutine[Any, Any, dict[str, float] | GuardResponse])
    coroutine.close()  # never awaited: only its type is under test


def test_public_parameters_are_typed() -> None:
    """Accepted spellings type-check; the rejected ones are ignored with an error code that
    mypy --strict (warn_unused_ignores) would report unused if the parameter were Any."""
    key = Keypair()
    payee = Pubkey.default()
    agent = AutoAgent(key, rpc_url="http://127.0.0.1:1/rpc", journal_path=":memory:")
    agent.close()
    agent = AutoAgent(
        signer=key,
        rpc_url="http://127.0.0.1:1/rpc",
        journal_path=":memory:",
        trusted_recipients=[payee, str(payee)],
        accept_assets=(str(payee),),
    )
    agent.close()
    with pytest.raises(human_rpc_sdk.SDKConfigurationError):
        AutoAgent(solana_private_key=42, journal_path=":memory:")  # type: ignore[arg-type]
    with pytest.raises(human_rpc_sdk.SDKConfigurationError):
        AutoAgent(key, journal_path=":memory:", trusted_recipients=7)  # type: ignore[arg-type]
    with pytest.raises(human_rpc_sdk.SDKConfigurationError):
        AutoAgent(signer="a key", journal_path=":memory:")  # type: ignore[arg-type]


# -- the editable install, as a type checker outside the repository sees it ---------------

USER_SCRIPT = """\
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, GuardResponse, guard

payee = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
agent = AutoAgent(Keypair(), network="devnet", trusted_recipients=[payee])


@guard(threshold=0.9, agent=agent)
def classify(text: str) -> tuple[str, float]:
    return ("positive", 0.62)


result: tuple[str, float] | GuardResponse = classify("Is this review positive?")
"""


def _installed_from_this_checkout() -> bool:
    # The checkout's own human_rpc_sdk.egg-info (left by setuptools) can come first on the
    # path: look at every installed copy for the one pip recorded (its direct_url.json).
    found = (d.read_text("direct_url.json") for d in distributions(name="human-rpc-sdk"))
    direct_url = next((text for text in found if text), None)
    if not direct_url:
        return False
    info = json.loads(direct_url)
    url = str(info.get("url", ""))
    editable = bool(info.get("dir_info", {}).get("editable"))
    if not (editable and url.startswith("file://")):
        return False
    return Path(url2pathname(unquote(url.removeprefix("file://")))).resolve() == ROOT


@pytest.mark.skipif(
    not _installed_from_this_checkout(),
    reason="the SDK in this interpreter is not this checkout's editable install (make makes one)",
)
def test_mypy_outside_the_repository_finds_the_editable_install(tmp_path: Path) -> None:
    """What `make` installs (editable_mode=compat) is visible to mypy in a user's folder;
    setuptools' default import-hook finder is not ("Cannot find implementation")."""
    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(script),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
