"""Property 5: the paid retry is the original request plus X-PAYMENT, sent exactly once."""

from __future__ import annotations

import base64
import copy
import json
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from solders.keypair import Keypair
from solders.transaction import VersionedTransaction

from human_rpc_sdk import AutoAgent

from .conftest import Shop

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)
header_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
values = (
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
    .map(str.strip)
    .filter(bool)
)
requests_ = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
        "params": st.dictionaries(token, token, max_size=3),
        # WSGI servers drop header names with "_", so names use letters, digits and "-".
        "headers": st.dictionaries(header_names.map(lambda t: f"X-Client-{t}"), values, max_size=4),
        "body": st.one_of(
            st.none(),
            st.binary(max_size=500).map(lambda b: ("data", b)),
            st.dictionaries(token, st.integers() | token, max_size=4).map(lambda d: ("json", d)),
        ),
    }
)


# **Feature: human-rpc-python-sdk, Property 5: For any successfully built transaction, the system
# should serialize it to base64, add the X-PAYMENT header, and retry the original request**
@given(spec=requests_)
def test_property_5_paid_retry_repeats_the_original_request(
    shop: Shop, spec: dict[str, Any]
) -> None:
    """Same method, path, query, body and headers, plus an X-PAYMENT with the signed transfer."""
    wallet = Keypair()
    shop.gateway.fund(wallet.pubkey(), {"SOL": Decimal("0.01")})
    agent = AutoAgent(wallet, rpc_url=shop.rpc_url)
    headers = dict(spec["headers"])
    params = dict(spec["params"])
    kwargs: dict[str, Any] = {"headers": headers, "params": params}
    if spec["body"] is not None:
        kind, payload = spec["body"]
        kwargs[kind] = payload
    frozen = copy.deepcopy(kwargs)
    before = len(shop.seen)

    response = agent.request(spec["method"], f"{shop.url}/echo", **kwargs)

    assert response.status_code == 200
    assert kwargs == frozen, "the caller's arguments were mutated"
    first, second = shop.seen[before:]
    assert second["method"] == first["method"] == spec["method"]
    assert second["path"] == first["path"]
    assert second["body"] == first["body"]
    unpaid = {k.lower(): v for k, v in dict(first["headers"]).items()}  # type: ignore[call-overload]
    paid = {k.lower(): v for k, v in dict(second["headers"]).items()}  # type: ignore[call-overload]
    header = paid.pop("x-payment")
    assert paid == unpaid
    for name, value in headers.items():
        assert unpaid[name.lower()] == value
    document = json.loads(base64.b64decode(header))
    tx = VersionedTransaction.from_bytes(
        base64.b64decode(document["payload"]["serializedTransaction"])
    )
    (receipt,) = agent.payments
    assert str(tx.signatures[0]) == receipt.signature
    assert shop.gateway.balance(wallet.pubkey()) == Decimal("0.01") - Decimal("0.000001") - Decimal(
        "0.000005"
    )
    agent.close()
