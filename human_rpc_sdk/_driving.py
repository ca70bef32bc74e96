"""Stepping a flow: the one loop every driver runs, whatever performs the effects.

A driver asks :meth:`Stepper.start` for the first effect, performs it, and hands the result to
:meth:`Stepper.send` (or an SDK error to :meth:`Stepper.throw`, so the flow decides what it
means) to get the next; ``None`` means the flow has ended, with :attr:`Stepper.value`. The
sync driver performs in place, the async one awaits, the httpx auth flows yield the paid
request to httpx: the stepping is the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, TypeVar

from ._protocol import Effect
from .exceptions import HumanRPCError

__all__ = ["Stepper", "adrive", "drive"]

T = TypeVar("T")


class Stepper(Generic[T]):
    """Runs ``flow`` one effect at a time."""

    def __init__(self, flow: Generator[Effect[Any], Any, T]) -> None:
        self._flow = flow
        self._done = False
        self._value: T | None = None

    def start(self) -> Effect[Any] | None:
        """The flow's first effect (None: it ended at once)."""
        return self._step(lambda: next(self._flow))

    def send(self, result: Any) -> Effect[Any] | None:
        """Resume the flow with the last effect's result; its next effect, or None."""
        return self._step(lambda: self._flow.send(result))

    def throw(self, error: BaseException) -> Effect[Any] | None:
        """Raise ``error`` in the flow where it waits; its next effect, or None."""
        return self._step(lambda: self._flow.throw(error))

    @property
    def value(self) -> T:
        """What the flow returned (once a step gave None)."""
        if not self._done:
            raise RuntimeError("the flow has not ended")
        return self._value  # type: ignore[return-value]

    def _step(self, advance: Any) -> Effect[Any] | None:
        try:
            effect: Effect[Any] = advance()
        except StopIteration as stop:
            self._done, self._value = True, stop.value
            return None
        return effect


def drive(flow: Generator[Effect[Any], Any, T], perform: Callable[[Effect[Any]], Any]) -> T:
    """Run ``flow`` to its end, performing each effect with ``perform``; an SDK error raised
    by ``perform`` is thrown into the flow, which decides what it means."""
    steps = Stepper(flow)
    effect = steps.start()
    while effect is not None:
        try:
            result = perform(effect)
        except HumanRPCError as exc:
            effect = steps.throw(exc)
        else:
            effect = steps.send(result)
    return steps.value


async def adrive(
    flow: Generator[Effect[Any], Any, T], perform: Callable[[Effect[Any]], Awaitable[Any]]
) -> T:
    """:func:`drive` for asyncio: each effect's ``perform`` is awaited."""
    steps = Stepper(flow)
    effect = steps.start()
    while effect is not None:
        try:
            result = await perform(effect)
        except HumanRPCError as exc:
            effect = steps.throw(exc)
        else:
            effect = steps.send(result)
    return steps.value
