"""The waiting policy of an account's shared slots, whatever holds the locks.

An account's slots are ``limit`` locks that other processes (or machines) take too: PostgreSQL
advisory locks (:mod:`refstudio.storage.slots`) or flock'd files
(:mod:`refstudio.engine.machine_slots`). How to take, give back and drop those locks is theirs;
who looks when, who goes first and when a waiter gives up its place is decided here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from typing import ClassVar, ParamSpec, TypeVar

__all__ = ["LINE", "FairSlots"]

#: The number of the "line" lock: whoever holds it gets the next free slot.
LINE = -1

_P = ParamSpec("_P")
_T = TypeVar("_T")


class FairSlots(ABC):
    """``limit`` slots of one account, each a lock that other holders may have taken.

    Fairness: a process that frees a slot and at once wants another would win every race
    against processes that poll, and a batch of 1,000 would shut the others out until it ends.
    So a process that finds every slot taken gets in line by holding the lock :data:`LINE`, and
    nobody else takes a slot while it is held: the next free slot is the waiter's.

    Cost: when many callers of one object wait together (a batch at concurrency 64), one look
    (an attempt per slot) per poll interval serves them all; the others do not look again until
    then.

    A subclass gives the lock primitives; each is called with ``self._lock`` held, so one at a
    time per object.
    """

    #: Seconds between looks while every slot is taken elsewhere (a task takes seconds).
    poll_s: ClassVar[float]
    #: True when a lock call may wait (a round trip to a server): :meth:`slot` then makes its
    #: calls in a worker thread, never on the event loop.
    blocking_calls: ClassVar[bool] = False

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._lock = threading.Lock()
        self._held: set[int] = set()
        self._in_line = False
        self._waiting = 0  # callers of slot() of this object waiting now
        self._quiet_until = 0.0  # after a look that found nothing: no new look before this

    @abstractmethod
    def _try_lock(self, n: int) -> bool:
        """Take lock ``n`` (a slot, or :data:`LINE`) without waiting; False when another holder
        has it."""

    @abstractmethod
    def _unlock(self, n: int) -> None:
        """Give back lock ``n``, which this object holds."""

    @abstractmethod
    def _unlock_all(self) -> None:
        """Give back every lock at once, whatever this object knows it holds."""

    def try_acquire(self) -> int | None:
        """Take a free slot and return its number, or None when all are taken (or another
        process waits for the next free one)."""
        with self._lock:
            now = time.monotonic()
            if self._waiting > 1 and now < self._quiet_until:
                return None  # another caller of ours just looked and found nothing
            self._quiet_until = now + self.poll_s
            if not self._in_line:
                self._in_line = self._try_lock(LINE)
                if not self._in_line:
                    return None  # another process is first in line
            for slot in range(self.limit):
                if slot in self._held:
                    continue  # ours already (a PostgreSQL lock would be taken twice: re-entrant)
                if self._try_lock(slot):
                    self._held.add(slot)
                    self._quiet_until = 0.0  # more may be free: the next caller looks too
                    self._leave_line()  # whoever waits next goes first
                    return slot
            return None  # we stay in line: the next free slot is ours

    def _leave_line(self) -> None:
        if self._in_line:
            self._in_line = False
            self._unlock(LINE)

    def release(self, slot: int) -> None:
        with self._lock:
            if slot not in self._held:
                return
            self._held.discard(slot)
            self._quiet_until = 0.0  # one of ours may take it at once (if nobody is in line)
            self._unlock(slot)

    async def _call(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if self.blocking_calls:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """Wait for a slot (polling), hold it for the block."""
        with self._lock:
            self._waiting += 1
        try:
            while True:
                taken = await self._call(self.try_acquire)
                if taken is not None:
                    break
                await asyncio.sleep(self.poll_s)
        finally:
            await self._call(self._stop_waiting)
        try:
            yield taken
        finally:
            await self._call(self.release, taken)

    def _stop_waiting(self) -> None:
        with self._lock:
            self._waiting -= 1
            if not self._waiting:
                self._leave_line()  # a cancelled waiter must not keep others out

    def close(self) -> None:
        """Give every slot back."""
        with self._lock:
            self._held.clear()
            self._in_line = False
            self._unlock_all()
