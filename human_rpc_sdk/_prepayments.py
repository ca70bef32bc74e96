"""Which requests have a payment prepared ahead, being prepared, or wanted (pure state).

The decisions of :mod:`._prepay` over time: one slot per request (method, URL), at most
:data:`~._prepay.PREPARED_KEYS` of them, the least recently used forgotten first. Not
thread-safe: the drivers (:mod:`._io.prepay`, :mod:`._io.aprepay`) call it under their lock
(or from their one event loop). A method that returns payments hands over those to release;
none of them was ever handed to a request.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ._flow import ExactPayable
from ._prepay import (
    PREPARED_KEYS,
    SAFETY_MARGIN,
    UNUSED_KEPT,
    Key,
    PrepayPolicy,
    Ready,
    Remembered,
)

__all__ = ["Prepayments"]


def _terms(payable: ExactPayable) -> tuple[object, ...]:
    """What a payment prepared for ``payable`` pays: its offer as the server wrote it."""
    return tuple((offer.version, dict(offer.raw)) for offer in payable.challenge.offers)


@dataclass
class _Slot:
    remembered: Remembered | None
    ready: Ready | None = None
    busy: bool = False
    """A preparation is under way."""
    wanted: bool = True
    """A preparation should start."""
    unused: int = 0
    """Payments prepared for it in a row that expired unused."""


class Prepayments:
    """Which requests have a payment prepared, being prepared, or wanted (not thread-safe: the
    driver holds its lock around every call). Methods returning payments hand over those to
    release; none returned was ever handed to a request."""

    def __init__(self, policy: PrepayPolicy, *, limit: int = PREPARED_KEYS) -> None:
        self.policy = policy
        self.limit = limit
        self._slots: OrderedDict[Key, _Slot] = OrderedDict()  # least recently used first
        self.closed = False

    def allows(self, key: Key) -> bool:
        return self.policy.allows(key[1])

    def remember(self, key: Key, remembered: Remembered) -> list[Ready]:
        """A normal payment for ``key`` was served: prepare the next (again, after a refusal).
        One prepared meanwhile for other terms (the server changed them) is released: sent,
        it would be refused, and no second payment may follow it."""
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot(remembered)
        outdated: list[Ready] = []
        if slot.ready is not None and _terms(slot.ready.payable) != _terms(remembered.payable):
            outdated, slot.ready = [slot.ready], None
        slot.remembered = remembered
        slot.wanted = slot.ready is None
        slot.unused = 0
        self._slots.move_to_end(key)
        return outdated + self._evict()

    def served(self, key: Key) -> None:
        """A prepared payment for ``key`` was served: prepare the next one."""
        slot = self._slots.get(key)
        if slot is not None and slot.remembered is not None:
            slot.wanted = slot.ready is None
            slot.unused = 0
            self._slots.move_to_end(key)

    def refused(self, key: Key) -> list[Ready]:
        """A prepared payment for ``key`` was refused (or not served): prepare no more for it
        until a normal payment to it is served."""
        slot = self._slots.pop(key, None)
        if slot is None:
            return []
        if slot.busy:  # its preparation's result is released when it ends
            self._slots[key] = _Slot(None, busy=True, wanted=False)
        return [slot.ready] if slot.ready is not None else []

    def next_job(self, now: float) -> tuple[Key, Remembered] | None:
        """A preparation to start (marked under way), or None."""
        if self.closed:
            return None
        for key, slot in self._slots.items():
            if not slot.wanted or slot.busy or slot.ready is not None or slot.remembered is None:
                continue
            slot.wanted = False
            if slot.remembered.stale_at - SAFETY_MARGIN <= now:
                continue  # the challenge is no longer current: the next request gets a new one
            slot.busy = True
            return key, slot.remembered
        return None

    def finished(self, key: Key, ready: Ready | None) -> list[Ready]:
        """A preparation for ``key`` ended with ``ready`` (None: nothing prepared)."""
        slot = self._slots.get(key)
        if slot is not None:
            slot.busy = False
        if ready is None:
            return []
        if (
            self.closed
            or slot is None
            or slot.remembered is None
            or slot.ready is not None
            or ready.payable is not slot.remembered.payable  # a newer challenge came meanwhile
        ):
            self._drop_if_forgotten(key)
            if slot is not None and slot.remembered is not None and slot.ready is None:
                slot.wanted = True
            return [ready]
        slot.ready = ready
        return []

    def coming(self, key: Key, now: float) -> bool:
        """Whether a payment for ``key`` is being prepared, or about to be (worth waiting for)."""
        slot = self._slots.get(key)
        if slot is None or self.closed or slot.ready is not None:
            return False
        if slot.busy:
            return True
        fresh = slot.remembered is not None and now < slot.remembered.stale_at - SAFETY_MARGIN
        return slot.wanted and fresh

    def preparing(self, now: float) -> bool:
        """Whether any payment is being prepared, or about to be."""
        return any(self.coming(key, now) for key in self._slots)

    def take(self, key: Key, now: float) -> tuple[Ready | None, list[Ready]]:
        """The payment prepared for ``key`` if it is still usable (it is then the caller's,
        never released here), and any to release."""
        slot = self._slots.get(key)
        if slot is None or slot.ready is None:
            return None, []
        ready, slot.ready = slot.ready, None
        self._slots.move_to_end(key)
        if now < ready.usable_until:
            return ready, []
        slot.wanted = slot.remembered is not None  # asked for: worth preparing again
        return None, [ready]

    def expired(self, now: float) -> list[Ready]:
        """The prepared payments no longer usable (to release; the next is then prepared)."""
        stale: list[Ready] = []
        for slot in self._slots.values():
            if slot.ready is not None and slot.ready.usable_until <= now:
                stale.append(slot.ready)
                slot.ready = None
                slot.unused += 1
                slot.wanted = slot.remembered is not None and slot.unused < UNUSED_KEPT
        return stale

    def next_deadline(self) -> float | None:
        """When the first prepared payment stops being usable (None: none is prepared)."""
        ends = [s.ready.usable_until for s in self._slots.values() if s.ready is not None]
        return min(ends, default=None)

    def yield_budget(self) -> list[Ready]:
        """Every payment prepared (to release), each prepared again only after its request's
        next served payment: a payment the budget refused gets what they reserved."""
        held: list[Ready] = []
        for slot in self._slots.values():
            if slot.ready is not None:
                held.append(slot.ready)
                slot.ready = None
                slot.wanted = False
        return held

    def close(self) -> list[Ready]:
        """Prepare nothing more; every payment prepared (to release)."""
        self.closed = True
        held = [slot.ready for slot in self._slots.values() if slot.ready is not None]
        for slot in self._slots.values():
            slot.ready = None
        return held

    def _evict(self) -> list[Ready]:
        """Past ``limit`` requests, forget the least recently used (releasing its payment)."""
        live = [key for key, slot in self._slots.items() if slot.remembered is not None]
        released: list[Ready] = []
        for key in live[: max(0, len(live) - self.limit)]:
            released += self.refused(key)
        return released

    def _drop_if_forgotten(self, key: Key) -> None:
        slot = self._slots.get(key)
        if slot is not None and slot.remembered is None and not slot.busy:
            del self._slots[key]
