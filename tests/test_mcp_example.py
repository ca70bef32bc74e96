"""examples/mcp_paid_tools.py runs as a newcomer would, against the embedded stub gateway."""

from __future__ import annotations

from .test_examples_and_cli import run_example


def test_mcp_example_pays_a_tool_and_serves_the_agent() -> None:
    """A free tool untouched, a paid tool paid once, one over max_payment refused; the agent's
    own MCP server (stdio) pays within its limits and refuses over them."""
    done = run_example("mcp_paid_tools.py")
    assert "free tool: {'echo': 'hello'}" in done.stdout
    assert "paid 0.01 USDC for mcp://tool/premium_quote (accepted)" in done.stdout
    assert "refused (max_payment)" in done.stdout
    assert "fetch_paid: 200 paid 0.01 USDC" in done.stdout
    assert "over the limit: PaymentPolicyError (reason refused_by_policy, rule max_payment)" in (
        done.stdout
    )
    assert "budget: spent 0.02 of 1 USDC" in done.stdout
    assert "USDC left: 0.98" in done.stdout
