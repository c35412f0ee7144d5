"""Running a plan: each step starts as soon as what it waits for is done.

A run is recorded as a :class:`~refstudio.storage.tables.Run`; its generations carry the run and
step ids. Before anything new is sent, work a stopped run left submitted is collected (never
resent).
A step whose resolved request — prompt, parameters, reference image bytes, seed — matches a
completed generation is not paid for again: its outputs are reused, and the step says so. A
``pick = "manual"`` step stops its branch until the user promotes one of its outputs; running
again continues from there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from ..errors import RefstudioError
from ..storage.database import read_session, write_session
from ..storage.tables import Generation, Output, ReferenceImage, Run, utcnow
from .plan import Plan, PlannedStep

if TYPE_CHECKING:
    from ..engine import Engine, Event, PreparedRequest
    from ..library.references import Library
    from ..library.results import OutputInfo
    from ..storage.database import Database
    from .host import WorkflowHost

StepListener = Callable[[str, str, str], None]  # step id, state, detail


@dataclass
class StepReport:
    id: str
    status: str  # completed | reused | paused | failed | blocked
    generation_ids: list[int] = field(default_factory=list)
    submitted: int = 0  # new paid requests this run
    promoted: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RunReport:
    run_id: int | None
    status: str  # completed | paused | failed | planned (dry run)
    steps: list[StepReport]
    estimated_cost: float = 0.0
    #: The plan's warnings (:attr:`refstudio.workflow.plan.Plan.warnings`).
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "estimated_cost": self.estimated_cost,
            "steps": [s.to_dict() for s in self.steps],
            "warnings": list(self.warnings),
        }


class WorkflowRunner:
    """Runs one plan against a host (the project's generations) with one shared engine (one
    poll loop, one rate gate)."""

    def __init__(
        self,
        host: WorkflowHost,
        plan: Plan,
        *,
        provider: str,
        concurrency: int,
        on_step: StepListener | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.host = host
        self.db: Database = host.library.db
        self.plan = plan
        self.provider = provider
        self.concurrency = max(1, concurrency)
        self.slots = asyncio.Semaphore(self.concurrency)
        self.on_step = on_step or (lambda *_: None)
        self.on_event = on_event
        self.reports: dict[str, StepReport] = {}
        self.done: dict[str, asyncio.Event] = {}

    async def run(self) -> RunReport:
        run_id = self._start_run()
        # Steps may run several at once, but generations in flight never exceed what the
        # account runs at once (the project's `concurrency`): the engine's account gate holds
        # the rest until a slot frees.
        async with self.host.engine(self.provider, self.on_event) as engine:
            await engine.resume()
            self.done = {s.id: asyncio.Event() for s in self.plan.steps}
            await asyncio.gather(*(self._step(engine, s, run_id) for s in self.plan.steps))
        reports = [self.reports[s.id] for s in self.plan.steps]
        if any(r.status == "failed" for r in reports):
            status = "failed"
        elif any(r.status in ("paused", "blocked") for r in reports):
            status = "paused"
        else:
            status = "completed"
        with write_session(self.db) as session:
            row = session.get(Run, run_id)
            assert row is not None
            row.status, row.finished_at = status, utcnow()
            session.add(row)
        return RunReport(run_id, status, reports)

    def _start_run(self) -> int:
        with write_session(self.db) as session:
            row = Run(
                workflow=str(self.plan.workflow.path),
                workflow_hash=self.plan.workflow.text_hash,
                vars_json=json.dumps(self.plan.variables, default=str),
            )
            session.add(row)
            session.flush()
            assert row.id is not None
            return row.id

    async def _step(self, engine: Engine, step: PlannedStep, run_id: int) -> None:
        try:
            for dep in step.depends_on:
                await self.done[dep].wait()
            blocked = [d for d in step.depends_on
                       if self.reports[d].status not in ("completed", "reused")]
            if blocked:
                self.reports[step.id] = StepReport(
                    step.id, "blocked", message=f"waits for step(s) {', '.join(sorted(blocked))}"
                )
                self.on_step(step.id, "blocked", self.reports[step.id].message)
                return
            async with self.slots:
                self.reports[step.id] = await self._execute(engine, step, run_id)
        except RefstudioError as exc:
            self.reports[step.id] = StepReport(step.id, "failed", message=exc.message)
            self.on_step(step.id, "failed", exc.message)
        finally:
            self.done[step.id].set()

    async def _execute(self, engine: Engine, step: PlannedStep, run_id: int) -> StepReport:
        spec = step.spec
        values = {**self.plan.variables, **spec.vars}
        # One generation per model and variant, in the order the step names its models.
        batch: list[tuple[PreparedRequest, float]] = []
        for model_id in _models_of(step):
            rendered, prepared = self.host.prepare_requests(
                spec.prompt, template=spec.template, variables=values, n=spec.variants,
                aspect_ratio=step.aspect_ratio, resolution=step.resolution,
                seed=_seed_for(model_id, step.seeds[0]), provider=self.provider,
                run_id=run_id, step_id=spec.id, model=model_id, options=spec.options or None,
            )
            batch += [(r, rendered.cost_estimate) for r in self._pin(step, prepared)]
        ids: list[int] = []
        new_ids: list[int] = []
        for request, cost in batch:
            previous = _latest_with_hash(
                self.db, request.request_hash(self.provider, request.spec.model))
            prev_id = previous.id if previous is not None else None
            if previous is not None and prev_id is not None and previous.status == "completed":
                ids.append(prev_id)
                continue
            if previous is not None and prev_id is not None and previous.status == "unknown":
                message = (f"generation #{prev_id} for this request has an unknown fate; "
                           "`refstudio reconcile` checks the provider's records, "
                           f"`refstudio retry {prev_id}` resends it (may cost again); "
                           "then run the workflow again")
                self.on_step(spec.id, "paused", message)
                return StepReport(spec.id, "paused", [prev_id], message=message)
            if previous is not None and prev_id is not None and previous.status == "pending":
                # Recorded by an earlier run that stopped before sending it: send that one
                # rather than record the same request twice (if no other process took it).
                from ..engine.records import take_over

                if not take_over(self.db, [(prev_id, previous.owner)], engine.owner):
                    message = (f"generation #{prev_id} for this request is being sent by "
                               "another process; run the workflow again when it is done")
                    self.on_step(spec.id, "paused", message)
                    return StepReport(spec.id, "paused", [prev_id], message=message)
                ids.append(prev_id)
                new_ids.append(prev_id)
                continue
            gen_id = engine.record(request, cost)
            ids.append(gen_id)
            new_ids.append(gen_id)
        if new_ids:
            self.on_step(spec.id, "running", f"{len(new_ids)} new request(s)")
            outcomes = await engine.run(new_ids)
            failed = [o for o in outcomes if o.status != "completed"]
            if failed:
                message = "; ".join(f"#{o.generation_id} {o.status}: {o.error}" for o in failed)
                self.on_step(spec.id, "failed", message)
                return StepReport(spec.id, "failed", ids, len(new_ids), message=message)
        status = "completed" if new_ids else "reused"
        detail = ("" if new_ids else
                  "unchanged since a completed run: not paid again (generations "
                  + ", ".join(f"#{i}" for i in ids) + ")")
        report = StepReport(spec.id, status, ids, len(new_ids), message=detail)
        if spec.promote is not None:
            self._promote(step, report)
        self.on_step(spec.id, report.status, report.message)
        return report

    def _pin(
        self, step: PlannedStep, requests: list[PreparedRequest]
    ) -> list[PreparedRequest]:
        """Bind what a step bound last time for names this workflow itself promotes later.

        A step above the one promoting ``@mara`` is written against @mara as it was before
        that promotion. Once a run has promoted, the library's @mara is the new image, so a
        rerun would bind it, change the request and pay again (and promote again, forever).
        When @mara's primary came from this workflow's own promoting step, the step binds the
        image its last completed generation bound, if @mara still holds it.
        """
        promoters = {s.promote.name.lstrip("@").lower(): s.id
                     for s in self.plan.workflow.steps if s.promote is not None}
        names = [n.lower() for n in step.mentions
                 if n.lower() in promoters and n.lower() not in step.waits_for]
        if not names or not requests:
            return requests
        previous = _last_completed_of_step(self.db, str(self.plan.workflow.path), step.id)
        if previous is None:
            return requests
        promoting_steps = {s.id for s in self.plan.workflow.steps
                           if s.promote is not None}
        old = {b["name"].lower(): b for b in json.loads(previous.bindings_json)}
        swap: dict[str, tuple[str, int]] = {}
        for key in names:
            ref = self.host.library.get(key)
            primary = ref.primary
            bound = old.get(key)
            if primary is None or bound is None or bound.get("image_id") == primary.id:
                continue
            if not _made_by_steps(self.db, primary.source_output_id, promoting_steps):
                continue  # changed by the user, not by this workflow: bind what is there now
            kept = next((i for i in ref.images if i.id == bound.get("image_id")
                         and i.sha256 == bound.get("sha256")), None)
            if kept is not None:
                swap[key] = (kept.sha256, kept.id)
        if not swap:
            return requests
        out = []
        for request in requests:
            bindings = tuple(
                replace(b, sha256=swap[b.name.lower()][0], image_id=swap[b.name.lower()][1])
                if b.name.lower() in swap and b.label is None else b
                for b in request.bindings
            )
            out.append(replace(request, bindings=bindings))
        return out

    def _promote(self, step: PlannedStep, report: StepReport) -> None:
        promote = step.spec.promote
        assert promote is not None
        gens = self.host.queries.many(report.generation_ids)
        outputs = [o for g in gens for o in g.outputs]
        if _already_promoted(self.host.library, promote.name, outputs):
            report.promoted = promote.name
            report.message = (report.message + "; " if report.message else "") + (
                f"@{promote.name} already holds an output of this step")
            return
        if promote.pick == "manual":
            handles = ", ".join(o.ref for o in outputs)
            report.status = "paused"
            report.message = (f"pick one output ({handles}) with `refstudio promote GEN:INDEX "
                              f"{promote.name}`, then run the workflow again")
            return
        index = 0 if promote.pick == "first" else int(promote.pick)
        if index >= len(outputs):
            raise RefstudioError(f'step "{step.id}": pick {index} but only {len(outputs)} '
                                 "output(s)")
        chosen = outputs[index]
        self.host.promote(
            chosen.generation_id, promote.name, index=chosen.index, kind=promote.kind,
            label=promote.label, description=promote.description,
            keep_primary=promote.keep_primary,
        )
        report.promoted = promote.name


def _latest_with_hash(db: Database, request_hash: str) -> Generation | None:
    with read_session(db) as session:
        rows: Sequence[Generation] = session.exec(
            select(Generation).where(Generation.request_hash == request_hash)
            .order_by(col(Generation.id).desc())
        ).all()
    from ..engine.core import owner_alive

    # A completed one wins; else the newest that may still be paid for; else one never sent
    # that no live process is about to send.
    for row in rows:
        if row.status == "completed":
            return row
    unknown: Generation | None = next((r for r in rows if r.status == "unknown"), None)
    if unknown is not None:
        return unknown
    never_sent: Generation | None = next(
        (r for r in rows if r.status == "pending" and not owner_alive(r.owner, db)), None)
    return never_sent


def _last_completed_of_step(db: Database, workflow: str, step_id: str) -> Generation | None:
    with read_session(db) as session:
        row: Generation | None = session.exec(
            select(Generation).join(Run, col(Generation.run_id) == col(Run.id))
            .where(Run.workflow == workflow, Generation.step_id == step_id,
                   Generation.status == "completed")
            .order_by(col(Generation.id).desc())
        ).first()
    return row


def _made_by_steps(db: Database, output_id: int | None, step_ids: set[str]) -> bool:
    """Whether an output came from a generation of one of these workflow steps."""
    if output_id is None:
        return False
    with read_session(db) as session:
        output = session.get(Output, output_id)
        gen = session.get(Generation, output.generation_id) if output is not None else None
    return gen is not None and gen.step_id in step_ids


def image_step_of(db: Database, workflow: str) -> Callable[[int], str | None]:
    """For the planner: which step of ``workflow`` made a library image (by promoting it)."""

    def image_step(image_id: int) -> str | None:
        with read_session(db) as session:
            row: str | None = session.exec(
                select(Generation.step_id)
                .join(Output, col(Output.generation_id) == col(Generation.id))
                .join(ReferenceImage, col(ReferenceImage.source_output_id) == col(Output.id))
                .join(Run, col(Generation.run_id) == col(Run.id))
                .where(ReferenceImage.id == image_id, Run.workflow == workflow)
            ).first()
        return row

    return image_step


def _already_promoted(library: Library, name: str, outputs: list[OutputInfo]) -> bool:
    try:
        ref = library.get(name)
    except RefstudioError:
        return False
    keys = {(o.generation_id, o.index) for o in outputs}
    source_ids = [i.source_output_id for i in ref.images if i.source_output_id]
    if not source_ids:
        return False
    with read_session(library.db) as session:
        rows = session.exec(select(Output).where(col(Output.id).in_(source_ids))).all()
    return any((r.generation_id, r.index) in keys for r in rows)


def ensure_refs(library: Library, plan: Plan) -> list[str]:
    """Create the workflow's [refs] that the library lacks, from their files. Returns names."""
    made = []
    for name, ref in plan.workflow.spec.refs.items():
        if library.find_row(name) is not None:
            continue
        images = [plan.workflow.resolve_path(p) for p in ref.images]
        library.add_reference(name, images, kind=ref.kind, description=ref.description,
                              tags=ref.tags)
        made.append(name)
    return made


