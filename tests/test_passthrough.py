"""Answers other than 402 come back exactly as the server sent them."""

from __future__ import annotations

import base64
from typing import Any

import requests
from hypothesis import given
from hypothesis import strategies as st
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent

STATUSES = [s for s in range(200, 600) if s != 402 and s not in (204, 205, 304)]
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30
)
specs = st.fixed_dictionaries(
    {
        "status": st.sampled_from(STATUSES),
        "headers": st.dictionaries(
            st.sampled_from([f"X-Test-{i}" for i in range(5)]), header_values, max_size=5
        ),
        "body": st.binary(max_size=2_000).map(lambda b: base64.b64encode(b).decode()),
    }
)


# **Feature: human-rpc-python-sdk, Property 2: For any HTTP request that returns non-402 status,
# AutoAgent should return the response without modification**
@given(spec=specs, method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]))
def test_property_2_non_402_answers_pass_through(
    responder: str, spec: dict[str, Any], method: str
) -> None:
    """Status, headers and body equal what plain requests receives; no RPC, no payment."""
    agent = AutoAgent(Keypair(), rpc_url="http://127.0.0.1:9")  # unreachable: must not be used
    url = f"{responder}/respond"
    via_agent = agent.request(method, url, json=spec, allow_redirects=False)
    direct = requests.request(method, url, json=spec, allow_redirects=False, timeout=10)
    assert via_agent.status_code == direct.status_code == spec["status"]
    assert via_agent.content == direct.content == base64.b64decode(spec["body"])
    for name, value in spec["headers"].items():
        assert via_agent.headers[name] == value
    assert via_agent.request.method == method
    assert "X-PAYMENT" not in via_agent.request.headers
    assert agent.payments == []
    assert agent.rpc_stats.round_trips == 0
    agent.close()
