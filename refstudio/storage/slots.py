"""Slots of a provider account shared by every process and machine on one PostgreSQL library.

A 2-at-once account must have 2 tasks in flight in total, not 2 per machine. Each slot is a
PostgreSQL session-level advisory lock ``(account, n)`` for ``n < limit``, held on one
connection of this process for as long as the task is in flight. The server frees every lock
of a connection that closes, so a process that dies (SIGKILL, power cut, lost network) gives its
slots back without anyone cleaning up; nothing is written to any table.

A connection the server drops (a restart, a network blip, ``pg_terminate_backend``) takes
its locks with it. That is never an error of the task that held one: giving back a lock that is
already gone is done; the next look opens a new connection and takes back the slots this process
still counts as held, so the limit holds again across machines as soon as it can.

SQLite libraries live on one machine, whose lock files hold their slots
(:mod:`refstudio.engine.machine_slots`); both wait their turn as :mod:`.fairslots` says.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..errors import StorageError
from .database import Database
from .fairslots import LINE, FairSlots

__all__ = ["SharedSlots"]

log = logging.getLogger(__name__)

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
            self._take_back()
        return self._conn

    def _take_back(self) -> None:
        """On a new connection after a lost one: take again the locks this object still counts
        as held (its tasks are in flight), so other machines see them taken again."""
        for n in sorted(self._held) + ([LINE] if self._in_line else []):
            if not self._lock_on(self._conn, n):
                # Another process took it in the gap: one task more than the limit until one
                # of ours ends. The provider refuses what it cannot run (429: not accepted, safe
                # to send again), so this costs a retry, never a second payment.
                log.warning("an account slot was taken elsewhere while the database "
                            "connection was lost; the limit holds again once a task ends")
                if n == LINE:
                    self._in_line = False

    def _lock_on(self, conn: Any, n: int) -> bool:
        return bool(conn.execute(text("SELECT pg_try_advisory_lock(:key, :slot)"),
                                 {"key": self.key, "slot": n}).scalar())

    def _try_lock(self, n: int) -> bool:
        try:
            return self._lock_on(self._connection(), n)
        except SQLAlchemyError:
            self._drop()  # lost, and its locks with it: one more try on a new connection
        try:
            return self._lock_on(self._connection(), n)
        except SQLAlchemyError as exc:
            self._drop()
            raise self._unreachable(exc) from None

    def _unlock(self, n: int) -> None:
        if self._conn is None:
            return  # closed or lost: the locks went with the connection
        try:
            self._conn.execute(text("SELECT pg_advisory_unlock(:key, :slot)"),
                               {"key": self.key, "slot": n})
        except SQLAlchemyError:
            # The connection is gone, and lock n with it: given back already. The slots still
            # held lost their locks too; take them back now if the server answers again.
            self._drop()
            with contextlib.suppress(SQLAlchemyError):
                self._connection()

    def _drop(self) -> None:
        """Forget a connection that failed (really closed: never back into the pool)."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None

    def _unreachable(self, exc: SQLAlchemyError) -> StorageError:
        return self.db.unavailable(exc) or StorageError(
            f"the account's slots could not be taken: database error: {self.db.reason(exc)}")

    def _unlock_all(self) -> None:
        """Closing the connection frees its locks (the server may be gone: they went too)."""
        self._drop()
