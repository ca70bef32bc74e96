"""The effect protocol: what a flow yields (:class:`Effect`), how it gets a typed answer
(:func:`perform`), and the one effect the lowest layers need, :class:`RpcCall`.

It sits below everything else of the core (it imports only :mod:`._jsonrpc`), so a module as
low as :mod:`.solana_utils` can write a flow without importing the payment context; the other
effects live in :mod:`._effects`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from ._jsonrpc import RpcRequest

__all__ = ["Effect", "Flow", "RpcCall", "perform"]

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")


class Effect(Generic[R_co]):
    """Something a flow asks its driver to do, resumed with an ``R_co``.

    A flow yields effects; a driver performs each (over ``requests``, ``httpx``, asyncio...)
    and sends the result back in. Write ``result = yield from perform(effect)`` to have the
    result typed.
    """

    __slots__ = ()


Flow: TypeAlias = Generator[Effect[Any], Any, T]
"""A flow returning ``T``: a generator of effects, resumed with their results."""


def perform(effect: Effect[R]) -> Generator[Effect[Any], Any, R]:
    """Yield ``effect`` and return its result, typed: ``x = yield from perform(Pause(1))``."""
    result: R = yield effect
    return result


@dataclass(frozen=True)
class RpcCall(Effect[list[Any]]):
    """Effect: run ``requests`` as one JSON-RPC batch; resume with the parsed results."""

    requests: tuple[RpcRequest, ...]
