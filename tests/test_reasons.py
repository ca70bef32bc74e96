"""The typed vocabulary (reason codes, policy rules, journal states) has one registry each,
and the lint fence around the I/O modules is the one the tests check."""

from __future__ import annotations

import ast
import fnmatch
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import get_args

import human_rpc_sdk
from human_rpc_sdk._reasons import REASONS, RULES, Reason, Rule
from human_rpc_sdk._receipts import STATES, State
from human_rpc_sdk._records import PENDING
from human_rpc_sdk.decorator import _EVENTS

PACKAGE = Path(human_rpc_sdk.__file__).parent
ROOT = PACKAGE.parent
BANNED = {"requests", "httpx", "urllib3", "sqlite3", "socket", "time"}


def modules() -> Iterator[tuple[PurePosixPath, ast.Module]]:
    """Every module of the SDK: its path from the repository root, and its syntax tree."""
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = PurePosixPath(path.relative_to(ROOT).as_posix())
        yield relative, ast.parse(path.read_text(encoding="utf-8"), str(relative))


def literal_keywords(name: str) -> dict[str, set[str]]:
    """Each string literal passed as ``name=`` anywhere in the SDK, with where."""
    found: dict[str, set[str]] = {}
    for path, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == name:
                value = node.value
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.setdefault(value.value, set()).add(str(path))
    return found


def forwarded_reasons() -> set[tuple[str, str]]:
    """``reason=<not a literal>``: where, and what expression (a parameter passed on)."""
    found = set()
    for path, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "reason":
                value = node.value
                if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
                    found.add((path.name, ast.unparse(value)))
    return found


def class_defaults(attribute: str) -> set[str]:
    """String literals assigned to ``attribute`` in class bodies or on ``self``."""
    found = set()
    for _, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(
                node.value, ast.Constant
            ):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    name = target.attr if isinstance(target, ast.Attribute) else None
                    name = target.id if isinstance(target, ast.Name) else name
                    if name == attribute and isinstance(node.value.value, str):
                        found.add(node.value.value)
    return found


def refusal_rules() -> set[str]:
    """Rules named by ``Refusal(text, "<rule>")`` (an x402 offer refused by a rule)."""
    found = set()
    for _, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Refusal":
                for arg in node.args[1:2]:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        found.add(arg.value)
    return found


def raised_reasons() -> set[str]:
    guard_events = {event for event, _ in _EVENTS.values()}  # decorator: reason=event
    return set(literal_keywords("reason")) | class_defaults("default_reason") | guard_events


def raised_rules() -> set[str]:
    return set(literal_keywords("rule")) | class_defaults("rule") | refusal_rules()


def test_the_reason_type_and_the_registry_agree() -> None:
    """Reason and REASONS name the same codes, each with a one-line meaning."""
    assert set(get_args(Reason)) == set(REASONS)
    assert len(get_args(Reason)) == len(set(get_args(Reason)))
    for code, meaning in REASONS.items():
        assert code.isidentifier()
        assert code.islower()
        assert meaning.strip()
        assert "\n" not in meaning


def test_every_reason_the_sdk_passes_is_registered() -> None:
    """Each literal passed as reason= (and each class default) is a registered code."""
    unregistered = {
        code: sorted(where)
        for code, where in literal_keywords("reason").items()
        if code not in REASONS
    }
    assert unregistered == {}
    assert class_defaults("default_reason") <= set(REASONS)
    assert {event for event, _ in _EVENTS.values()} <= set(REASONS)


def test_reasons_that_are_not_literals_are_only_passed_on() -> None:
    """A reason= that is not a literal only forwards a parameter typed Reason (the exception
    classes, invoices' _reject) or the guard's event, whose codes are checked above."""
    allowed = {("exceptions.py", "reason"), ("invoices.py", "reason"), ("decorator.py", "event")}
    allowed.add(("errors.py", "reason"))  # _io/errors.py: the connection errors' own classes
    forwarded = {(where, expression) for where, expression in forwarded_reasons()}
    forwarded.discard(("decorator.py", "None"))  # GuardResponse(reason=None): verified
    assert forwarded <= allowed


def test_no_registered_reason_is_dead() -> None:
    """Every registered code is raised somewhere in the SDK."""
    assert set(REASONS) - raised_reasons() == set()


def test_rules_are_registered_and_raised() -> None:
    """Rule and RULES agree; each rule a refusal names is registered, and each is used."""
    assert set(get_args(Rule)) == set(RULES)
    assert raised_rules() == set(RULES)
    for meaning in RULES.values():
        assert meaning.strip()
        assert "\n" not in meaning


