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
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import text

from .database import Database

__all__ = ["SharedSlots"]

#: Seconds between attempts while every slot is taken elsewhere (a task takes seconds).
POLL_S = 0.05


def _account_lock_key(account: str) -> int:
    """A signed 32-bit key for ``account`` (advisory locks take two int4 keys)."""
    value = int.from_bytes(hashlib.sha256(account.encode()).digest()[:4], "big")
    return value - (1 << 32) if value >= 1 << 31 else value


class SharedSlots:
    """``limit`` slots of ``account`` across every process using database ``db``."""

    def __init__(self, db: Database, account: str, limit: int) -> None:
        self.db = db
        self.key = _account_lock_key(account)
        self.limit = max(1, limit)
        self._lock = threading.Lock()  # one connection: one statement at a time
        self._conn: Any = None
        self._held: set[int] = set()

    def _connection(self) -> Any:
        if self._conn is None:
            # Outside the pool: its locks must live exactly as long as this object uses them.
            self._conn = self.db.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT")
        return self._conn

    def try_acquire(self) -> int | None:
        """Take a free slot and return its number, or None when all are taken."""
        with self._lock:
            conn = self._connection()
            for slot in range(self.limit):
                if slot in self._held:
                    continue  # ours already (the lock is re-entrant within a session)
                got = conn.execute(text("SELECT pg_try_advisory_lock(:key, :slot)"),
                                   {"key": self.key, "slot": slot}).scalar()
                if got:
                    self._held.add(slot)
                    return slot
            return None

    def release(self, slot: int) -> None:
        with self._lock:
            if slot not in self._held:
                return
            self._held.discard(slot)
            if self._conn is not None:
                self._conn.execute(text("SELECT pg_advisory_unlock(:key, :slot)"),
                                   {"key": self.key, "slot": slot})

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """Wait for a slot (off the event loop), hold it for the block."""
        while True:
            taken = await asyncio.to_thread(self.try_acquire)
            if taken is not None:
                break
            await asyncio.sleep(POLL_S)
        try:
            yield taken
        finally:
            await asyncio.to_thread(self.release, taken)

    def close(self) -> None:
        """Give every slot back (closing the connection frees its locks)."""
        with self._lock:
            self._held.clear()
            if self._conn is not None:
                with contextlib.suppress(Exception):  # the server may be gone: locks go too
                    self._conn.close()
                self._conn = None
