"""The generation engine: resolved requests in, stored images out, never paying twice.

For each request::

    create_pending ─▶ upload refs (cached) ─▶ submitting ─▶ submit ─┬─▶ submitted (task id)
                                                                    ├─ not accepted: resend
                                                                    └─ ambiguous: ``unknown``
    poll ─▶ completed ─▶ download every output into media/ ─▶ completed
         └▶ failed ─▶ failed (with the provider's reason)

Each arrow into a state is a committed row (see :mod:`.records`), committed in groups by
:class:`.writer.GroupWriter` when many generations change state at once.

All tasks in flight share one poll loop (:class:`.poller.PollLoop`). Tasks in flight and the
:class:`RateGate` are per provider account and shared by every engine of the process
(:mod:`.account`): concurrent calls together never exceed what the account runs at once.
A process that dies leaves rows in ``submitting`` or ``submitted``; :meth:`Engine.resume`
(run before new work) polls the submitted ones to completion and marks the others ``unknown``;
it never resubmits.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ..db import Database
from ..errors import (
    AmbiguousSubmitError,
    AuthenticationError,
    GenerationError,
    NotAcceptedError,
    ProtocolError,
    ProviderError,
    RefstudioError,
    TransientError,
)
from ..models import Generation
from ..providers.base import BoundImage, GenParams, Provider, TaskStatus
from ..store import LocalMediaStore
from . import account, records
from .poller import PollLoop
from .retry import Backoff, RateGate
from .uploads import UploadCache
from .writer import GroupWriter

OWNER = f"{os.getpid()}@{socket.gethostname()}"
#: Owner tags (``OWNER#n``) of the engines of this process that are still open. Rows owned by
#: one of them are live work; rows owned by a closed engine of this process may be taken over.
_LIVE_OWNERS: set[str] = set()
_OWNER_SEQ = itertools.count(1)


@dataclass(frozen=True)
class EngineSettings:
    """Knobs of the engine; defaults suit WaveSpeed's default account level."""

    concurrency: int = 2  # generations in flight at once (the default account runs 2 at a time)
    poll_deadline: float = 900.0  # seconds after submit we wait; the task stays resumable
    #: Mean seconds between a task finishing and us noticing; None: 2 % of the typical task
    #: time, at least 0.18 s (see PollPlan.automatic_lag).
    target_lag: float | None = None
    default_expected: float = 20.0  # assumed task time before this library has any history
    submit_backoff: Backoff = field(default_factory=Backoff)
    poll_backoff: Backoff = field(default_factory=lambda: Backoff(base=0.5, cap=10.0))
    download_attempts: int = 6
    upload_ttl: timedelta = timedelta(hours=12)


@dataclass(frozen=True)
class Event:
    """A progress notice for displays: generation id, its state, and a short detail."""

    generation_id: int
    state: str
    detail: str = ""


@dataclass(frozen=True)
class Outcome:
    """How a generation ended in this call: ``completed``, ``failed``, ``unknown`` or ``submitted``
    (still running at the deadline or interrupted: resumable)."""

    generation_id: int
    status: str
    error: str = ""


EventSink = Callable[[Event], None]


