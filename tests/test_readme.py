"""Every ```python block of README.md runs, as written, against a fresh stub gateway.

A block may use these names without defining them: the README's placeholders, which the
``readme_names`` fixture below sets (nothing in a block is edited before it runs):

``url``
    a paywalled URL on the gateway: a HumanRPC invoice for 0.05 USDC
``sol_url``
    one priced in SOL (0.001 SOL)
``x402_url``
    an x402 v2 paid route (``/x402/v2/premium``: 0.01 USDC, paid with ``PAYMENT-SIGNATURE``)
``rpc_url``, ``tasks_url``
    the gateway's Solana JSON-RPC and its HumanRPC task endpoint (reviewers approve at once)
``server``
    the running :class:`~stub_gateway.GatewayServer` (``server.gateway``, ``server.faults``)
``wallet``
    a solders ``Keypair`` holding 1 SOL and 100 USDC on the gateway's ledger
``agent``
    an ``AutoAgent`` paying with ``wallet`` through ``rpc_url``, asking humans at ``tasks_url``
``kms``, ``key_id``
    a stand-in KMS client holding ``wallet``'s key (``public_key(key_id)``, ``sign(key_id,
    message)``)

and the environment: ``SOLANA_PRIVATE_KEY`` (``wallet``'s base58 secret), ``SOLANA_RPC_URL``
(``rpc_url``), ``HUMAN_RPC_URL`` (``tasks_url``) and ``HUMAN_RPC_JOURNAL`` (a journal in a
temporary folder, new for each block). Each block gets a gateway and a namespace of its own.

A block that truly cannot run offline is preceded by ``<!-- readme: no-run (why) -->`` and
must be listed in :data:`NOT_RUN`, so leaving a block out is a visible change; a name a block
uses that it neither defines nor finds among the placeholders fails the test before it runs.
"""

from __future__ import annotations

import base64
import builtins
import re
import symtable
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import pytest
import requests
from solders.keypair import Keypair
from solders.transaction import VersionedTransaction

from human_rpc_sdk import (
    AutoAgent,
    Invoice,
    TransactionBuildError,
    build_sol_transfer,
    build_spl_transfer,
    decode_payment_response,
    encode_payment_header,
    get_latest_blockhash,
    sign_and_serialize_transaction,
)
from stub_gateway import GatewayServer, serve_in_thread

README: Final = Path(__file__).resolve().parent.parent / "README.md"
NO_RUN_MARKER: Final = re.compile(r"\s*<!--\s*readme:\s*no-run\b(?P<why>.*?)-->\s*")
NOT_RUN: Final[frozenset[str]] = frozenset()
"""Headings of the blocks marked ``no-run`` (none today: every block runs)."""
PLACEHOLDERS: Final = frozenset(
    {
        "url",
        "sol_url",
        "x402_url",
        "rpc_url",
        "tasks_url",
        "server",
        "wallet",
        "agent",
        "kms",
        "key_id",
    }
)


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence
    heading: str
    source: str
    no_run: str | None  # why, when marked

    @property
    def id(self) -> str:
        return f"L{self.line}-{re.sub(r'[^A-Za-z0-9]+', '-', self.heading).strip('-')}"


def readme_blocks(text: str) -> list[Block]:
    """The ```python blocks of a Markdown text, each with its heading and no-run marker."""
    blocks: list[Block] = []
    lines = text.splitlines()
    heading, fence, start, body, previous = "", None, 0, list[str](), ""
    for number, line in enumerate(lines, start=1):
        if fence is None:
            if line.startswith("#"):
                heading = line.lstrip("#").strip()
            opening = re.match(r"^```\s*(\S*)", line)
            if opening:
                fence, start, body = opening.group(1), number, []
                marker = NO_RUN_MARKER.fullmatch(previous)
                no_run = marker.group("why").strip(" :()") if marker else None
            elif line.strip():
                previous = line
        elif line.startswith("```"):
            if fence == "python":
                blocks.append(Block(start, heading, "\n".join(body) + "\n", no_run))
            fence, previous = None, ""
        else:
            body.append(line)
    assert fence is None, f"README.md: the code block opened at line {start} is never closed"
    return blocks


def free_names(source: str, filename: str) -> set[str]:
    """Names a block reads that it neither binds nor gets from builtins."""
    table = symtable.symtable(source, filename, "exec")
    bound = {
        symbol.get_name()
        for symbol in table.get_symbols()
        if symbol.is_assigned() or symbol.is_imported() or symbol.is_namespace()
    }
    used: set[str] = set()

    def walk(scope: symtable.SymbolTable) -> None:
        for symbol in scope.get_symbols():
            if symbol.is_referenced() and (scope is table or symbol.is_global()):
                used.add(symbol.get_name())
        for child in scope.get_children():
            walk(child)

    walk(table)
    return used - bound - set(dir(builtins))


