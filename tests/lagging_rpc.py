"""A Solana RPC node that lags: a loopback JSON-RPC proxy in front of a stub gateway's /rpc.

It answers as a node that has reached only ``lag`` slots fewer than the gateway's ledger:

* ``context.slot``, ``getSlot``, ``getBlockHeight`` and ``getEpochInfo`` (``absoluteSlot``,
  ``blockHeight``, ``slotIndex``) are ``lag`` behind;
* a ``minContextSlot`` beyond its view is refused with -32016, as Agave does;
* ``getLatestBlockhash`` gives the newest blockhash of its view (with that blockhash's
  ``lastValidBlockHeight`` and slot), and ``isBlockhashValid`` is false for a newer one;
* ``getSignatureStatuses`` answers null, and ``getSignaturesForAddress`` leaves out, the
  transactions of slots beyond its view.

Everything else (sendTransaction, account reads) is passed to the gateway unchanged, as a
lagging node forwards transactions to the leader. With ``fresh_blockhash=True`` it plays a
load balancer whose ``getLatestBlockhash`` reaches an up-to-date node while every other call
reaches the lagging one.

Which slot issued a blockhash is read from the gateway's ledger (a node that lags has simply
not seen the newer ones); every answer is the gateway's own, over HTTP, then held back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

import requests
from flask import Flask, Response, request
from solders.hash import Hash

from stub_gateway import GatewayServer
from stub_gateway.ledger import Ledger

__all__ = ["LaggingRpc"]

MIN_CONTEXT_SLOT_NOT_REACHED: Final = -32016
_CONFIG_AT: Final = {
    "getSlot": 0,
    "getBlockHeight": 0,
    "getEpochInfo": 0,
    "getLatestBlockhash": 0,
    "isBlockhashValid": 1,
    "getAccountInfo": 1,
    "getMultipleAccounts": 1,
    "getBalance": 1,
    "simulateTransaction": 1,
    "sendTransaction": 1,
    "getSignaturesForAddress": 1,
}
"""Where each method that takes ``minContextSlot`` has its configuration object."""


class LaggingRpc:
    """Serve a lagging view of ``upstream`` (a gateway's /rpc URL) on a loopback port.

    :param ledger: the gateway's ledger, to know which slot issued each blockhash.
    :param lag: how many slots behind the ledger this node is.
    :param fresh_blockhash: route ``getLatestBlockhash`` to the up-to-date gateway.
    """

    def __init__(
        self, upstream: str, ledger: Ledger, *, lag: int = 3, fresh_blockhash: bool = False
    ) -> None:
        self.upstream = upstream
        self.ledger = ledger
        self.lag = lag
        self.fresh_blockhash = fresh_blockhash
        self.calls: list[str] = []
        self._http = requests.Session()
        self._handlers: dict[str, Callable[[dict[str, Any], int], Any]] = {
            "getLatestBlockhash": self._latest_blockhash,
            "isBlockhashValid": self._blockhash_valid,
            "getSignatureStatuses": self._signature_statuses,
            "getSignaturesForAddress": self._signatures_for_address,
            "getSlot": lambda call, view: view,
            "getBlockHeight": lambda call, view: self._forward(call) - self.lag,
            "getEpochInfo": self._epoch_info,
        }
        app = Flask("lagging_rpc")
        app.add_url_rule("/", "rpc", self._serve, methods=["POST"])
        self._server = GatewayServer(app)

    @property
    def url(self) -> str:
        return self._server.url

    def view(self) -> int:
        """The newest slot this node has reached."""
        return self.ledger.slot() - self.lag

    def __enter__(self) -> LaggingRpc:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop()
        self._http.close()

    # -- serving ----------------------------------------------------------------------------

    def _serve(self) -> Response:
        document = json.loads(request.get_data())
        if isinstance(document, list):
            answer: Any = [self._one(call) for call in document]
        else:
            answer = self._one(document)
        return Response(json.dumps(answer), content_type="application/json")

    def _one(self, call: dict[str, Any]) -> dict[str, Any]:
        method = str(call.get("method"))
        self.calls.append(method)
        view = self.view()
        wanted = _min_context_slot(call)
        if wanted is not None and wanted > view:
            return {
                "jsonrpc": "2.0",
                "id": call.get("id"),
                "error": {
                    "code": MIN_CONTEXT_SLOT_NOT_REACHED,
                    "message": "Minimum context slot has not been reached",
                    "data": {"contextSlot": view},
                },
            }
        handler = self._handlers.get(method)
        if handler is None:
            reply = self._post(call)
            result = reply.get("result")
            if isinstance(result, dict) and isinstance(result.get("context"), dict):
                result["context"]["slot"] = view
            return reply
        return {"jsonrpc": "2.0", "id": call.get("id"), "result": handler(call, view)}

    def _post(self, call: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = self._http.post(self.upstream, json=call, timeout=10).json()
        return reply

    def _forward(self, call: dict[str, Any]) -> Any:
        reply = self._post(call)
        if "error" in reply:
            raise RuntimeError(f"the gateway refused {call.get('method')}: {reply['error']}")
        return reply["result"]

    # -- the lagging answers ----------------------------------------------------------------

    def _latest_blockhash(self, call: dict[str, Any], view: int) -> Any:
        if self.fresh_blockhash:
            return self._forward(call)
        found = self.ledger.blockhash_at(view)
        if found is None:
            raise RuntimeError(f"the gateway's ledger has no blockhash of slot {view} any more")
        blockhash, last_valid, _issued = found
        return {
            "context": {"apiVersion": "2.2.0", "slot": view},
            "value": {"blockhash": str(blockhash), "lastValidBlockHeight": last_valid},
        }

    def _blockhash_valid(self, call: dict[str, Any], view: int) -> Any:
        issued = self.ledger.blockhash_issued(Hash.from_string(call["params"][0]))
        if issued is None or issued > view:
            return {"context": {"apiVersion": "2.2.0", "slot": view}, "value": False}
        return {**self._forward(call), "context": {"apiVersion": "2.2.0", "slot": view}}

    def _signature_statuses(self, call: dict[str, Any], view: int) -> Any:
        result = self._forward(call)
        result["value"] = [
            None if status is None or status["slot"] > view else status
            for status in result["value"]
        ]
        result["context"]["slot"] = view
        return result

    def _signatures_for_address(self, call: dict[str, Any], view: int) -> Any:
        return [item for item in self._forward(call) if item["slot"] <= view]

    def _epoch_info(self, call: dict[str, Any], view: int) -> Any:
        info = self._forward(call)
        behind = info["absoluteSlot"] - view
        return {
            **info,
            "absoluteSlot": view,
            "blockHeight": info["blockHeight"] - behind,
            "slotIndex": max(0, info["slotIndex"] - behind),
        }


def _min_context_slot(call: dict[str, Any]) -> int | None:
    position = _CONFIG_AT.get(str(call.get("method")))
    params = call.get("params") or []
    if position is None or len(params) <= position or not isinstance(params[position], dict):
        return None
    wanted = params[position].get("minContextSlot")
    return wanted if isinstance(wanted, int) else None
