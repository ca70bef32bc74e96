"""AutoAgent configuration is validated when the agent is built."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from solders.keypair import Keypair

from human_rpc_sdk import AutoAgent, ReiteratorConfigurationError, SDKConfigurationError

KEY = Keypair.from_seed(b"k" * 32)

VALID = {
    "network": st.sampled_from(["devnet", "mainnet-beta", "testnet", "localnet"]),
    "timeout": st.floats(min_value=0.001, max_value=3600) | st.integers(1, 3600),
    "rpc_url": st.none()
    | st.sampled_from(["http://127.0.0.1:8899", "https://rpc.example.com/path?key=1"]),
    "human_rpc_url": st.none() | st.just("http://localhost:3000/api/v1/tasks"),
    "reiterator": st.booleans(),
    "max_retry_attempts": st.integers(1, 100),
    "backoff_strategy": st.sampled_from(["exponential", "linear", "fixed"]),
    "base_delay": st.floats(min_value=0, max_value=60) | st.integers(0, 60),
}
INVALID = {
    "network": st.sampled_from(["", "mainnet", "solana", "Devnet", "eth"]) | st.integers(),
    "timeout": st.sampled_from([0, -1, math.nan, math.inf, True, "10", None]),
    "rpc_url": st.sampled_from(["", "ftp://x", "localhost:8899", "http://", "not a url"]).filter(
        bool
    ),
    "human_rpc_url": st.sampled_from(["ws://x", "tasks"]),
    "reiterator": st.sampled_from([1, "yes", None]),
    "max_retry_attempts": st.sampled_from([0, -1, 1.5, True, "3", None]),
    "backoff_strategy": st.sampled_from(["random", "", None, "Exponential"]),
    "base_delay": st.sampled_from([-0.1, math.nan, math.inf, True, "1"]),
}


# **Feature: human-rpc-python-sdk, Property 1: For any SDK initialization parameters, invalid
# configurations should raise descriptive errors while valid configurations should initialize
# successfully**
@given(options=st.fixed_dictionaries(VALID))
def test_property_1_valid_configurations_initialize(options: dict[str, Any]) -> None:
    """Any valid combination builds an agent that reflects its configuration."""
    agent = AutoAgent(KEY, **options)
    assert agent.network == options["network"]
    assert agent.timeout == options["timeout"]
    assert agent.address == str(KEY.pubkey())
    if options["rpc_url"]:
        assert agent.rpc_url == options["rpc_url"]
    agent.close()


# **Feature: human-rpc-python-sdk, Property 1: For any SDK initialization parameters, invalid
# configurations should raise descriptive errors while valid configurations should initialize
# successfully**
@given(options=st.fixed_dictionaries(VALID), data=st.data())
def test_property_1_invalid_configurations_raise_descriptive_errors(
    options: dict[str, Any], data: st.DataObject
) -> None:
    """One invalid parameter: SDKConfigurationError naming that parameter."""
    name = data.draw(st.sampled_from(sorted(INVALID)))
    options[name] = data.draw(INVALID[name])
    with pytest.raises(SDKConfigurationError) as caught:
        AutoAgent(KEY, **options)
    error = caught.value
    assert error.parameter == name
    assert name in str(error)
    if name in ("reiterator", "max_retry_attempts", "backoff_strategy", "base_delay"):
        assert isinstance(error, ReiteratorConfigurationError)


def test_rpc_url_comes_from_the_environment_then_the_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rpc_url argument > SOLANA_RPC_URL > the network's public endpoint."""
    assert AutoAgent(KEY, network="devnet").rpc_url == "https://api.devnet.solana.com"
    monkeypatch.setenv("SOLANA_RPC_URL", "http://127.0.0.1:9")
    assert AutoAgent(KEY).rpc_url == "http://127.0.0.1:9"
    assert AutoAgent(KEY, rpc_url="http://127.0.0.1:10").rpc_url == "http://127.0.0.1:10"
    monkeypatch.setenv("SOLANA_RPC_URL", "garbage")
    with pytest.raises(SDKConfigurationError, match="SOLANA_RPC_URL"):
        AutoAgent(KEY)


def test_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no key argument the agent reads SOLANA_PRIVATE_KEY."""
    monkeypatch.setenv("SOLANA_PRIVATE_KEY", str(KEY))
    assert AutoAgent().address == str(KEY.pubkey())


def test_repr_shows_address_not_key() -> None:
    """The agent's repr shows its public address and network only."""
    text = repr(AutoAgent(KEY))
    assert str(KEY.pubkey()) in text
    assert str(KEY) not in text
