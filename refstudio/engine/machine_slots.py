"""Slots of a provider account shared by every process on this machine (non-PostgreSQL libraries).

Two ``refstudio gen`` runs, or two projects on one machine using the same WaveSpeed key, must
have 2 tasks in flight in total on a 2-at-once account, not 2 each. The per-process gate of
:mod:`refstudio.engine.account` cannot see another process, and a SQLite library has no server
to hold :mod:`refstudio.storage.slots`' advisory locks, so the machine itself keeps them: slot
``n`` of an account is an exclusive, non-blocking ``flock`` on the file
``<user cache dir>/refstudio/accounts/<sha256(account)[:16]>/<n>.lock``, held for as long as
the task is in flight. The kernel drops a process's flock locks when it dies (SIGKILL, a crash),
so a dead holder gives its slots back without anyone cleaning up. Neither the key nor the
account name is in any path or file: only a hash of the account key (which is itself a hash).

Where this does not apply, the process gate is all there is (documented in the README):
- no ``fcntl`` (Windows): :func:`machine_slots` returns None;
- a cache folder that cannot be made: None, with a warning in the log;
- ``flock`` on NFS is emulated with per-process POSIX locks, which would not keep two engines of
  one process apart; the process gate still does, so the limit holds (keep the cache local).

Locks are per open file, so two engines of one process holding slots through their own
:class:`MachineSlots` never share one, and a forked child (which inherits the open files)
closes its copies so that it never keeps a parent's slot alive after the parent dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

__all__ = ["MachineSlots", "accounts_folder", "machine_slots"]

try:
    import fcntl
except ImportError:  # Windows: no flock; the per-process gate is all there is
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: Seconds between attempts while every slot is taken by other processes (a task takes seconds).
POLL_S = 0.02


def accounts_folder() -> Path:
    """Where every account's lock files live: the user's cache folder (local, per user)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("refstudio")) / "accounts"


def _account_folder(account: str) -> Path:
    return accounts_folder() / hashlib.sha256(account.encode()).hexdigest()[:16]


class MachineSlots:
    """``limit`` slots of ``account`` across every process of this user on this machine.

    Fairness: a process that frees a slot and at once wants another would win every race
    against processes that poll, and a batch of 1,000 would shut every other process out until
    it ends. So a process that finds every slot taken gets in line by holding the ``line.lock``
    file, and nobody else takes a slot while it is held: the next free slot is the waiter's.

    Cost: when many callers of one object wait together (a batch at concurrency 64), one look
    at the files per poll interval serves them all; the others do not look again until then.
    """

    def __init__(self, folder: Path, limit: int) -> None:
        self.folder = folder
        self.limit = max(1, limit)
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}  # slot -> the descriptor whose flock holds it
        self._line: int | None = None  # the descriptor holding line.lock while we wait
        self._waiting = 0  # callers of slot() of this object waiting now
        self._quiet_until = 0.0  # after a look that found nothing: no new look before this
        _live.add(self)

    def try_acquire(self) -> int | None:
        """Take a free slot and return its number, or None when all are taken (or another
        process waits for the next free one)."""
        with self._lock:
            now = time.monotonic()
            if self._waiting > 1 and now < self._quiet_until:
                return None  # another caller of ours just looked and found nothing
            self._quiet_until = now + POLL_S
            if self._line is None:
                self._line = _try_flock(self.folder / "line.lock")
                if self._line is None:
                    return None  # another process is first in line
            for slot in range(self.limit):
                if slot in self._held:
                    continue
                fd = _try_flock(self.folder / f"{slot}.lock")
                if fd is not None:
                    self._held[slot] = fd
                    self._quiet_until = 0.0  # more may be free: the next caller looks too
                    self._leave_line()  # whoever waits next goes first
                    return slot
            return None  # we stay in line: the next free slot is ours

    def release(self, slot: int) -> None:
        with self._lock:
            fd = self._held.pop(slot, None)
            self._quiet_until = 0.0  # one of ours may take it at once (if nobody is in line)
        if fd is not None:
            os.close(fd)  # closing the only descriptor of the open file drops its lock

    def _leave_line(self) -> None:
        if self._line is not None:
            os.close(self._line)
            self._line = None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """Wait for a slot (polling; an attempt is a few cheap system calls), hold it for the
        block."""
        with self._lock:
            self._waiting += 1
        try:
            while True:
                taken = self.try_acquire()
                if taken is not None:
                    break
                await asyncio.sleep(POLL_S)
        finally:
            with self._lock:
                self._waiting -= 1
                if not self._waiting:
                    self._leave_line()  # a cancelled waiter must not keep others out
        try:
            yield taken
        finally:
            self.release(taken)

    def close(self) -> None:
        """Give every slot back."""
        with self._lock:
            held, self._held = list(self._held.values()), {}
            self._leave_line()
        for fd in held:
            with contextlib.suppress(OSError):
                os.close(fd)


def _try_flock(path: Path) -> int | None:
    """A descriptor of ``path`` holding its exclusive lock, or None if another open file holds it.
    """
    assert fcntl is not None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def machine_slots(account: str, limit: int) -> MachineSlots | None:
    """The machine-wide slots of ``account``, or None where they cannot be had (see above)."""
    if fcntl is None:
        return None
    folder = _account_folder(account)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = os.open(folder / "0.lock", os.O_RDWR | os.O_CREAT, 0o600)
        os.close(probe)
    except OSError as exc:
        log.warning("account slots are per process only: cannot use %s (%s)", folder,
                    exc.strerror or exc)
        return None
    return MachineSlots(folder, limit)


_live: weakref.WeakSet[MachineSlots] = weakref.WeakSet()


def _drop_inherited_locks() -> None:
    """In a forked child: close the inherited descriptors (the parent's locks stay the parent's:
    a lock lasts while any descriptor of its open file does)."""
    for slots in list(_live):
        slots._lock = threading.Lock()
        held, slots._held = list(slots._held.values()), {}
        if slots._line is not None:
            held.append(slots._line)
            slots._line = None
        for fd in held:
            with contextlib.suppress(OSError):
                os.close(fd)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)