def estimate(host: WorkflowHost, plan: Plan, provider: str) -> tuple[float, dict[str, str]]:
    """Estimated cost of what would be paid, and a note per step (reused / new / depends)."""
    total = 0.0
    notes: dict[str, str] = {}
    for step in plan.steps:
        price = sum(_step_price(host, provider, step, m) for m in _models_of(step))
        if step.waits_for:
            notes[step.id] = "waits for " + ", ".join(
                f"@{n} from step {s}" for n, s in step.waits_for.items())
            total += price * len(step.seeds)
            continue
        try:
            priced: list[tuple[PreparedRequest, float]] = []
            for model_id in _models_of(step):
                rendered, requests = host.prepare_requests(
                    step.spec.prompt, template=step.spec.template,
                    variables={**plan.variables, **step.spec.vars}, n=len(step.seeds),
                    aspect_ratio=step.aspect_ratio, resolution=step.resolution,
                    seed=_seed_for(model_id, step.seeds[0]), provider=provider,
                    model=model_id, options=step.spec.options or None,
                )
                priced += [(r, rendered.cost_estimate) for r in requests]
        except RefstudioError:
            # A [refs] entry not yet in the library: it is made from its files at run time.
            notes[step.id] = "new"
            total += price * len(step.seeds)
            continue
        paid = 0
        for request, cost in priced:
            previous = _latest_with_hash(host.library.db,
                                         request.request_hash(provider, request.spec.model))
            if previous is None or previous.status != "completed":
                paid += 1
                total += cost
        notes[step.id] = "unchanged: not paid again" if paid == 0 else f"{paid} new request(s)"
    return total, notes


