"""One poll loop for every task in flight, each on its own learned schedule.

The loop keeps a heap of (due time, watch) and wakes for the earliest; each poll runs as its own
task so a slow answer never delays another task's poll. Schedules come from
:class:`~refstudio.engine.polling.PollPlan`, learned per model and size (a
:func:`~refstudio.engine.records.timing_kind`)
from the library's history.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import AuthenticationError, RefstudioError, TransientError
from ..providers.base import TaskStatus
from . import records
from .polling import PollPlan

if TYPE_CHECKING:
    from .core import Engine

__all__ = ["PollLoop", "Watch"]


class PollLoop:
    """One loop polls every task in flight, each on its own learned schedule."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._heap: list[tuple[float, int, Watch]] = []
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._plans: dict[str, PollPlan] = {}
        self._history: dict[str, list[float]] = {}
        #: Tasks being watched, per kind, and kinds whose history grew since their
        #: plan was made (see _learn).
        self._watching: collections.Counter[str] = collections.Counter()
        self._stale: set[str] = set()
        #: Half the recent poll round trip (moving average): how long a poll takes to arrive.
        self._lead = 0.0
        self._inflight_polls: set[asyncio.Task[None]] = set()

    def _plan(self, kind: str) -> PollPlan:
        plan = self._plans.get(kind)
        if plan is None:
            history = self._history.get(kind)
            if history is None:  # read the library's history once; then learn as tasks finish
                history = records.past_durations(
                    self.engine.db, self.engine.provider.name, kind
                )
                self._history[kind] = history
            plan = PollPlan.learn(history, target_lag=self.engine.settings.target_lag,
                                  default_expected=self.engine.settings.default_expected)
            self._plans[kind] = plan
        return plan

    def _learn(self, kind: str, seconds: float) -> None:
        history = self._history.setdefault(kind, [])
        bootstrapping = len(history) < PollPlan.MIN_HISTORY
        history.insert(0, seconds)
        del history[200:]  # the same window the library's history is read with
        # While a batch runs, its fast tasks finish first: learning from them alone would
        # shrink the window under the tasks still running (which then poll as stragglers).
        # So the plan is rebuilt once no task of this kind is in flight, unless there
        # was no usable history at all, where any real durations beat the default guess.
        if bootstrapping and len(history) >= PollPlan.MIN_HISTORY:
            self._plans.pop(kind, None)
        else:
            self._stale.add(kind)

    async def wait(
        self, task_id: str, poll_url: str | None, elapsed: float, kind: str
    ) -> TaskStatus | None:
        """The task's terminal status, or None when the deadline passed first."""
        loop = asyncio.get_running_loop()
        watch = Watch(task_id, poll_url, kind, loop.time() - elapsed, loop.create_future())
        # A task picked up late (resume) is past its first planned poll: ask at once.
        self._schedule_at(watch, watch.started + self._plan(kind).first_poll())
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        self._watching[kind] += 1
        try:
            return await watch.future
        finally:
            self._watching[kind] -= 1
            if self._watching[kind] == 0 and kind in self._stale:
                self._stale.discard(kind)
                self._plans.pop(kind, None)

    def _schedule(self, watch: Watch, delay: float) -> None:
        self._schedule_at(watch, asyncio.get_running_loop().time() + delay)

    def _schedule_at(self, watch: Watch, due: float) -> None:
        """Have the poll of ``watch`` reach the provider at loop time ``due`` (or as soon as
        possible if that has passed): it leaves half a typical round trip earlier."""
        watch.planned = due - watch.started
        heapq.heappush(self._heap, (due - self._lead, next(self._seq), watch))
        self._wakeup.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._heap or self._inflight_polls:
            if not self._heap:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            due = self._heap[0][0]
            now = loop.time()
            if due > now:
                self._wakeup.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), due - now)
                continue
            _, _, watch = heapq.heappop(self._heap)
            task = asyncio.create_task(self._poll(watch))
            self._inflight_polls.add(task)
            task.add_done_callback(self._inflight_polls.discard)

    async def _poll(self, watch: Watch) -> None:
        engine = self.engine
        loop = asyncio.get_running_loop()
        elapsed = loop.time() - watch.started
        if elapsed > engine.settings.poll_deadline:
            watch.future.set_result(None)
            return
        await engine.gate.wait()
        sent = loop.time()
        try:
            status = await engine.provider.fetch_status(watch.task_id, watch.poll_url)
            self._lead += 0.1 * (min(0.1, (loop.time() - sent) / 2) - self._lead)
        except TransientError as exc:
            watch.failures += 1
            delay = engine.settings.poll_backoff.delay(watch.failures, exc.retry_after,
                                                       engine._rng)
            if exc.status_code == 429:
                engine.gate.close_for(delay)
            self._schedule(watch, delay)
            return
        except AuthenticationError as exc:
            # Our key was refused: that says nothing about the (paid) task. Hand it back to
            # _follow, which keeps the generation `submitted` for a resume with a good key.
            if not watch.future.done():
                watch.future.set_exception(exc)
            return
        except RefstudioError as exc:
            if not watch.future.done():
                watch.future.set_result(TaskStatus(watch.task_id, "failed", error=str(exc)))
            return
        watch.failures = 0
        if status.detail and status.detail != watch.detail:
            watch.detail = status.detail  # queued / running 40%: for progress displays
            engine.note_progress(watch.task_id, status)
        if status.state in ("completed", "failed"):
            seconds = status.inference_ms / 1000 if status.inference_ms is not None else elapsed
            if status.state == "completed":
                self._learn(watch.kind, seconds)
            if not watch.future.done():
                watch.future.set_result(status)
            return
        plan = self._plan(watch.kind)
        # From the instant this poll was planned for, not when its answer came, so the next
        # poll keeps to the plan's offsets however long this round trip took; but from when it
        # was sent if that is later (a resumed task, a poll held up by the rate gate), so a
        # late task never rushes through the offsets it has already passed.
        basis = max(watch.planned, sent - watch.started, 0.0)
        next_at = plan.next_poll(basis, watch.straggler_polls)
        if basis >= plan.window_end:
            watch.straggler_polls += 1
        self._schedule_at(watch, watch.started + next_at)

    async def stop(self) -> None:
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for task in list(self._inflight_polls):
            task.cancel()


@dataclass
class Watch:
    task_id: str
    poll_url: str | None
    kind: str
    started: float
    future: asyncio.Future[TaskStatus | None]
    failures: int = 0
    straggler_polls: int = 0
    planned: float = 0.0  # seconds after submit this watch's next poll is meant to arrive
    detail: str = ""  # the provider's last progress note, shown once per change
