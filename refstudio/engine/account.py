"""What one provider account allows, enforced once per process across every caller.

WaveSpeed's default account level runs 2 tasks at once. Each :class:`~refstudio.engine.Engine`
used to keep its own semaphore, so four concurrent ``Studio.generate`` calls, or a workflow run
beside them, had 8 or more tasks in flight on a 2-task account. Engines now take their slots
from one :class:`AccountGate` per account (keyed by :attr:`Provider.account_key`), shared by
every engine of the process whatever thread or event loop it runs on, so the gate is built on a
``threading.Lock``; waiters sleep on a future of their own loop.

The gate allows the smallest concurrency any live engine of that account was configured with:
nobody is ever allowed more than the account setting they were given. It also holds the
account's :class:`~refstudio.engine.retry.RateGate`, so one 429 pauses every caller.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import threading
from collections.abc import AsyncIterator

from .retry import RateGate

__all__ = ["AccountGate", "join", "leave"]

_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class AccountGate:
    """Task slots of one account, shared across threads and event loops, plus its rate gate."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.rate = RateGate()
        self._lock = threading.Lock()
        self._limits: dict[int, int] = {}  # member token -> the concurrency it was configured with
        self._in_use = 0
        self._waiters: collections.deque[_Waiter] = collections.deque()

    @property
    def limit(self) -> int:
        """Tasks allowed in flight at once: the smallest setting of any member, at least 1."""
        with self._lock:
            return self._limit()

    def _limit(self) -> int:
        return max(1, min(self._limits.values(), default=1))

    @property
    def in_use(self) -> int:
        with self._lock:
            return self._in_use

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._waiters and self._in_use < self._limit():
                self._in_use += 1
                return
            future: asyncio.Future[None] = loop.create_future()
            waiter = (loop, future)
            self._waiters.append(waiter)
        try:
            await future
        except BaseException:
            with self._lock:
                try:
                    self._waiters.remove(waiter)
                    granted = False
                except ValueError:
                    granted = True  # a release handed us the slot just as we were cancelled
            if granted:
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            self._in_use -= 1
            self._wake()

    def _wake(self) -> None:
        """Hand free slots to waiters, first come first served (called with the lock held)."""
        while self._waiters and self._in_use < self._limit():
            loop, future = self._waiters.popleft()
            self._in_use += 1
            try:
                loop.call_soon_threadsafe(_grant, future)
            except RuntimeError:  # that loop is closed: its waiter is gone
                self._in_use -= 1

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()


def _grant(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_registry_lock = threading.Lock()
_gates: dict[str, AccountGate] = {}
_tokens = itertools.count(1)


def join(key: str, concurrency: int) -> tuple[AccountGate, int]:
    """The process's gate for account ``key``, counting the caller in with its ``concurrency``.

    Returns the gate and a token for :func:`leave`.
    """
    token = next(_tokens)
    with _registry_lock:
        gate = _gates.get(key)
        if gate is None:
            gate = _gates[key] = AccountGate(key)
        with gate._lock:
            gate._limits[token] = max(1, concurrency)
    return gate, token


def leave(gate: AccountGate, token: int) -> None:
    """Count a member out; the gate is forgotten once nobody uses it (a later limit starts afresh).
    """
    with _registry_lock:
        with gate._lock:
            gate._limits.pop(token, None)
            empty = not gate._limits
            if not empty:
                gate._wake()  # a smaller limit may have left
        if empty and _gates.get(gate.key) is gate:
            del _gates[gate.key]


def _forget_after_fork() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    _gates.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