def _models_of(step: PlannedStep) -> list[str | None]:
    """The step's models (None: the default model, for a plan made without any)."""
    return list(step.models) if step.models else [None]


def _seed_for(model_id: str | None, seed: int) -> int | None:
    """The step's seed for a model that takes seeds; None for one that takes none."""
    from ..models import catalog

    return seed if catalog.get(model_id).options.seed_field is not None else None


def _step_price(host: WorkflowHost, provider: str, step: PlannedStep,
                model_id: str | None) -> float:
    """Price of one variant of ``step`` on one model (its options as the plan mapped them)."""
    from ..models import catalog

    spec = catalog.get(model_id)
    return host.price(provider, spec.id, step.model_params.get(spec.id))


def bound_names(step: PlannedStep, library_names: Mapping[str, str]) -> list[str]:
    """How each mention of a step will be satisfied, for the dry-run plan."""
    out = []
    for name in step.mentions:
        key = name.lower()
        if key in step.waits_for:
            out.append(f"@{name} (from step {step.waits_for[key]})")
        elif key in library_names:
            out.append(f"@{library_names[key]}")
        else:
            out.append(f"@{name} (from the workflow's refs)")
    return out


__all__ = [
    "RunReport",
    "StepReport",
    "WorkflowRunner",
    "bound_names",
    "ensure_refs",
    "estimate",
    "image_step_of",
]
