"""Work the web studio starts runs in the server process, not in the browser's request.

A generation or workflow run is an asyncio task on the server's event loop: closing the browser
tab changes nothing (the engine has already written it down; ``refstudio history`` sees it at
once), and stopping the server leaves it exactly as a Ctrl-C leaves ``refstudio gen``:
``refstudio resume`` collects it.

:class:`Progress` keeps the engine's latest word on each generation (``uploading``,
``downloading`` … states the database does not hold) and wakes the event streams that watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app.studio import AsyncStudio
    from ..engine import Event

log = logging.getLogger("refstudio.web")


class Progress:
    """The latest engine event per generation, and a wake-up for whoever is watching."""

    def __init__(self) -> None:
        self.latest: dict[int, tuple[str, str]] = {}
        self.version = 0
        self._waiters: set[asyncio.Future[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def on_event(self, event: Event) -> None:
        """The engine's ``on_event``: remember, then wake the streams."""
        self.latest[event.generation_id] = (event.state, event.detail)
        self.changed()

    def changed(self) -> None:
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self.version += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait(self, since: int, timeout: float) -> int:
        """Return once something changed after ``since`` (or ``timeout`` seconds passed)."""
        if self.version != since:
            return self.version
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        self._waiters.discard(waiter)
        return self.version


@dataclass
class WorkflowJob:
    """One workflow run started from the browser: its steps' latest states and its report."""

    id: int
    workflow: str
    provider: str | None = None
    steps: dict[str, tuple[str, str]] = field(default_factory=dict)
    status: str = "running"
    error: str = ""
    report: dict[str, Any] | None = None
    generation_ids: list[int] = field(default_factory=list)
    #: Step id -> its generations, once the run reports (a manual pick offers these).
    step_generations: dict[str, list[int]] = field(default_factory=dict)


class Jobs:
    """Starts generations and workflow runs as server tasks and keeps them to the end."""

    def __init__(self, studio: AsyncStudio, progress: Progress) -> None:
        self.studio = studio
        self.progress = progress
        self.tasks: set[asyncio.Task[Any]] = set()
        self.workflows: dict[int, WorkflowJob] = {}
        self._ids = itertools.count(1)
        self.errors: list[str] = []

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            message = getattr(exc, "message", None) or repr(exc)
            self.errors = [*self.errors[-9:], message]  # the last ten, for the page
            log.warning("background work ended with an error: %s", message)
        self.progress.changed()

    async def start_generate(self, prompt: str, **options: Any) -> list[int]:
        """Start ``AsyncStudio.generate`` and return the new generation ids as soon as they
        are written down (before anything is sent). An error before that (a bad prompt, the
        budget) is raised here, with nothing recorded."""
        recorded: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()

        def on_recorded(ids: list[int]) -> None:
            if not recorded.done():
                recorded.set_result(ids)

        task = asyncio.ensure_future(self.studio.generate(
            prompt, on_event=self.progress.on_event, on_recorded=on_recorded, **options))
        self.tasks.add(task)  # stopped with the server even before anything is recorded
        waiting: set[asyncio.Future[Any]] = {task, recorded}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if recorded.done():
            # From here on it is background work: its end (or error) is noted by _finished.
            task.add_done_callback(self._finished)
            return recorded.result()
        # Refused before anything was recorded: the caller shows the error, once.
        self.tasks.discard(task)
        recorded.cancel()
        task.result()  # raises what stopped it
        return []

    def start_workflow(self, name: str, *, variables: Mapping[str, Any] | None = None,
                       provider: str | None = None) -> WorkflowJob:
        """Start ``AsyncStudio.run_workflow``; its steps report to the returned job."""
        job = WorkflowJob(next(self._ids), name, provider)
        self.workflows[job.id] = job

        def on_step(step_id: str, state: str, detail: str) -> None:
            job.steps[step_id] = (state, detail)
            self.progress.changed()

        def on_event(event: Event) -> None:
            if event.generation_id not in job.generation_ids:
                job.generation_ids.append(event.generation_id)
            self.progress.on_event(event)

        async def run() -> None:
            try:
                report = await self.studio.run_workflow(
                    name, provider=provider, variables=variables, on_step=on_step,
                    on_event=on_event)
            except Exception as exc:
                job.status, job.error = "failed", getattr(exc, "message", None) or repr(exc)
                raise
            job.report = report.to_dict()
            job.status = report.status
            for step in report.steps:
                job.steps[step.id] = (step.status, step.message)
                job.step_generations[step.id] = list(step.generation_ids)

        self._keep(asyncio.ensure_future(run()))
        return job

    async def aclose(self) -> None:
        """Stop what still runs (as Ctrl-C stops the CLI: submitted work stays resumable)."""
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

