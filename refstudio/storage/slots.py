"""Slots of a provider account shared by every process and machine on one PostgreSQL library.

A 2-at-once account must have 2 tasks in flight in total, not 2 per machine. Each slot is a
PostgreSQL session-level advisory lock ``(account, n)`` for ``n < limit``, held on one
connection of this process for as long as the task is in flight. The server frees every lock
of a connection that closes, so a process that dies (SIGKILL, power cut, lost network) gives its
slots back without anyone cleaning up; nothing is written to any table.

SQLite libraries live on one machine, whose lock files hold their slots
(:mod:`refstudio.engine.machine_slots`); both wait their turn as :mod:`.fairslots` says.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .database import Database
from .fairslots import LINE, FairSlots

__all__ = ["SharedSlots"]

#: Seconds between attempts while every slot is taken elsewhere (a task takes seconds).
POLL_S = 0.05


def _account_lock_key(account: str) -> int:
    """A signed 32-bit key for ``account`` (advisory locks take two int4 keys)."""
    value = int.from_bytes(hashlib.sha256(account.encode()).digest()[:4], "big")
    return value - (1 << 32) if value >= 1 << 31 else value


class SharedSlots(FairSlots):
    """``limit`` slots of ``account`` across every process using database ``db``.

    Slot ``n`` is the advisory lock ``(account, n)``; the line (see :class:`FairSlots`) is
    ``(account, LINE)``. A look is a query per slot, so :meth:`slot` makes it off the event
    loop.
    """

    poll_s = POLL_S
    blocking_calls = True

    def __init__(self, db: Database, account: str, limit: int) -> None:
        super().__init__(limit)
        self.db = db
        self.key = _account_lock_key(account)
        self._conn: Any = None  # one connection: one statement at a time (under self._lock)

    def _connection(self) -> Any:
        if self._conn is None:
            # Outside the pool: its locks must live exactly as long as this object uses them.
            self._conn = self.db.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT")
        return self._conn

    def _try_lock(self, n: int) -> bool:
        return bool(self._connection().execute(
            text("SELECT pg_try_advisory_lock(:key, :slot)"),
            {"key": self.key, "slot": n}).scalar())

    def _unlock(self, n: int) -> None:
        if self._conn is None:
            return  # closed: the locks went with the connection
        try:
            self._conn.execute(text("SELECT pg_advisory_unlock(:key, :slot)"),
                               {"key": self.key, "slot": n})
        except SQLAlchemyError:
            # Leaving the line on a connection that fails: it has lost its locks with it,
            # nothing is kept out. (A slot's failure is the caller's to see.)
            if n != LINE:
                raise

    def _unlock_all(self) -> None:
        """Closing the connection frees its locks."""
        if self._conn is not None:
            with contextlib.suppress(Exception):  # the server may be gone: locks go too
                # Really closed, not handed back to the pool: a pooled connection would
                # keep its session's locks for whoever checks it out next.
                self._conn.invalidate()
                self._conn.close()
            self._conn = None