def test_journal_states_are_one_vocabulary() -> None:
    """State and STATES name the same states; the pending ones are states."""
    assert get_args(State) == STATES
    assert set(PENDING) <= set(STATES)


# -- the lint fence -------------------------------------------------------------------------


def ruff_lint() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        lint: dict[str, object] = tomllib.load(file)["tool"]["ruff"]["lint"]
    return lint


def exempt_patterns() -> set[str]:
    """The globs within human_rpc_sdk where ruff's banned-api rule (TID251) is off."""
    ignores = ruff_lint()["per-file-ignores"]
    assert isinstance(ignores, dict)
    return {
        pattern
        for pattern, rules in ignores.items()
        if "TID251" in rules and pattern.startswith("human_rpc_sdk/")
    }


def exempt(path: PurePosixPath) -> bool:
    return any(fnmatch.fnmatchcase(str(path), pattern) for pattern in exempt_patterns())


def test_the_lint_bans_the_io_libraries_outside_the_io_package() -> None:
    """pyproject's banned-api names the I/O libraries, is selected, and is off only in
    human_rpc_sdk/_io/** (the connection errors that are also requests' live there)."""
    lint = ruff_lint()
    select = lint["select"]
    assert isinstance(select, list)
    assert "TID251" in select
    tidy = lint["flake8-tidy-imports"]
    assert isinstance(tidy, dict)
    assert set(tidy["banned-api"]) == BANNED
    assert exempt_patterns() == {"human_rpc_sdk/_io/**"}


def imported(tree: ast.Module) -> set[str]:
    """The absolute modules a syntax tree imports, anywhere in it."""
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    froms = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level]
    return names | {n.module for n in froms if n.module}


def imported_at_top(tree: ast.Module) -> set[str]:
    """The package's own modules a module imports at module level (``.x`` -> ``x``)."""
    froms = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.level]
    return {n.module or "" for n in froms}


def core() -> Iterator[tuple[PurePosixPath, ast.Module]]:
    """The modules the lint fences in: every module of human_rpc_sdk it does not exempt."""
    return ((path, tree) for path, tree in modules() if not exempt(path))


def test_no_module_outside_the_fence_imports_an_io_library() -> None:
    """Every module of human_rpc_sdk the lint does not exempt imports none of the banned
    libraries (the same check as the lint's, done by the tests)."""
    found = {
        str(path): {name for name in imported(tree) if name.split(".")[0] in BANNED}
        for path, tree in core()
    }
    assert len(found) > 20  # the walk found the package
    assert {path: names for path, names in found.items() if names} == {}


# Modules at the edge of the core, and what each may do that the rest may not.
EDGE = {
    "wallet.py": {"os"},  # reads the key from the environment or a key file
    "_types.py": {"os"},  # os.PathLike, in a type
    "_settings.py": {"os"},  # the environment's defaults (SOLANA_RPC_URL, the journal's home)
    "reiterator.py": {"random"},  # the retry jitter
}
SHIMS = {"__init__.py", "agent.py", "async_agent.py", "reiterator.py"}
"""Public modules that import the I/O package: the re-exports, and the reiterator's real
clock and sleep defaults."""


def test_the_core_has_no_randomness_environment_or_driver() -> None:
    """The core imports no randomness or os (randomness and time arrive as parameters), and
    no I/O module at module level: the flows (every module that imports the effect protocol)
    no threads or asyncio either."""
    flows = set()
    for path, tree in core():
        names = {name.split(".")[0] for name in imported(tree)}
        assert not names & {"random", "secrets", "os"} - EDGE.get(path.name, set()), path
        own = imported_at_top(tree)
        if path.name not in SHIMS:
            assert not any(module.startswith(("_io", "agent")) for module in own), path
        if own & {"_effects", "_protocol"} or path.name == "_protocol.py":
            flows.add(path.name)
            lock = {"threading"} if path.name == "_chainstate.py" else set()  # ChainCache's lock
            assert not names & {"threading", "asyncio"} - lock, path
    assert {"_flow.py", "_delivery.py", "_landing.py", "_recovery.py", "_quote.py"} <= flows
    assert {"_exact.py", "_effects.py", "_protocol.py", "solana_utils.py"} <= flows


def test_the_transport_knows_nothing_of_token_accounts() -> None:
    """_io/rpc.py imports nothing from solana_utils (no import cycle with it)."""
    tree = ast.parse((PACKAGE / "_io" / "rpc.py").read_text(encoding="utf-8"))
    modules_imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "solana_utils" not in modules_imported
