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

import contextlib
import hashlib
import logging
import os
import threading
import weakref
from pathlib import Path

from ..storage.fairslots import LINE, FairSlots

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


class MachineSlots(FairSlots):
    """``limit`` slots of ``account`` across every process of this user on this machine.

    Slot ``n`` is the file ``<n>.lock`` in ``folder``; the line (see :class:`FairSlots`) is
    ``line.lock``. A look is a few cheap system calls, made on the event loop.
    """

    poll_s = POLL_S

    def __init__(self, folder: Path, limit: int) -> None:
        super().__init__(limit)
        self.folder = folder
        self._fds: dict[int, int] = {}  # lock (slot or LINE) -> the descriptor whose flock holds it
        _live.add(self)

    def _try_lock(self, n: int) -> bool:
        fd = _try_flock(self.folder / ("line.lock" if n == LINE else f"{n}.lock"))
        if fd is None:
            return False
        self._fds[n] = fd
        return True

    def _unlock(self, n: int) -> None:
        fd = self._fds.pop(n, None)
        if fd is not None:
            os.close(fd)  # closing the only descriptor of the open file drops its lock

    def _unlock_all(self) -> None:
        fds, self._fds = list(self._fds.values()), {}
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _drop_inherited(self) -> None:
        """In a forked child: forget the parent's locks and close this process's copies of
        their descriptors (the locks stay the parent's: a lock lasts while any descriptor of
        its open file does)."""
        self._lock = threading.Lock()  # a parent's thread may have held it at the fork
        self._held, self._in_line = set(), False
        self._unlock_all()


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
    """In a forked child: no slot of the parent's is kept alive by the child."""
    for slots in list(_live):
        slots._drop_inherited()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)
