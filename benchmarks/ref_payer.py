"""The reference x402 client (x402 2.25.0) as a long-lived payer, run in ``.venv-x402``.

argv[1]: ``{"secret": <base58 keypair>, "rpc_url": ...}``. Prints ``{"ready": true}`` once
set up, then reads commands from standard input, one a line, and answers each with one JSON
line:

* ``pay N URL [GAP]``: N paid GETs of URL, one after the other, through ``x402_requests``
  (one keep-alive session for the whole run), GAP seconds apart (not timed; default 0);
  answers ``{"latencies": [seconds, ...]}``, each the wall clock of one request measured in
  this process, or ``{"error": ...}`` if one was not answered 200;
* ``quit`` (or the end of input): exit.

The benchmark (bench_payment.py) measures AutoAgent the same way in its own process, and the
two take turns round by round.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

from solders.keypair import Keypair
from x402 import x402ClientSync  # type: ignore[import-not-found,unused-ignore]
from x402.http.clients import x402_requests  # type: ignore[import-not-found,unused-ignore]
from x402.mechanisms.svm.exact.register import (  # type: ignore[import-not-found,unused-ignore]
    register_exact_svm_client,
)
from x402.mechanisms.svm.signers import KeypairSigner  # type: ignore[import-not-found,unused-ignore]


def pay(session: object, count: int, url: str, gap: float = 0.0) -> dict[str, object]:
    latencies = []
    for _ in range(count):
        if gap:
            time.sleep(gap)
        started = time.perf_counter()
        response = session.get(url, timeout=60)  # type: ignore[attr-defined]
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            text = response.text[:300]
            return {"error": f"GET {url} answered {response.status_code}: {text}"}
    return {"latencies": latencies}


def main() -> int:
    # x402 2.25.0 builds a deprecated solana Client when it pays; the warning says nothing here.
    warnings.filterwarnings("ignore", category=FutureWarning)
    args = json.loads(sys.argv[1])
    client = x402ClientSync()
    signer = KeypairSigner(Keypair.from_base58_string(args["secret"]))
    register_exact_svm_client(client, signer, rpc_url=args["rpc_url"])
    session = x402_requests(client)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "pay" and len(words) in (3, 4):
            gap = float(words[3]) if len(words) == 4 else 0.0
            answer = pay(session, int(words[1]), words[2], gap)
        else:
            expected = "expected 'pay N URL [GAP]' or 'quit'"
            answer = {"error": f"unknown command {line.strip()!r}; {expected}"}
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
