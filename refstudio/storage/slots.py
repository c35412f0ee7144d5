"""Slots of a provider account shared by every process and machine on one PostgreSQL library.

A 2-at-once account must have 2 tasks in flight in total, not 2 per machine. Each slot is a
PostgreSQL session-level advisory lock ``(account, n)`` for ``n < limit``, held on one
connection of this process for as long as the task is in flight. The server frees every lock
of a connection that closes, so a process that dies (SIGKILL, power cut, lost network) gives its
slots back without anyone cleaning up; nothing is written to any table.

SQLite libraries live on one machine and keep the per-process gate of
:mod:`refstudio.engine.account`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .database import Database

__all__ = ["SharedSlots"]

#: Seconds between attempts while every slot is taken elsewhere (a task takes seconds).
POLL_S = 0.05


def _account_lock_key(account: str) -> int:
    """A signed 32-bit key for ``account`` (advisory locks take two int4 keys)."""
    value = int.from_bytes(hashlib.sha256(account.encode()).digest()[:4], "big")
    return value - (1 << 32) if value >= 1 << 31 else value


#: The second key of the "line" lock: whoever holds it gets the next free slot.
LINE = -1


class SharedSlots:
    """``limit`` slots of ``account`` across every process using database ``db``.

    Fairness: a machine that frees a slot and at once wants another would win every race
    against machines that poll, and a batch of 1,000 would shut the others out until it ends.
    So a process that finds every slot taken gets in line by holding the lock ``(account,
    LINE)``, and nobody else takes a slot while it is held: the next free slot is the waiter's
    (as :class:`refstudio.engine.machine_slots.MachineSlots` does with a file).

    Cost: when many callers of one object wait together (a batch at concurrency 64), one look
    (a query per slot) per poll interval serves them all; the others do not look again until
    then.
    """

    def __init__(self, db: Database, account: str, limit: int) -> None:
        self.db = db
        self.key = _account_lock_key(account)
        self.limit = max(1, limit)
        self._lock = threading.Lock()  # one connection: one statement at a time
        self._conn: Any = None
        self._held: set[int] = set()
        self._in_line = False
        self._waiting = 0  # callers of slot() of this object waiting now
        self._quiet_until = 0.0  # after a look that found nothing: no new look before this

    def _connection(self) -> Any:
        if self._conn is None:
            # Outside the pool: its locks must live exactly as long as this object uses them.
            self._conn = self.db.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT")
        return self._conn

    def try_acquire(self) -> int | None:
        """Take a free slot and return its number, or None when all are taken (or another
        process waits for the next free one)."""
        with self._lock:
            now = time.monotonic()
            if self._waiting > 1 and now < self._quiet_until:
                return None  # another caller of ours just looked and found nothing
            self._quiet_until = now + POLL_S
            conn = self._connection()
            if not self._in_line:
                self._in_line = bool(conn.execute(
                    text("SELECT pg_try_advisory_lock(:key, :slot)"),
                    {"key": self.key, "slot": LINE}).scalar())
                if not self._in_line:
                    return None  # another process is first in line
            for slot in range(self.limit):
                if slot in self._held:
                    continue  # ours already (the lock is re-entrant within a session)
                got = conn.execute(text("SELECT pg_try_advisory_lock(:key, :slot)"),
                                   {"key": self.key, "slot": slot}).scalar()
                if got:
                    self._held.add(slot)
                    self._quiet_until = 0.0  # more may be free: the next caller looks too
                    self._leave_line(conn)  # whoever waits next goes first
                    return slot
            return None  # we stay in line: the next free slot is ours

    def _leave_line(self, conn: Any) -> None:
        if self._in_line:
            self._in_line = False
            # A connection that fails here has lost its locks with it: nothing is kept out.
            with contextlib.suppress(SQLAlchemyError):
                conn.execute(text("SELECT pg_advisory_unlock(:key, :slot)"),
                             {"key": self.key, "slot": LINE})

    def release(self, slot: int) -> None:
        with self._lock:
            if slot not in self._held:
                return
            self._held.discard(slot)
            self._quiet_until = 0.0  # one of ours may take it at once (if nobody is in line)
            if self._conn is not None:
                self._conn.execute(text("SELECT pg_advisory_unlock(:key, :slot)"),
                                   {"key": self.key, "slot": slot})

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """Wait for a slot (off the event loop), hold it for the block."""
        with self._lock:
            self._waiting += 1
        try:
            while True:
                taken = await asyncio.to_thread(self.try_acquire)
                if taken is not None:
                    break
                await asyncio.sleep(POLL_S)
        finally:
            await asyncio.to_thread(self._stop_waiting)
        try:
            yield taken
        finally:
            await asyncio.to_thread(self.release, taken)

    def _stop_waiting(self) -> None:
        with self._lock:
            self._waiting -= 1
            if not self._waiting and self._conn is not None:
                self._leave_line(self._conn)  # a cancelled waiter must not keep others out

    def close(self) -> None:
        """Give every slot back (closing the connection frees its locks)."""
        with self._lock:
            self._held.clear()
            self._in_line = False
            if self._conn is not None:
                with contextlib.suppress(Exception):  # the server may be gone: locks go too
                    # Really closed, not handed back to the pool: a pooled connection would
                    # keep its session's locks for whoever checks it out next.
                    self._conn.invalidate()
                    self._conn.close()
                self._conn = None
