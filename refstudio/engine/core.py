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
A process that dies leaves rows in ``pending``, ``submitting`` or ``submitted``;
:meth:`Engine.resume` polls the submitted ones to completion, marks the ``submitting`` ones
``unknown`` (their request may have been accepted) and, only when asked to (``send=True``),
sends the ``pending`` ones, which never left. It never resends anything that may have been
accepted. :meth:`Engine.reconcile` settles ``unknown`` rows from the provider's own records
(see :mod:`.reconcile`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import random
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ..errors import (
    AmbiguousSubmitError,
    AuthenticationError,
    DatabaseUnavailableError,
    GenerationError,
    LimitReachedError,
    NotAcceptedError,
    ParameterError,
    ProtocolError,
    ProviderError,
    RefstudioError,
    StorageError,
    TransientError,
    clause,
)
from ..models import catalog
from ..models.request import BoundImage
from ..models.spec import ModelSpec
from ..providers.base import Provider, TaskStatus
from ..storage.database import Database
from ..storage.fairslots import FairSlots
from ..storage.media import MediaStore, out_of_space
from ..storage.slots import SharedSlots
from ..storage.tables import Generation
from . import account, records
from . import reconcile as reconcile_mod
from .lease import DEFAULT_LEASE_S, Lease, lease_alive, machine_name
from .machine_slots import machine_slots
from .poller import PollLoop
from .retry import Backoff, RateGate
from .uploads import UploadCache
from .writer import GroupWriter

OWNER = f"{os.getpid()}@{machine_name()}"
#: Owner tags (``OWNER#n``) of the engines of this process that are still open. Rows owned by
#: one of them are live work; rows owned by a closed engine of this process may be taken over.
_LIVE_OWNERS: set[str] = set()
_OWNER_SEQ = itertools.count(1)
NOTHING_SENT = "nothing was sent or paid; fix the folder, then run the command again"


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
    #: The project's budget (US dollars) or None: checked and recorded atomically with each
    #: batch (see records.create_pending_many), so concurrent processes cannot overrun it.
    budget: float | None = None
    #: Who asks for this work: recorded on each generation (see ``history --by``).
    author: str | None = None
    #: Seconds this engine's lease lasts without a heartbeat: how long a ``resume`` elsewhere
    #: waits before it takes over this engine's work if this engine dies (see lease.py).
    lease_seconds: float = DEFAULT_LEASE_S


@dataclass(frozen=True)
class Reconciled:
    """What reconcile did with one ``unknown`` generation.

    ``verdict``: ``adopted`` (a task of the provider was matched to it; ``status`` says how
    collecting it ended), ``not_accepted`` (the provider's records prove no task was created;
    it is ``pending`` again) or ``unknown`` (it cannot tell; ``reason`` says why).
    """

    generation_id: int
    verdict: str
    reason: str
    status: str
    error: str = ""
    task_id: str | None = None

    @property
    def outcome(self) -> Outcome:
        return Outcome(self.generation_id, self.status, self.error or self.reason)

    def to_dict(self) -> dict[str, object]:
        return {"id": self.generation_id, "verdict": self.verdict, "status": self.status,
                "reason": self.reason, "task_id": self.task_id, "error": self.error}


@dataclass(frozen=True)
class Event:
    """A progress notice for displays: generation id, its state, and a short detail."""

    generation_id: int
    state: str
    detail: str = ""


@dataclass(frozen=True)
class Outcome:
    """How a generation ended in this call: ``completed``, ``failed``, ``unknown``, ``submitted``
    (still running at the deadline or interrupted: resumable) or ``pending`` (never sent: a
    resume with sending sends it)."""

    generation_id: int
    status: str
    error: str = ""
    #: Set when the task finished but media/ refused its outputs (full disk, read-only folder).
    storage_error: StorageError | None = field(default=None, compare=False)


EventSink = Callable[[Event], None]


class Engine:
    """Drives generations for one provider over one library. Use as an async context manager."""

    def __init__(
        self,
        db: Database,
        store: MediaStore,
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
        #: Set when the account's daily limit is spent (LimitReachedError): nothing more is
        #: sent by this engine; what was not sent stays `pending` for a later resume.
        self._halted: str | None = None
        #: Task id -> generation, for progress notes from the poll loop.
        self._task_gens: dict[str, int] = {}
        #: The account's slots shared with every other process: on a PostgreSQL library, with
        #: every machine using that database (advisory locks); otherwise with every process of
        #: this machine (lock files; None where the OS has no flock: the process gate above is
        #: then all there is).
        self._shared: FairSlots | None = None
        if key is not None:
            self._shared = (SharedSlots(db, key, self.settings.concurrency)
                            if db.dialect == "postgresql"
                            else machine_slots(key, self.settings.concurrency))
        #: Taken when this engine first records or takes work, so a call refused before that
        #: (bad input, a full disk) leaves the database as it was.
        self._lease: Lease | None = None

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        _LIVE_OWNERS.discard(self.owner)
        if self._lease is not None:
            await asyncio.to_thread(self._lease.close)
            self._lease = None
        if self._shared is not None:
            await asyncio.to_thread(self._shared.close)
        if self._account is not None:
            account.leave(*self._account)
            self._account = None
        await self._poller.stop()
        self._writer.close()

    def _hold_lease(self) -> None:
        """Hold this engine's lease (once) as it starts to drive work. Only on a database
        server: a SQLite library is one machine's, where a dead process is known by its pid,
        and where a refused command must leave library.db byte for byte as it was."""
        if self._lease is None and self.db.dialect == "postgresql":
            self._lease = Lease(self.db, self.owner, seconds=self.settings.lease_seconds,
                                author=self.settings.author)

    def emit(self, generation_id: int, state: str, detail: str = "") -> None:
        if self._on_event is not None:
            self._on_event(Event(generation_id, state, detail))

    # -- public entry points -------------------------------------------------------------------

    def record(self, request: records.PreparedRequest, cost: float) -> int:
        """Write-ahead: the generation row, before anything is uploaded or sent."""
        return self.record_many([request], cost)[0]

    def record_many(self, requests: Sequence[records.PreparedRequest],
                    cost: float | Sequence[float]) -> list[int]:
        """Write-ahead for a batch: one transaction for all rows, before any is sent.

        ``cost`` is one estimate for every request, or one per request (models differ in
        price). A request for a model this engine's provider does not serve is a
        ParameterError, with nothing recorded.

        Raises BudgetExceededError (writing nothing) when the batch would break the budget, and
        StorageError (nothing recorded) when the media folder cannot take a file (paying for
        images that cannot be stored helps nobody) or a bound image's media file is missing or
        no longer matches its hash. Work of a provider that is not paid (offline,
        the simulator) is recorded at no cost.
        """
        self.store.check_writable(hint=NOTHING_SENT)
        # A reference image whose file is gone or changed would fail at upload, after the row
        # is written: refuse it now, with nothing recorded.
        try:
            self.uploads.verify(b.sha256 for r in requests for b in r.bindings)
        except StorageError as exc:
            raise StorageError(f"{exc.message}; nothing was recorded or sent",
                               hint=exc.hint) from exc
        for request in requests:
            if not self.provider.serves(request.spec):
                raise ParameterError(
                    f"the {self.provider.name} provider does not serve {request.spec.id}; "
                    "nothing was recorded or sent",
                    hint="choose one of its models (`refstudio models`)")
        costs = [float(cost)] * len(requests) if isinstance(cost, (int, float)) else list(cost)
        if not self.provider.paid:
            costs = [0.0] * len(requests)
        ids = records.create_pending_many(
            self.db, list(requests), provider=self.provider.name, costs=costs,
            owner=self.owner, budget=self.settings.budget, author=self.settings.author,
        )
        # After the rows, not before: a refused batch (budget, a full disk) must leave the
        # database exactly as it was. Meanwhile the rows' owner has no lease, which every
        # resume reads as "alive" (a live pid here, or unknown elsewhere): never taken over.
        self._hold_lease()
        for gen_id, request in zip(ids, requests, strict=True):
            self._prepared[gen_id] = request
            self.emit(gen_id, "pending")
        return ids

    async def run(self, generation_ids: Sequence[int]) -> list[Outcome]:
        """Drive recorded generations (pending, or failed/unknown being retried) to an end."""
        # Ours now: a concurrent resume must leave them alone.
        ids = list(generation_ids)
        self._hold_lease()
        records.claim(self.db, ids, self.owner)
        # A few workers take generations in order, so a batch of 1,000 is 1,000 rows, not 1,000
        # waiting tasks; the slots (concurrency) still bound what is in flight across all runs.
        outcomes: list[Outcome | None] = [None] * len(ids)
        queue = iter(enumerate(ids))

        async def worker() -> None:
            for index, gen_id in queue:
                outcomes[index] = await self._drive(gen_id)

        workers = min(len(ids), max(1, self.settings.concurrency))
        with _resumable_if_the_database_goes():
            await asyncio.gather(*(worker() for _ in range(workers)))
        done = [o for o in outcomes if o is not None]
        _raise_unstored(done)
        return done

    async def resume(self, *, send: bool = False, reconcile: bool = False) -> list[Outcome]:
        """Finish what dead processes left. Never resends anything that may have been accepted.

        Polls ``submitted`` work to completion; marks ``submitting`` work ``unknown`` (its
        request may have left); with ``reconcile``, settles ``unknown`` work from the
        provider's records where it can; with ``send``, sends the ``pending`` work (never
        sent, or proven not accepted), which otherwise stays ``pending`` for a later resume.
        """
        outcomes: list[Outcome] = []
        self._hold_lease()
        stale = [g for g in records.in_states(self.db, ("pending", "submitting", "submitted"))
                 if g.provider == self.provider.name and not owner_alive(g.owner, self.db)]
        waits = []
        to_send: list[tuple[int, str | None]] = []  # (generation, the owner it was left by)
        for gen in stale:
            assert gen.id is not None
            if gen.status == "submitted":
                records.update(self.db, gen.id, owner=self.owner, updated_at=records.now_utc())
                waits.append(self._follow(gen.id, gen.request_id or "", gen.poll_url,
                                          _elapsed_since(gen), _timing_kind(gen)))
            elif gen.status == "submitting":
                message = ("the process stopped while sending this request; it may have been "
                           f"accepted and billed, so it was not resent. `refstudio reconcile` "
                           f"looks for it in the provider's records; `refstudio retry {gen.id}` "
                           "resends it (may cost again)")
                # No body can leave after now: the window closes once the server is done with
                # whatever it received.
                records.commit(self.db, records.unknown(
                    gen.id, message, records.now_utc() + reconcile_mod.LATE_CREATION))
                self.emit(gen.id, "unknown", message)
                outcomes.append(Outcome(gen.id, "unknown", message))
            elif send:
                to_send.append((gen.id, gen.owner))
            else:
                message = ("never sent, so nothing was paid; `refstudio resume` sends it, "
                           "`refstudio resume --no-send` only collects")
                if records.release(self.db, gen.id, gen.owner, message):
                    outcomes.append(Outcome(gen.id, "pending", message))
        with _resumable_if_the_database_goes():
            outcomes.extend(await asyncio.gather(*waits))
        if reconcile and self.provider.supports_history:
            settled = await self.reconcile()
            by_id = {o.generation_id: i for i, o in enumerate(outcomes)}
            for result in settled:
                if result.verdict == "unknown" and result.generation_id not in by_id:
                    continue  # unknown before and still unknown: nothing new to report
                if result.verdict == "not_accepted" and send:
                    to_send.append((result.generation_id, None))
                    outcomes = [o for o in outcomes if o.generation_id != result.generation_id]
                    by_id = {o.generation_id: i for i, o in enumerate(outcomes)}
                    continue
                outcome = result.outcome
                if result.generation_id in by_id:
                    outcomes[by_id[result.generation_id]] = outcome
                else:
                    by_id[result.generation_id] = len(outcomes)
                    outcomes.append(outcome)
        # Taken with compare-and-set: a second resume running now sends none of these again.
        taken = records.take_over(self.db, to_send, self.owner)
        if taken:
            outcomes.extend(await self.run(taken))
        _raise_unstored(outcomes)
        return outcomes

    async def reconcile(self) -> list[Reconciled]:
        """Settle this provider's ``unknown`` generations from its task history.

        Adopts a task that is certainly a generation's own (stores its id, collects its
        outputs: completed, noted "reconciled"); marks ``pending`` again a generation whose
        window the history fully covers with no task in it ("not accepted": sending it is paid
        for the first time); leaves the rest ``unknown``, saying why in its note.
        """
        unknowns = [g for g in records.in_states(self.db, ("unknown",))
                    if g.provider == self.provider.name and not owner_alive(g.owner, self.db)]
        if not unknowns:
            return []
        name = self.provider.name
        if not self.provider.supports_history:
            reason = f"the {name} provider keeps no task history to check against"
            return [Reconciled(_gid(g), "unknown", reason, "unknown") for g in unknowns]
        results: list[Reconciled] = []
        by_model: dict[str, list[Generation]] = {}
        for gen in unknowns:
            if gen.sent_to != self.provider.account:
                # Another server's (or account's) records say nothing about this request.
                where = (f"it was sent to {gen.sent_to}" if gen.sent_to else
                         "refstudio did not record where it was sent (an older version)")
                note = (f"reconcile: still unknown: {where}, but {name} now points at "
                        f"{self.provider.account}, whose records say nothing about it")
                records.update(self.db, _gid(gen), note=note)
                results.append(Reconciled(_gid(gen), "unknown", note, "unknown"))
                continue
            by_model.setdefault(gen.model, []).append(gen)
        for model, gens in sorted(by_model.items()):
            results.extend(await self._reconcile_model(model, gens))
        return results

    async def _reconcile_model(self, model: str, gens: list[Generation]) -> list[Reconciled]:
        name = self.provider.name
        # Windows the history no longer reaches are not asked for at all (a server may refuse
        # dates before its retention, which would spoil the answer for the others).
        reach = records.now_utc() - reconcile_mod.HISTORY_REACH
        expired = [g for g in gens if reconcile_mod.window_of(g).start < reach]
        gens = [g for g in gens if g not in expired]
        results: list[Reconciled] = []
        for gen in expired:
            sent = reconcile_mod.window_of(gen).start.strftime("%Y-%m-%d %H:%M UTC")
            note = (f"reconcile: still unknown: sent {sent}, longer ago than {name}'s history "
                    "reaches (7 days); it can no longer tell")
            records.update(self.db, _gid(gen), note=note)
            results.append(Reconciled(_gid(gen), "unknown", note, "unknown"))
        if not gens:
            return results
        since, until = reconcile_mod.query_range(reconcile_mod.window_of(g) for g in gens)
        attempt = 0
        while True:
            attempt += 1
            await self.gate.wait()
            try:
                history = await self.provider.task_history(model=model, since=since, until=until)
                break
            except TransientError as exc:
                if attempt >= self.settings.download_attempts:
                    return results + await self._still_unknown(
                        gens, f"{name}'s history could not be read ({exc})")
                delay = self.settings.poll_backoff.delay(attempt, exc.retry_after, self._rng)
                if exc.status_code == 429:
                    self.gate.close_for(delay)
                await asyncio.sleep(delay)
            except ProviderError as exc:
                return results + await self._still_unknown(
                    gens, f"{name}'s history could not be read ({exc})")
        claimed = records.claimed_task_ids(self.db, self.provider.name)
        others = records.with_lost_answers(self.db, self.provider.name)
        decisions = reconcile_mod.decide(gens, history, claimed, others, provider=name)
        follows = []
        checked = records.now_utc().strftime("%Y-%m-%d %H:%M UTC")
        for decision in decisions:
            gen_id = decision.generation_id
            if decision.verdict == "adopted" and decision.task is not None:
                task = decision.task
                note = f"reconciled: {decision.reason}"
                if not records.adopt(self.db, gen_id, task.task_id, task.poll_url,
                                     task.created_at, note, self.owner):
                    continue  # retried or claimed meanwhile: nothing to settle
                self.emit(gen_id, "submitted", note)
                elapsed = max(0.0, (records.now_utc() - task.created_at).total_seconds())
                follows.append(self._adopted(gen_id, task.task_id, task.poll_url, elapsed,
                                             _timing_kind_of(gens, gen_id), decision.reason))
            elif decision.verdict == "not_accepted":
                note = (f"not accepted: {decision.reason}; `refstudio resume` sends it "
                        "(paid for the first time)")
                if records.mark_not_accepted(self.db, gen_id, note):
                    self.emit(gen_id, "pending", note)
                    results.append(Reconciled(gen_id, "not_accepted", note, "pending"))
            else:
                note = f"reconcile ({checked}): still unknown: {decision.reason}"
                records.update(self.db, gen_id, note=note)
                results.append(Reconciled(gen_id, "unknown", note, "unknown"))
        results.extend(await asyncio.gather(*follows))
        return results

    async def _adopted(self, gen_id: int, task_id: str, poll_url: str | None, elapsed: float,
                       kind: str, reason: str) -> Reconciled:
        outcome = await self._follow(gen_id, task_id, poll_url, elapsed, kind)
        return Reconciled(gen_id, "adopted", f"reconciled: {reason}", outcome.status,
                          outcome.error, task_id)

    async def _still_unknown(self, gens: list[Generation], reason: str) -> list[Reconciled]:
        note = f"reconcile: still unknown: {reason}"
        for gen in gens:
            records.update(self.db, _gid(gen), note=note)
        return [Reconciled(_gid(g), "unknown", note, "unknown") for g in gens]

    # -- one generation --------------------------------------------------------------------------

    def _slot(self) -> AbstractAsyncContextManager[Any]:
        """A place among the tasks in flight: the account's, shared by the whole process."""
        return self._account[0].slot() if self._account is not None else self._local_slots

    def _shared_slot(self) -> AbstractAsyncContextManager[Any]:
        """A place among the account's tasks in flight in every process: on every machine of a
        PostgreSQL library, else on this machine."""
        return self._shared.slot() if self._shared is not None else contextlib.nullcontext()

    async def _drive(self, gen_id: int) -> Outcome:
        async with self._slot(), self._shared_slot():
            try:
                submitted = await self._submit(gen_id)
            except RefstudioError as exc:
                message = f"{exc} ({exc.hint})" if exc.hint else str(exc)
                return await self._fail(gen_id, "failed", message)
            if isinstance(submitted, Outcome):
                return submitted
            task_id, poll_url, kind, accepted_at = submitted
            # The task's clock started when the provider answered, not when our row was written.
            elapsed = asyncio.get_running_loop().time() - accepted_at
            return await self._follow(gen_id, task_id, poll_url, elapsed, kind)

    async def _submit(self, gen_id: int) -> tuple[str, str | None, str, float] | Outcome:
        prepared = self._prepared.pop(gen_id, None)
        spec: ModelSpec
        if prepared is not None:  # just recorded by this engine: no need to read it back
            prompt = prepared.prompt
            params = prepared.params()
            bindings = [b.to_dict() for b in prepared.bindings]
            spec = prepared.spec
        else:  # a retry of an older row
            gen = await asyncio.to_thread(records.load, self.db, gen_id)
            prompt = gen.prompt
            params = json.loads(gen.params_json)
            bindings = json.loads(gen.bindings_json)
            spec = catalog.get(gen.model_id)
        if self._halted is not None:  # the day's limit is spent: not even the uploads
            return await self._leave_unsent(gen_id, self._halted)
        self.emit(gen_id, "uploading" if bindings else "submitting")
        urls = [await self._upload_with_retry(b["sha256"]) for b in bindings]
        images = [BoundImage(tag=b["name"], url=u) for b, u in zip(bindings, urls, strict=True)]
        body = self.provider.build_body(spec, prompt, images, spec.parse_options(params))
        attempt = 0
        while True:
            attempt += 1
            await self.gate.wait()
            if self._halted is not None:
                return await self._leave_unsent(gen_id, self._halted)
            # Committed before the request leaves (group commit: see writer.py). Database and
            # file work stays off the event loop so it never delays a poll (detection lag).
            await self._writer.write(records.submitting(gen_id, body, self.provider.account))
            self.emit(gen_id, "submitting")
            try:
                task = await self.provider.submit(body, model=spec)
                accepted_at = asyncio.get_running_loop().time()
            except LimitReachedError as exc:
                # The day's generations are spent: a retry in seconds cannot help. Stop the
                # batch here; this one and the rest stay `pending` (nothing was paid).
                self._halted = f"{clause(exc)}" + (f"; {exc.hint}" if exc.hint else "")
                return await self._leave_unsent(gen_id, self._halted)
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
                look = ("`refstudio reconcile` looks for it in the provider's records"
                        if self.provider.supports_history else
                        f"{self.provider.name} keeps no task list, so `refstudio reconcile` "
                        "cannot settle it: check the provider's dashboard")
                message = (f"{clause(exc)}. The request may have been accepted and "
                           f"billed, so it was not resent; {look}, `refstudio retry {gen_id}` "
                           "resends it (may cost again)")
                # An answer (a 5xx, a 200 without id) means the server was done with the
                # request; without one it may still create the task a little later.
                until = records.now_utc()
                if exc.status_code is None:
                    until += reconcile_mod.LATE_CREATION
                await self._writer.write(records.unknown(gen_id, message, until))
                self.emit(gen_id, "unknown", message)
                return Outcome(gen_id, "unknown", message)
            except ProviderError as exc:
                return await self._fail(gen_id, "failed", str(exc))
            await self._writer.write(records.submitted(gen_id, task.task_id, task.poll_url))
            self.emit(gen_id, "submitted", task.task_id)
            return (task.task_id, task.poll_url, records.timing_kind(spec.id, params),
                    accepted_at)

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

    def note_progress(self, task_id: str, status: TaskStatus) -> None:
        """A running task's progress note (queued, running 40%) for the displays."""
        gen_id = self._task_gens.get(task_id)
        if gen_id is not None:
            self.emit(gen_id, "queued" if status.state == "created" else "running",
                      status.detail)

    async def _follow(
        self, gen_id: int, task_id: str, poll_url: str | None, elapsed: float, kind: str
    ) -> Outcome:
        self._task_gens[task_id] = gen_id
        try:
            status = await self._poller.wait(task_id, poll_url, elapsed, kind)
        except AuthenticationError as exc:
            return await self._keep_submitted(
                gen_id, f"{clause(exc)}; the task was accepted and may be paid, so it stays "
                "submitted: fix the key, then `refstudio resume`")
        finally:
            self._task_gens.pop(task_id, None)
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
        except StorageError as exc:
            # Done and paid, but media/ refused the file: keep it `submitted` for resume.
            message = f"{clause(exc)}; `refstudio resume` stores it once the folder can take it"
            with contextlib.suppress(StorageError):  # the database may sit on the same full
                await self._keep_submitted(gen_id, message)  # disk; the row says `submitted`
            return Outcome(gen_id, "submitted", message, storage_error=exc)
        except RefstudioError as exc:
            # The task is paid and done; keep it `submitted` so resume downloads it later.
            return await self._keep_submitted(
                gen_id, f"downloading outputs failed ({exc}); `refstudio resume` tries again")
        await self._writer.write(records.completed(gen_id, stored, status.inference_ms))
        self.emit(gen_id, "completed", f"{len(stored)} output(s)")
        return Outcome(gen_id, "completed")

    async def _leave_unsent(self, gen_id: int, message: str) -> Outcome:
        """Keep a generation `pending` (never sent, nothing paid), released for a resume."""
        await self._writer.write(records.changed(gen_id, status="pending", error=message,
                                                 owner=None))
        self.emit(gen_id, "pending", message)
        return Outcome(gen_id, "pending", message)

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
                # Closed here, not by the garbage collector: a download abandoned half-way (full
                # disk, wrong format) must release its connection now, inside this event loop.
                sizes: list[tuple[int, int]] = []
                async with _closing(self.provider.download(output)) as source:
                    sniffed = _Sniffer(source)
                    first = await sniffed.prime()
                    fmt, ext = _sniff_format(first)
                    # Checked before it is published: a corrupt download leaves nothing in media/.
                    async with _closing(sniffed.chunks()) as chunks:
                        blob = await self.store.put_stream(
                            chunks, extension=ext, check=functools.partial(_measure, sizes)
                        )
                width, height = sizes[0]
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


@contextlib.asynccontextmanager
async def _closing(stream: AsyncIterator[bytes]) -> AsyncIterator[AsyncIterator[bytes]]:
    """``contextlib.aclosing`` for any async iterator (async generators have ``aclose``)."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


def _sniff_format(head: bytes) -> tuple[str, str]:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG", "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG", "jpg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP", "webp"
    raise ProtocolError("an output is not a PNG, JPEG or WebP image")


def _measure(sizes: list[tuple[int, int]], path: os.PathLike[str] | str) -> None:
    sizes.append(_image_size(path))


def _image_size(path: os.PathLike[str] | str) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as img:
            size: tuple[int, int] = img.size
            img.verify()  # checks structure and CRCs without a full decode
        return size
    except Exception as exc:  # any Pillow complaint means the bytes we got are unusable
        raise TransientError(f"a downloaded output is not a valid image ({exc})") from exc


#: What to do when the database server goes away while work is in flight. Every state change
#: is committed before the next step, so the rows say what was sent; an output downloaded but
#: not yet recorded is downloaded again (free) by the resume, never submitted again.
DATABASE_LOST_HINT = ("once the database answers again, run `refstudio resume`: work already "
                      "sent is collected (a paid image is safe at the provider), never sent again")


@contextlib.contextmanager
def _resumable_if_the_database_goes() -> Iterator[None]:
    """Around driving work: the database's "cannot reach" error, with the way back (its own
    hint says nothing was changed, which is no longer so once a request has left)."""
    try:
        yield
    except DatabaseUnavailableError as exc:
        raise DatabaseUnavailableError(exc.message, hint=DATABASE_LOST_HINT) from exc


def _raise_unstored(outcomes: Sequence[Outcome]) -> None:
    """End a call with one StorageError when finished outputs could not be stored.

    Raised only once every generation of the call has reached its end (the others completed
    or were recorded), so nothing is left half-way; the unstored ones stay ``submitted``.
    """
    unstored = sorted((o for o in outcomes if o.storage_error is not None),
                      key=lambda o: o.generation_id)
    if not unstored:
        return
    ids = [o.generation_id for o in unstored]
    which, it = ((f"the finished image of generation #{ids[0]} was", "It is") if len(ids) == 1
                 else ("the finished images of generations " + ", ".join(f"#{i}" for i in ids)
                       + " were", "They are"))
    first = unstored[0].storage_error
    assert first is not None
    when = "there is space" if out_of_space(first) else "the folder is writable again"
    raise StorageError(
        f"{clause(first)}, so {which} not stored. {it} safe at the provider: "
        f"run `refstudio resume` when {when} (nothing is sent or paid again)"
    )


def owner_alive(owner: str | None, db: Database | None = None) -> bool:
    """Whether the engine that was driving a generation may still be driving it.

    This process's engines: while open. Another process on this machine whose pid is gone:
    dead at once. Otherwise its lease in ``db`` decides (alive until it expires); an owner
    without a lease (written before leases, or no ``db`` given) on another machine is taken
    for alive, as before.
    """
    if not owner:
        return False
    process, _, _ = owner.partition("#")
    pid_text, _, host = process.partition("@")
    if process == OWNER:
        # This process: live only while that engine is open (another Studio call running now);
        # a closed one's leftovers (or a legacy tag without "#n") are safe to take over.
        return owner in _LIVE_OWNERS
    if host == machine_name() and not _pid_running(pid_text):
        return False
    if db is not None:
        alive = lease_alive(db, owner)
        if alive is not None:
            return alive
    return True  # a live pid here, or another machine's work without a lease: leave it


def _pid_running(pid_text: str) -> bool:
    try:
        os.kill(int(pid_text), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def _gid(gen: Generation) -> int:
    assert gen.id is not None
    return gen.id


def _timing_kind_of(gens: list[Generation], gen_id: int) -> str:
    return next(_timing_kind(g) for g in gens if g.id == gen_id)


def _timing_kind(gen: Generation) -> str:
    """The generation's :func:`~refstudio.engine.records.timing_kind` (model and size)."""
    return records.timing_kind(gen.model_id, json.loads(gen.params_json))


def _elapsed_since(gen: Generation) -> float:
    if gen.submitted_at is None:
        return 0.0
    return max(0.0, (records.now_utc() - gen.submitted_at).total_seconds())


__all__ = ["Engine", "EngineSettings", "Event", "Outcome", "Reconciled"]