BLOCKS: Final = readme_blocks(README.read_text(encoding="utf-8"))


class StandInKms:
    """The README's ``kms``: a KMS client that holds keys by id and signs with them."""

    def __init__(self, keys: dict[str, Keypair]) -> None:
        self._keys = keys

    def public_key(self, key_id: str) -> str:
        return str(self._keys[key_id].pubkey())

    def sign(self, key_id: str, message: bytes) -> bytes:
        return bytes(self._keys[key_id].sign_message(message))


@pytest.fixture
def readme_server() -> Iterator[GatewayServer]:
    with serve_in_thread() as server:
        yield server


@pytest.fixture
def readme_names(
    readme_server: GatewayServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """The placeholders a README block may use (see the module docstring), and its
    environment; agents the block leaves open are closed after it."""
    server = readme_server
    wallet = Keypair()
    server.gateway.fund(wallet.pubkey(), {"SOL": Decimal(1), "USDC": Decimal(100)})
    tasks_url = f"{server.url}/api/v1/tasks"
    monkeypatch.setenv("SOLANA_PRIVATE_KEY", str(wallet))
    monkeypatch.setenv("SOLANA_RPC_URL", server.rpc_url)
    monkeypatch.setenv("HUMAN_RPC_URL", tasks_url)
    monkeypatch.setenv("HUMAN_RPC_JOURNAL", str(tmp_path / "journal.sqlite3"))
    agent = AutoAgent(wallet, rpc_url=server.rpc_url, human_rpc_url=tasks_url)
    names: dict[str, Any] = {
        "__name__": "__readme__",
        "url": f"{server.url}/api/v1/premium/usdc",
        "sol_url": f"{server.url}/api/v1/premium/sol",
        "x402_url": f"{server.url}/x402/v2/premium",
        "rpc_url": server.rpc_url,
        "tasks_url": tasks_url,
        "server": server,
        "wallet": wallet,
        "agent": agent,
        "kms": StandInKms({"payments-key": wallet}),
        "key_id": "payments-key",
    }
    assert set(names) - {"__name__"} == PLACEHOLDERS
    yield names
    for value in {id(v): v for v in names.values() if isinstance(v, AutoAgent)}.values():
        value.close()
    agent.close()


def run_block(block: Block, names: dict[str, Any]) -> None:
    filename = f"README.md:{block.line}"
    unknown = free_names(block.source, filename) - PLACEHOLDERS
    assert not unknown, (
        f"the README block at line {block.line} ({block.heading}) uses {sorted(unknown)}, "
        f"which it never defines and which are not placeholders ({sorted(PLACEHOLDERS)})"
    )
    exec(compile(block.source, filename, "exec"), names)  # noqa: S102 - the README's own code


def test_the_readme_has_python_blocks() -> None:
    """The extractor finds the blocks (a broken fence would silently drop them)."""
    assert len(BLOCKS) >= 10
    assert {b.heading for b in BLOCKS} >= {"Install", "Paying for an API", "Keys"}


def test_the_extractor_reads_headings_markers_and_only_python() -> None:
    text = (
        "# Top\n```python\nx = 1\n```\n## Later\n"
        "<!-- readme: no-run (needs mainnet) -->\n\n```python\ny = 2\n```\n"
        "```sh\nmake demo\n```\nSay `<!-- readme: no-run -->` in text.\n```python\nz = 3\n```\n"
    )
    blocks = readme_blocks(text)
    assert [(b.line, b.heading, b.source, b.no_run) for b in blocks] == [
        (2, "Top", "x = 1\n", None),
        (8, "Later", "y = 2\n", "needs mainnet"),
        (15, "Later", "z = 3\n", None),
    ]
    with pytest.raises(AssertionError, match="never closed"):
        readme_blocks("```python\nx = 1\n")
    assert free_names("import os\nprint(os, url)\ndef f():\n    return kms\n", "x") == {
        "url",
        "kms",
    }


def test_blocks_left_out_are_marked_and_listed() -> None:
    """Only blocks marked ``no-run`` with a reason are left out, and exactly those listed."""
    marked = {b.heading for b in BLOCKS if b.no_run is not None}
    assert marked == NOT_RUN
    assert all(b.no_run for b in BLOCKS if b.no_run is not None), "give the reason"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.no_run is None], ids=lambda b: b.id)