class Engine:
    """Drives generations for one provider over one library. Use as an async context manager."""

    def __init__(
        self,
        db: Database,
        store: LocalMediaStore,
        provider: Provider,
        *,
        settings: EngineSettings | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.provider = provider
        self.settings = settings or EngineSettings()
        key = provider.account_key
        self._account: tuple[account.AccountGate, int] | None = None
        if key is not None:
            self._account = account.join(key, self.settings.concurrency)
            self.gate = self._account[0].rate
        else:
            self.gate = RateGate()
        self.uploads = UploadCache(db, store, provider, ttl=self.settings.upload_ttl)
        self._on_event = on_event
        self._local_slots = asyncio.Semaphore(max(1, self.settings.concurrency))
        self._poller = PollLoop(self)
        self._writer = GroupWriter(db)
        self._rng = random.Random()
        #: Requests recorded by this engine, kept so driving them needs no read-back.
        self._prepared: dict[int, records.PreparedRequest] = {}
        self.owner = f"{OWNER}#{next(_OWNER_SEQ)}"
        _LIVE_OWNERS.add(self.owner)

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        _LIVE_OWNERS.discard(self.owner)
        if self._account is not None:
            account.leave(*self._account)
            self._account = None
        await self._poller.stop()
        self._writer.close()

    def emit(self, generation_id: int, state: str, detail: str = "") -> None:
        if self._on_event is not None:
            self._on_event(Event(generation_id, state, detail))

    # -- public entry points -------------------------------------------------------------------

    def record(self, request: records.PreparedRequest, cost: float) -> int:
        """Write-ahead: the generation row, before anything is uploaded or sent."""
        return self.record_many([request], cost)[0]

    def record_many(self, requests: Sequence[records.PreparedRequest], cost: float) -> list[int]:
        """Write-ahead for a batch: one transaction for all rows, before any is sent."""
        ids = records.create_pending_many(
            self.db, list(requests), provider=self.provider.name, model=self.provider.model,
            cost=cost, owner=self.owner,
        )
        for gen_id, request in zip(ids, requests, strict=True):
            self._prepared[gen_id] = request
            self.emit(gen_id, "pending")
        return ids

    async def run(self, generation_ids: Sequence[int]) -> list[Outcome]:
        """Drive recorded generations (pending, or failed/unknown being retried) to an end."""
        # Ours now: a concurrent resume must leave them alone.
        records.claim(self.db, list(generation_ids), self.owner)
        return list(await asyncio.gather(*(self._drive(g) for g in generation_ids)))

    async def resume(self) -> list[Outcome]:
        """Finish what dead processes left: poll submitted work; never resubmit anything."""
        outcomes: list[Outcome] = []
        stale = [g for g in records.in_states(self.db, ("pending", "submitting", "submitted"))
                 if not _owner_alive(g.owner)]
        waits = []
        for gen in stale:
            assert gen.id is not None
            if gen.status == "submitted":
                records.update(self.db, gen.id, owner=self.owner, updated_at=records.now_utc())
                waits.append(self._follow(gen.id, gen.request_id or "", gen.poll_url,
                                          _elapsed_since(gen), _resolution(gen)))
            elif gen.status == "submitting":
                message = ("the process stopped while sending this request; it may have been "
                           f"accepted and billed. `refstudio retry {gen.id}` resends it "
                           "(it may cost again)")
                records.update(self.db, gen.id, status="unknown", error=message, owner=None)
                self.emit(gen.id, "unknown", message)
                outcomes.append(Outcome(gen.id, "unknown", message))
            else:
                message = "interrupted before it was sent; nothing was paid"
                records.update(self.db, gen.id, status="failed", error=message, owner=None)
                outcomes.append(Outcome(gen.id, "failed", message))
        outcomes.extend(await asyncio.gather(*waits))
        return outcomes

    # -- one generation --------------------------------------------------------------------------

    def _slot(self) -> AbstractAsyncContextManager[Any]:
        """A place among the tasks in flight: the account's, shared by the whole process."""
        return self._account[0].slot() if self._account is not None else self._local_slots

    async def _drive(self, gen_id: int) -> Outcome:
        async with self._slot():
            try:
                submitted = await self._submit(gen_id)
            except RefstudioError as exc:
                return await self._fail(gen_id, "failed", str(exc))
            if isinstance(submitted, Outcome):
                return submitted
            task_id, poll_url, resolution, accepted_at = submitted
            # The task's clock started when the provider answered, not when our row was written.
            elapsed = asyncio.get_running_loop().time() - accepted_at
            return await self._follow(gen_id, task_id, poll_url, elapsed, resolution)

    async def _submit(self, gen_id: int) -> tuple[str, str | None, str, float] | Outcome:
        prepared = self._prepared.pop(gen_id, None)
        if prepared is not None:  # just recorded by this engine: no need to read it back
            prompt = prepared.prompt
            params = prepared.params()
            bindings = [b.to_dict() for b in prepared.bindings]
        else:  # a retry of an older row
            gen = await asyncio.to_thread(records.load, self.db, gen_id)
            prompt = gen.prompt
            params = json.loads(gen.params_json)
            bindings = json.loads(gen.bindings_json)
        self.emit(gen_id, "uploading" if bindings else "submitting")
        urls = [await self._upload_with_retry(b["sha256"]) for b in bindings]
        images = [BoundImage(tag=b["name"], url=u) for b, u in zip(bindings, urls, strict=True)]
        body = self.provider.build_body(prompt, images, GenParams(**params))
        attempt = 0
        while True:
            attempt += 1
            await self.gate.wait()
            # Committed before the request leaves (group commit: see writer.py). Database and
            # file work stays off the event loop so it never delays a poll (detection lag).
            await self._writer.write(records.submitting(gen_id, body))
            self.emit(gen_id, "submitting")
            try:
                task = await self.provider.submit(body)
                accepted_at = asyncio.get_running_loop().time()
            except NotAcceptedError as exc:
                # Certainly not taken: safe to send again after a pause everyone respects.
                await self._writer.write(records.changed(gen_id, status="pending",
                                                         error=str(exc)))
                if attempt >= self.settings.submit_backoff.max_attempts:
                    return await self._fail(gen_id, "failed",
                                      f"not accepted after {attempt} attempts: {exc}")
                delay = self.settings.submit_backoff.delay(attempt, exc.retry_after, self._rng)
                if exc.status_code == 429:
                    self.gate.close_for(delay)
                self.emit(gen_id, "waiting", f"not accepted ({exc}); retrying in {delay:.1f}s")
                await asyncio.sleep(delay)
                continue
            except (AmbiguousSubmitError, ProtocolError) as exc:
                message = (f"{exc}. The request may have been accepted and billed, so it was "
                           f"not resent; `refstudio retry {gen_id}` resends it (may cost again)")
                return await self._fail(gen_id, "unknown", message)
            except ProviderError as exc:
                return await self._fail(gen_id, "failed", str(exc))
            await self._writer.write(records.submitted(gen_id, task.task_id, task.poll_url))
            self.emit(gen_id, "submitted", task.task_id)
            return task.task_id, task.poll_url, str(params.get("resolution")), accepted_at

    async def _upload_with_retry(self, sha256: str) -> str:
        attempt = 0
        while True:
            attempt += 1
            await self.gate.wait()
            try:
                return await self.uploads.url_for(sha256)
            except TransientError as exc:
                if attempt >= self.settings.download_attempts:
                    raise
                delay = self.settings.poll_backoff.delay(attempt, exc.retry_after, self._rng)
                if exc.status_code == 429:
                    self.gate.close_for(delay)
                await asyncio.sleep(delay)

    async def _follow(
        self, gen_id: int, task_id: str, poll_url: str | None, elapsed: float, resolution: str
    ) -> Outcome:
        try:
            status = await self._poller.wait(task_id, poll_url, elapsed, resolution)
        except AuthenticationError as exc:
            return await self._keep_submitted(
                gen_id, f"{exc}; the task was accepted and may be paid, so it stays submitted: "
                "fix the key, then `refstudio resume`")
        if status is None:
            return await self._keep_submitted(
                gen_id, f"still running after {self.settings.poll_deadline:.0f}s; "
                "`refstudio resume` picks it up later")
        if status.state == "failed":
            reason = status.error or "the provider reported failure"
            return await self._fail(gen_id, "failed", reason)
        self.emit(gen_id, "downloading")
        try:
            stored = await self._download_all(status)
        except RefstudioError as exc:
            # The task is paid and done; keep it `submitted` so resume downloads it later.
            return await self._keep_submitted(
                gen_id, f"downloading outputs failed ({exc}); `refstudio resume` tries again")
        await self._writer.write(records.completed(gen_id, stored, status.inference_ms))
        self.emit(gen_id, "completed", f"{len(stored)} output(s)")
        return Outcome(gen_id, "completed")

    async def _keep_submitted(self, gen_id: int, message: str) -> Outcome:
        """Leave a paid task `submitted`, released to whoever resumes it, saying why."""
        await self._writer.write(records.changed(gen_id, error=message, owner=None))
        self.emit(gen_id, "submitted", message)
        return Outcome(gen_id, "submitted", message)

    async def _fail(self, gen_id: int, status: str, message: str) -> Outcome:
        await self._writer.write(records.changed(gen_id, status=status, error=message,
                                                 owner=None, updated_at=records.now_utc()))
        self.emit(gen_id, status, message)
        return Outcome(gen_id, status, message)

    async def _download_all(
        self, status: TaskStatus
    ) -> list[tuple[str, str, str, int, int, int, bool, str]]:
        if not status.outputs:
            raise GenerationError("the provider reported no outputs")
        stored = []
        for index, output in enumerate(status.outputs):
            nsfw = status.nsfw[index] if index < len(status.nsfw) else False
            source = "base64" if status.outputs_are_base64 else output
            stored.append((*await self._download_one(output), nsfw, source))
        return stored

    async def _download_one(self, output: str) -> tuple[str, str, str, int, int, int]:
        attempt = 0
        while True:
            attempt += 1
            try:
                sniffed = _Sniffer(self.provider.download(output))
                first = await sniffed.prime()
                fmt, ext = _sniff_format(first)
                blob = await self.store.put_stream(sniffed.chunks(), extension=ext)
                width, height = await asyncio.to_thread(
                    _image_size, self.store.local_path(blob.key)
                )
                return blob.sha256, blob.key, fmt, width, height, blob.size
            except TransientError as exc:
                if attempt >= self.settings.download_attempts:
                    raise
                await asyncio.sleep(self.settings.poll_backoff.delay(attempt, exc.retry_after,
                                                                     self._rng))


class _Sniffer:
    """Reads the first chunk of a download to learn the format, then replays the stream."""

    def __init__(self, source: AsyncIterator[bytes]) -> None:
        self._source = source
        self._first = b""

    async def prime(self) -> bytes:
        async for chunk in self._source:
            if chunk:
                self._first = chunk
                break
        if not self._first:
            raise TransientError("the output download was empty")
        return self._first

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self._first
        async for chunk in self._source:
            yield chunk


def _sniff_format(head: bytes) -> tuple[str, str]:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG", "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG", "jpg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP", "webp"
    raise ProtocolError("an output is not a PNG, JPEG or WebP image")


def _image_size(path: os.PathLike[str] | str) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as img:
            size = img.size
            img.verify()  # checks structure and CRCs without a full decode
        return size
    except Exception as exc:  # any Pillow complaint means the bytes we got are unusable
        raise TransientError(f"a downloaded output is not a valid image ({exc})") from exc


def _owner_alive(owner: str | None) -> bool:
    """Whether the process that was driving a generation still runs (on this host)."""
    if not owner:
        return False
    process, _, _ = owner.partition("#")
    pid_text, _, host = process.partition("@")
    if process == OWNER:
        # This process: live only while that engine is open (another Studio call running now);
        # a closed one's leftovers (or a legacy tag without "#n") are safe to take over.
        return owner in _LIVE_OWNERS
    if host != socket.gethostname():
        return True  # another machine's work: leave it alone
    try:
        os.kill(int(pid_text), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def _resolution(gen: Generation) -> str:
    return str(json.loads(gen.params_json).get("resolution"))


def _elapsed_since(gen: Generation) -> float:
    if gen.submitted_at is None:
        return 0.0
    return max(0.0, (records.now_utc() - gen.submitted_at).total_seconds())


__all__ = ["Engine", "EngineSettings", "Event", "Outcome"]
