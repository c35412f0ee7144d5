"""Group commit for the engine's state changes.

Fifty generations starting at once each need a committed ``submitting`` row before their
request may leave. Committed one by one from a thread pool, those fifty transactions queue on
SQLite's write lock, whose busy handler sleeps in steps of milliseconds; the last request left
about 0.3 s after the first (measured with ``benchmarks/bench_engine.py``), and that delay is
wall time. Here one writer thread commits whatever changes are waiting as one transaction, and
every caller resumes once the transaction holding its change is committed: the write-ahead
contract is unchanged, the cost is one commit per burst instead of one per generation.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from ..storage.database import Database
from . import records

__all__ = ["GroupWriter"]


class GroupWriter:
    """Commits :data:`records.Change` values in batches on one thread, off the event loop."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: list[tuple[records.Change, asyncio.Future[None]]] = []
        self._draining: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="refstudio-writer")

    async def write(self, change: records.Change) -> None:
        """Return once ``change`` is committed; raise what applying it raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((change, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            # Everything that arrived while the previous batch was committing goes in this one.
            batch, self._pending = self._pending, []
            try:
                errors = await loop.run_in_executor(
                    self._thread, records.apply, self.db, [change for change, _ in batch]
                )
            except BaseException as exc:  # cancelled mid-commit: waiters must not hang
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, Exception)
                                             else asyncio.CancelledError())
                raise
            for (_, future), error in zip(batch, errors, strict=True):
                if future.done():  # its caller was cancelled; the change stands regardless
                    continue
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    def close(self) -> None:
        """Let the writer thread end once queued work is done (does not wait for it)."""
        self._thread.shutdown(wait=False)