def test_readme_block_runs(block: Block, readme_names: dict[str, Any]) -> None:
    """The block runs as written, with the documented placeholders."""
    run_block(block, readme_names)


def _block(heading: str) -> Block:
    return next(b for b in BLOCKS if b.heading == heading)


def test_the_low_level_block_pays_the_invoice_by_hand(readme_names: dict[str, Any]) -> None:
    """The "Lower-level helpers" block pays a SOL invoice without an agent: the gateway
    settles it, the payee gets the price and the payer the price plus one signature's fee."""
    server: GatewayServer = readme_names["server"]
    gateway, wallet = server.gateway, readme_names["wallet"]
    payer_before = gateway.balance(wallet.pubkey(), "SOL")
    payee_before = gateway.balance(gateway.treasury, "SOL")

    run_block(_block("Lower-level helpers"), readme_names)

    assert readme_names["paid"].status_code == 200
    signed = VersionedTransaction.from_bytes(base64.b64decode(readme_names["signed"]))
    assert readme_names["settlement"]["transaction"] == str(signed.signatures[0])
    assert gateway.balance(gateway.treasury, "SOL") - payee_before == Decimal("0.001")
    assert payer_before - gateway.balance(wallet.pubkey(), "SOL") == Decimal("0.001005")


def test_a_token_invoice_paid_by_hand(readme_names: dict[str, Any]) -> None:
    """The README's token variant: build_spl_transfer reads the chain facts from rpc_url;
    0.05 USDC moves to the payee's token account, the payer pays one signature's fee."""
    server: GatewayServer = readme_names["server"]
    gateway, wallet, url = server.gateway, readme_names["wallet"], readme_names["url"]
    before = {c: gateway.balance(wallet.pubkey(), c) for c in ("SOL", "USDC")}
    payee_before = gateway.balance(gateway.treasury, "USDC")

    invoice = Invoice.from_body(requests.get(url, timeout=10).content, url=url)
    invoice.validate(network="devnet")
    transfer = build_spl_transfer(
        wallet,
        invoice.recipient,
        invoice.mint or "",
        invoice.base_units(6),
        readme_names["rpc_url"],
        reference=invoice.reference,
    )
    header = encode_payment_header(sign_and_serialize_transaction(transfer, wallet), "devnet")
    paid = requests.get(url, headers={"X-PAYMENT": header}, timeout=30)

    assert paid.status_code == 200, paid.text
    assert decode_payment_response(paid.headers.get("X-PAYMENT-RESPONSE")) is not None
    assert gateway.balance(gateway.treasury, "USDC") - payee_before == Decimal("0.05")
    assert before["USDC"] - gateway.balance(wallet.pubkey(), "USDC") == Decimal("0.05")
    assert before["SOL"] - gateway.balance(wallet.pubkey(), "SOL") == Decimal("0.000005")


def test_what_the_old_snippet_sent_is_refused_and_moves_nothing(
    readme_names: dict[str, Any],
) -> None:
    """The former README's payment: the bare signed transaction as X-PAYMENT (not the
    header document), and a transfer without the invoice's reference. Both are refused."""
    server: GatewayServer = readme_names["server"]
    gateway, wallet, sol_url = server.gateway, readme_names["wallet"], readme_names["sol_url"]
    before = gateway.balance(wallet.pubkey(), "SOL")
    for with_reference, bare in ((True, True), (False, False)):
        invoice = Invoice.from_body(requests.get(sol_url, timeout=10).content)
        transfer = build_sol_transfer(
            wallet,
            invoice.recipient,
            invoice.get_amount_lamports(),
            get_latest_blockhash(readme_names["rpc_url"]),
            reference=invoice.reference if with_reference else None,
        )
        wire = sign_and_serialize_transaction(transfer, wallet)
        header = wire if bare else encode_payment_header(wire, invoice.network)
        refused = requests.get(sol_url, headers={"X-PAYMENT": header}, timeout=30)
        assert refused.status_code == 402
        expected = "invalid_payment_header" if bare else "unknown_invoice"
        assert refused.json()["reason"] == expected, refused.text
    assert gateway.balance(wallet.pubkey(), "SOL") == before


def test_encode_payment_header_refuses_what_is_not_a_transaction() -> None:
    with pytest.raises(TransactionBuildError, match="sign_and_serialize_transaction"):
        encode_payment_header("bm90IGEgdHJhbnNhY3Rpb24=", "devnet")
