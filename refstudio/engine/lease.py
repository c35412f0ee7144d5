"""Engine leases: who drives which generations, across processes and machines.

Each open engine holds a row in ``engine_lease`` named by its owner tag (``pid@machine#n``, the
tag its generations carry in ``Generation.owner``) and renews it from a heartbeat thread every
third of the lease. A ``resume`` anywhere leaves an owner's generations alone while its lease
runs, and takes them over once it has expired: the engine died, or lost the database for longer
than a lease. On the engine's own machine a dead process is known at once (its pid is gone), so
a local crash is resumed without waiting, as before leases.

The machine is named by ``REFSTUDIO_MACHINE`` or else the host name: machines that share a host
name (cloned containers) must set it, or the pid test would judge another machine's processes.
"""

from __future__ import annotations

import os
import socket
import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, update
from sqlmodel import col, select

from ..errors import RefstudioError
from ..storage.database import Database, read_session, write_session
from ..storage.tables import EngineLease

__all__ = ["DEFAULT_LEASE_S", "Lease", "lease_expiry", "machine_name"]

#: Seconds a lease lasts without a heartbeat (refstudio.toml ``lease_seconds``).
DEFAULT_LEASE_S = 60.0


def machine_name() -> str:
    return os.environ.get("REFSTUDIO_MACHINE") or socket.gethostname()


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Lease:
    """One engine's lease, renewed by a daemon thread until :meth:`close`."""

    def __init__(self, db: Database, owner: str, *, seconds: float,
                 author: str | None = None) -> None:
        self.db = db
        self.owner = owner
        self.seconds = max(1.0, seconds)
        self._stop = threading.Event()
        now = _now()
        with write_session(db) as session:
            session.add(EngineLease(owner=owner, host=machine_name(), pid=os.getpid(),
                                    author=author, started_at=now,
                                    expires_at=now + timedelta(seconds=self.seconds)))
        self._thread = threading.Thread(target=self._beat, name="refstudio-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                with write_session(self.db) as session:
                    session.connection().execute(
                        update(EngineLease).where(col(EngineLease.owner) == self.owner)
                        .values(expires_at=_now() + timedelta(seconds=self.seconds)))
            except RefstudioError:
                continue  # the database blipped: try again next beat; the lease still runs

    def close(self) -> None:
        """Stop renewing and give the lease up (its work is then free to be resumed)."""
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            with write_session(self.db) as session:
                session.connection().execute(
                    delete(EngineLease).where(col(EngineLease.owner) == self.owner))
        except RefstudioError:
            pass  # unreachable now: the lease simply expires


def lease_expiry(db: Database, owner: str) -> datetime | None:
    """When ``owner``'s lease runs out, or None if it holds none (closed, or older code)."""
    with read_session(db) as session:
        expiry: datetime | None = session.exec(
            select(EngineLease.expires_at).where(EngineLease.owner == owner)).first()
    return expiry


def lease_alive(db: Database, owner: str) -> bool | None:
    """True while ``owner``'s lease runs, False once expired, None if it has none."""
    expiry = lease_expiry(db, owner)
    if expiry is None:
        return None
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=timezone.utc)
    return expiry > _now()
