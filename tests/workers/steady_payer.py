"""A paying agent that lives through several rounds of payments, for the tests of a journal
database stopped and started under it (one agent for the whole run: never recreated).

    python -m tests.workers.steady_payer '{"url": ..., "rpc_url": ..., "threads": 3, ...}'

The key comes from PAYER_KEY (base58), the journal from ``$HUMAN_RPC_JOURNAL`` ("journal_wait"
is passed on when given). It prints "ready", then for each line "pay N" on stdin makes N
requests from each of "threads" threads: one line ``{"attempt": outcome}`` per request as it
ends ("paid", a ``PaymentError``'s reason, or what else went wrong), then ``{"done": {"paid":
..., "signed": ...}}`` (``signed``: how many transactions its signer signed so far). "quit"
closes the agent (writing any outcome kept) and prints ``{"closed": true}``.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from solders.keypair import Keypair
from solders.signature import Signature

from human_rpc_sdk import AutoAgent, HumanRPCError, KeypairSigner, PaymentError


class CountingSigner(KeypairSigner):
    __slots__ = ("lock", "signed")

    def __init__(self, keypair: Keypair) -> None:
        super().__init__(keypair)
        self.signed = 0
        self.lock = threading.Lock()

    def sign_message(self, message: bytes) -> Signature:
        with self.lock:
            self.signed += 1
        return super().sign_message(message)


def main() -> None:
    import os

    job = json.loads(sys.argv[1])
    signer = CountingSigner(Keypair.from_base58_string(os.environ["PAYER_KEY"]))
    options: dict[str, Any] = {}
    if "journal_wait" in job:
        options["journal_wait"] = job["journal_wait"]
    agent = AutoAgent(signer=signer, rpc_url=job["rpc_url"], **options)
    out = threading.Lock()

    def say(line: dict[str, Any]) -> None:
        with out:
            print(json.dumps(line), flush=True)

    say({"ready": True})
    for command in sys.stdin:
        if command.strip() == "quit":
            break
        rounds = int(command.split()[1])
        paid = [0]

        def attempt(rounds: int = rounds, paid: list[int] = paid) -> None:
            for _ in range(rounds):
                outcome = pay(agent, job["url"])
                if outcome == "paid":
                    with out:
                        paid[0] += 1
                say({"attempt": outcome})

        running = [threading.Thread(target=attempt) for _ in range(job.get("threads", 1))]
        for thread in running:
            thread.start()
        for thread in running:
            thread.join()
        say({"done": {"paid": paid[0], "signed": signer.signed}})
    agent.close()
    say({"closed": True})


def pay(agent: AutoAgent, url: str) -> str:
    try:
        response = agent.get(url)
    except PaymentError as exc:
        return str(exc.reason) if exc.reason == "journal_unavailable" else f"{exc.reason}: {exc}"
    except HumanRPCError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "paid" if response.status_code == 200 else f"HTTP {response.status_code}"


if __name__ == "__main__":
    main()
