"""Generation rows: the write-ahead log of paid work.

Their order is the contract: ``create_pending`` before anything is uploaded or sent,
``submitting`` committed just before the request leaves, ``submitted`` the moment a task id comes
back, ``completed`` only after every output is in the media store. Each state change is a
:data:`Change`; a caller commits it alone (:func:`commit`) or with others (:func:`apply`), and
acts on it only once it is committed.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, func
from sqlalchemy import case as sa_case
from sqlalchemy import update as sa_update
from sqlmodel import Session, col, select

from ..errors import BudgetExceededError, GenerationError, GenerationNotFoundError
from ..models import catalog
from ..models.sizes import Size
from ..models.spec import ModelSpec
from ..storage.database import (
    Database,
    advisory_xact_lock,
    insert_ignoring,
    lock_budget,
    read_session,
    write_session,
)
from ..storage.rows import ensure_assets
from ..storage.tables import Generation, Output


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class BindingRecord:
    """One reference image bound into a request, as recorded with the generation."""

    name: str
    label: str | None
    sha256: str
    reference_id: int | None = None
    image_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "sha256": self.sha256,
            "reference_id": self.reference_id,
            "image_id": self.image_id,
        }


@dataclass(frozen=True)
class PreparedRequest:
    """A fully resolved request: what to send, to which model, and what it was made from.

    ``model`` is a catalog id or alias (None: the default model). The model's options are
    ``options`` when given (already complete, e.g. from :meth:`ModelSpec.params`); otherwise
    they come from the common vocabulary (``aspect_ratio``, ``resolution``, ``seed``).
    """

    prompt: str  # the text to send
    aspect_ratio: str | None = None
    resolution: str | None = None
    seed: int | None = None
    bindings: tuple[BindingRecord, ...] = ()
    template_source: str | None = None
    run_id: int | None = None
    step_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    options: dict[str, Any] | None = None
    #: Which of a batch's variants this is. Seeds tell variants apart; for a model without
    #: seeds this index does, so variant 2 is not taken for variant 1 already paid for.
    variant: int = 0

    @functools.cached_property
    def spec(self) -> ModelSpec:
        return catalog.get(self.model)

    @functools.cached_property
    def _params(self) -> dict[str, Any]:
        spec = self.spec
        if self.options is not None:
            return spec.params(spec.parse_options(self.options))
        size = Size.of(self.aspect_ratio, self.resolution)
        return spec.params(spec.options_for(size, seed=self.seed))

    def params(self) -> dict[str, Any]:
        """The model's options as stored in ``params_json`` (a fresh dict each call)."""
        return dict(self._params)

    def request_hash(self, provider: str, model: str) -> str:
        """Identity of the request independent of upload URLs: same hash, same paid work.

        The catalog id joins the hash only for models other than the default, so requests
        recorded before the model layer keep their identity (no step is paid for twice).
        """
        identity: dict[str, Any] = {
            "provider": provider,
            "model": model,
            "prompt": self.prompt,
            "params": self.params(),
            "images": [b.sha256 for b in self.bindings],
        }
        if self.spec is not catalog.default_model():
            identity["model_id"] = self.spec.id
        if self.variant and self.spec.options.seed_field is None:
            identity["variant"] = self.variant
        canonical = json.dumps(identity, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def create_pending(
    db: Database,
    request: PreparedRequest,
    *,
    provider: str,
    cost: float,
    owner: str | None = None,
) -> int:
    """Write the generation row before anything leaves the machine. Returns its id."""
    return create_pending_many(db, [request], provider=provider, costs=[cost], owner=owner)[0]


#: States whose cost counts against a budget: paid or maybe paid, and ``pending`` — work
#: recorded to be sent, so a second process checking its budget meanwhile must count it too.
BUDGET_STATES = ("pending", "submitting", "submitted", "completed", "unknown")
#: Costs are float estimates; a batch exactly at the budget must pass despite rounding.
BUDGET_SLACK = 1e-9


def committed_cost(session: Session) -> float:
    """Estimated cost of every generation in :data:`BUDGET_STATES`, read in ``session``."""
    total = session.exec(
        select(func.sum(Generation.cost_estimate)).where(
            col(Generation.status).in_(BUDGET_STATES)
        )
    ).one()
    return float(total or 0.0)


def check_within_budget(spent: float, cost: float, budget: float | None) -> None:
    """Raise :class:`BudgetExceededError` when ``cost`` on top of ``spent`` breaks ``budget``."""
    if budget is None or cost <= 0:
        return
    if spent + cost > budget + BUDGET_SLACK:
        raise BudgetExceededError(
            f"estimated cost ${cost:.2f} would take this project to ${spent + cost:.2f}, "
            f"over its budget of ${budget:.2f}; nothing was sent",
            hint="raise `budget` in refstudio.toml, or generate fewer images",
        )


def create_pending_many(
    db: Database,
    requests: list[PreparedRequest],
    *,
    provider: str,
    costs: Sequence[float],
    owner: str | None = None,
    budget: float | None = None,
    author: str | None = None,
) -> list[int]:
    """Write-ahead rows for a batch in one transaction (all exist before any is sent).

    ``costs`` has one estimate per request (models differ in price). Each row records the
    request's model: its catalog id and the provider's own name for it.

    With a ``budget``, the check and the insert are one transaction under the budget lock
    (:func:`refstudio.storage.database.lock_budget`): lock, sum, insert, commit. Two processes
    can then never both pass on the same spend; the later one sees the earlier one's rows and raises
    :class:`BudgetExceededError` having written nothing.
    """
    with write_session(db) as session:
        total = sum(costs)
        if budget is not None and total > 0:
            lock_budget(session)
            check_within_budget(committed_cost(session), total, budget)
        rows = [
            Generation(
                status="pending",
                provider=provider,
                model=request.spec.model,
                model_id=request.spec.id,
                template_source=request.template_source,
                prompt=request.prompt,
                params_json=json.dumps(request.params()),
                bindings_json=json.dumps([b.to_dict() for b in request.bindings]),
                request_hash=request.request_hash(provider, request.spec.model),
                cost_estimate=cost,
                run_id=request.run_id,
                step_id=request.step_id,
                owner=owner,
                author=author,
                created_at=now_utc(),
                updated_at=now_utc(),
            )
            for request, cost in zip(requests, costs, strict=True)
        ]
        session.add_all(rows)
        session.flush()
        ids = [row.id for row in rows]
    assert all(i is not None for i in ids)
    return ids  # type: ignore[return-value]


def requeue(db: Database, generation_id: int, *, budget: float | None = None,
            owner: str | None = None, seen_owner: str | None = None) -> None:
    """Make a ``failed``, ``unknown`` or abandoned ``pending`` generation ``pending`` again,
    to be sent once more by ``owner``.

    Sending it again may cost its price again, so with a ``budget`` that cost is checked on top
    of everything already counted, under the budget lock, in the same transaction. A
    ``pending`` row is taken only if its owner is still ``seen_owner`` (a stopped process's, or
    none): two processes never both send it.
    """
    with write_session(db) as session:
        if budget is not None:
            lock_budget(session)
        # Locked until commit: two retries of one generation racing on PostgreSQL must not both
        # see it failed and both send it (SQLite's write lock already orders them).
        row = session.get(Generation, generation_id, with_for_update=True)
        if row is None:
            raise GenerationNotFoundError(f"no generation #{generation_id}")
        taken = row.status == "pending" and row.owner != seen_owner
        if row.status not in ("failed", "unknown", "pending") or taken:
            # Another process got there first.
            raise GenerationError(f"generation #{generation_id} is {row.status}"
                                  + (" and being sent by another process" if taken else "")
                                  + "; only failed, unknown or never-sent generations can be "
                                  "retried")
        if budget is not None:
            spent = committed_cost(session)
            if row.status == "pending":
                spent -= row.cost_estimate  # counted already: check it once, not twice
            check_within_budget(spent, row.cost_estimate, budget)
        row.status, row.error, row.updated_at = "pending", "", now_utc()
        row.owner = owner
        session.add(row)


def take_over(db: Database, rows: Sequence[tuple[int, str | None]], owner: str) -> list[int]:
    """Claim ``pending`` rows whose owner is still the one seen (a stopped process's, or none).

    Compare-and-set in one write transaction, so two processes resuming at once never both
    take (and send) the same generation. Returns the ids taken.
    """
    taken: list[int] = []
    if not rows:
        return taken
    with write_session(db) as session:
        conn = session.connection()
        for gen_id, seen in rows:
            same = col(Generation.owner).is_(None) if seen is None else (
                col(Generation.owner) == seen)
            result = conn.execute(
                sa_update(Generation)
                .where(col(Generation.id) == gen_id, col(Generation.status) == "pending", same)
                .values(owner=owner, updated_at=now_utc())
            )
            if result.rowcount:
                taken.append(gen_id)
    return taken


def release(db: Database, gen_id: int, seen_owner: str | None, error: str) -> bool:
    """Give up a stopped process's ``pending`` row (owner none), if nobody took it meanwhile."""
    same = col(Generation.owner).is_(None) if seen_owner is None else (
        col(Generation.owner) == seen_owner)
    with write_session(db) as session:
        result = session.connection().execute(
            sa_update(Generation)
            .where(col(Generation.id) == gen_id, col(Generation.status) == "pending", same)
            .values(owner=None, error=error)
        )
        return bool(result.rowcount)


def load(db: Database, generation_id: int) -> Generation:
    from ..models.params import check_generation_id

    with read_session(db) as session:
        row = session.get(Generation, check_generation_id(generation_id))
    if row is None:
        raise GenerationNotFoundError(
            f"no generation #{generation_id}", hint="see `refstudio history`"
        )
    return row


#: One state change of a generation, applied inside a caller's write transaction. Building the
#: change apart from the transaction lets the engine commit many at once (group commit) while
#: each caller still waits for its own change to be durable before it acts on it.
Change = Callable[[Session], None]


def apply(db: Database, changes: Sequence[Change]) -> list[Exception | None]:
    """Commit ``changes`` together; the result says, per change, whether it failed and why.

    One transaction for the whole batch is the fast path. If it fails, each change is tried
    again in its own transaction, so one bad change never takes the others down with it.
    """
    if not changes:
        return []
    try:
        with write_session(db) as session:
            for change in changes:
                change(session)
        return [None] * len(changes)
    except Exception as batch_error:  # sorted out change by change below
        if len(changes) == 1:
            return [batch_error]
    results: list[Exception | None] = []
    for change in changes:
        try:
            with write_session(db) as session:
                change(session)
            results.append(None)
        except Exception as exc:  # handed to the caller that owns the change
            results.append(exc)
    return results


def commit(db: Database, change: Change) -> None:
    """Apply one change in its own transaction, raising what it raised."""
    error = apply(db, [change])[0]
    if error is not None:
        raise error


# The hot-path statements are built once with bound parameters. Building a statement per call
# (and computing its cache key) cost SQLAlchemy about 1 ms per generation state change; a
# prebuilt statement is compiled once and then only bound. Core statements on the session's
# connection skip the ORM unit of work, which nothing here needs.


@functools.lru_cache(maxsize=64)
def _update_statement(columns: tuple[str, ...]) -> Any:
    return (
        sa_update(Generation)
        .where(col(Generation.id) == bindparam("target_id"))
        .values({name: bindparam(f"new_{name}") for name in columns})
    )


_GENERATION_COLUMNS = frozenset(Generation.model_fields)
_SUBMITTING = (
    sa_update(Generation)
    .where(col(Generation.id) == bindparam("target_id"))
    .values(status="submitting", payload_json=bindparam("new_payload"),
            attempts=Generation.attempts + 1, updated_at=bindparam("new_at"),
            sent_at=bindparam("new_at"), sent_until=None, sent_to=bindparam("new_sent_to"))
)
_SUBMITTED = (
    sa_update(Generation)
    .where(col(Generation.id) == bindparam("target_id"))
    .values(status="submitted", request_id=bindparam("new_request_id"),
            poll_url=bindparam("new_poll_url"), submitted_at=bindparam("new_at"), error="",
            paid_attempts=Generation.paid_attempts + 1)
)
_COMPLETED = (
    sa_update(Generation)
    .where(col(Generation.id) == bindparam("target_id"))
    .values(status="completed", completed_at=bindparam("new_at"),
            inference_ms=bindparam("new_ms"), error="", updated_at=bindparam("new_at"))
)


@functools.lru_cache(maxsize=4)
def _insert_output(dialect: str) -> Any:
    return insert_ignoring(Output.__table__, dialect,  # type: ignore[attr-defined]
                           ("generation_id", "index"))


def changed(generation_id: int, **values: Any) -> Change:
    """Set columns of one generation (one UPDATE statement, no ORM load: hot path)."""
    unknown = values.keys() - _GENERATION_COLUMNS
    if unknown:
        raise ValueError(f"not a generation column: {sorted(unknown)}")
    columns = tuple(sorted(values))
    params = {"target_id": generation_id} | {f"new_{k}": values[k] for k in columns}

    def change(session: Session) -> None:
        session.connection().execute(_update_statement(columns), params)

    return change


def update(db: Database, generation_id: int, **values: Any) -> None:
    """Change columns of one generation in its own transaction."""
    commit(db, changed(generation_id, **values))


def claim(db: Database, generation_ids: list[int], owner: str) -> None:
    """Mark generations as driven by ``owner`` (one statement for the whole batch)."""
    if not generation_ids:
        return
    with write_session(db) as session:
        session.exec(  # type: ignore[call-overload]
            sa_update(Generation)
            .where(col(Generation.id).in_(generation_ids))
            .values(owner=owner, updated_at=now_utc())
        )


def submitting(generation_id: int, payload: dict[str, Any], sent_to: str | None = None) -> Change:
    """The last write before the request leaves: from here on its fate may be unknown.

    ``sent_to`` names where it goes (see :attr:`Provider.account`), never a secret.
    """
    params = {"target_id": generation_id, "new_payload": json.dumps(payload),
              "new_at": now_utc(), "new_sent_to": sent_to}

    def change(session: Session) -> None:
        session.connection().execute(_SUBMITTING, params)

    return change


def submitted(generation_id: int, request_id: str, poll_url: str | None) -> Change:
    """The task id, recorded the moment it comes back (an accepted, so paid, submit)."""
    params = {"target_id": generation_id, "new_request_id": request_id,
              "new_poll_url": poll_url, "new_at": now_utc()}

    def change(session: Session) -> None:
        session.connection().execute(_SUBMITTED, params)

    return change


def unknown(generation_id: int, message: str, sent_until: datetime) -> Change:
    """A submit whose fate is ambiguous: counted as maybe paid, never resent on our own.

    ``sent_until`` closes the window in which its task, if any, was created (see reconcile).
    """
    at = now_utc()

    def change(session: Session) -> None:
        session.connection().execute(
            sa_update(Generation).where(col(Generation.id) == generation_id).values(
                status="unknown", error=message, owner=None, updated_at=at,
                sent_until=sent_until, paid_attempts=Generation.paid_attempts + 1,
            )
        )

    return change


def mark_not_accepted(db: Database, generation_id: int, note: str) -> bool:
    """An ``unknown`` submit the provider's records prove never created a task: ``pending``
    again, its maybe-paid attempt taken back, so sending it is paid for the first time.

    Returns False (and changes nothing) if the row is no longer ``unknown``.
    """
    at = now_utc()
    with write_session(db) as session:
        result = session.connection().execute(
            sa_update(Generation)
            .where(col(Generation.id) == generation_id, col(Generation.status) == "unknown")
            .values(status="pending", error="", note=note, owner=None, updated_at=at,
                    sent_until=None,
                    paid_attempts=sa_case((col(Generation.paid_attempts) > 0,
                                           Generation.paid_attempts - 1), else_=0))
        )
        return bool(result.rowcount)


#: Advisory lock serialising :func:`adopt` on PostgreSQL.
ADOPT_LOCK_KEY = 0x7265_6661_646F  # "refado"


def adopt(db: Database, generation_id: int, request_id: str, poll_url: str | None,
          created_at: datetime | None, note: str, owner: str) -> bool:
    """An ``unknown`` submit matched to the provider's task: ``submitted``, with that task's id.

    Returns False (and changes nothing) if the row is no longer ``unknown``, or if another
    generation already claims that task.
    """
    at = now_utc()
    with write_session(db) as session:
        # One adopter at a time: two reconciles must not give one task to two generations.
        advisory_xact_lock(session, ADOPT_LOCK_KEY)
        claimed = session.exec(
            select(Generation.id).where(Generation.request_id == request_id)
        ).first()
        if claimed is not None:
            return False
        result = session.connection().execute(
            sa_update(Generation)
            .where(col(Generation.id) == generation_id, col(Generation.status) == "unknown")
            .values(status="submitted", request_id=request_id, poll_url=poll_url,
                    submitted_at=created_at or at, error="", note=note, owner=owner,
                    updated_at=at)
        )
        return bool(result.rowcount)


def completed(
    generation_id: int,
    outputs: list[tuple[str, str, str, int, int, int, bool, str]],
    inference_ms: int | None,
) -> Change:
    """Record stored outputs and mark the generation completed (one transaction with them).

    Each output is ``(sha256, key, format, width, height, bytes, nsfw, source_url)``.
    """

    def change(session: Session) -> None:
        conn = session.connection()
        asset_ids = ensure_assets(conn, [
            {"sha256": sha, "path": key, "format": fmt, "width": width, "height": height,
             "bytes": size} for sha, key, fmt, width, height, size, _, _ in outputs])
        at = now_utc()
        rows = [{"generation_id": generation_id, "index": index, "asset_id": asset_ids[sha],
                 "nsfw": nsfw, "source_url": url, "created_at": at}
                for index, (sha, _, _, _, _, _, nsfw, url) in enumerate(outputs)]
        if rows:
            # An output stored already (a resume finishing what a crash left) is kept as is.
            conn.execute(_insert_output(conn.dialect.name), rows)
        conn.execute(_COMPLETED, {"target_id": generation_id, "new_at": now_utc(),
                                  "new_ms": inference_ms})

    return change


def in_states(db: Database, states: tuple[str, ...]) -> list[Generation]:
    with read_session(db) as session:
        return list(
            session.exec(
                select(Generation).where(col(Generation.status).in_(states)).order_by(
                    col(Generation.id)
                )
            ).all()
        )


def timing_kind(model_id: str, params: dict[str, Any]) -> str:
    """What makes tasks take alike: one model at one size (its resolution or ``W*H``). The poll
    schedule is learned per kind."""
    size = params.get("resolution") or params.get("size") or ""
    return f"{model_id} {size}".rstrip()


def past_durations(db: Database, provider: str, kind: str, limit: int = 200) -> list[float]:
    """Server-side task times (seconds) of recent completed generations of one
    :func:`timing_kind`, newest first."""
    model_id = kind.split(" ", 1)[0]
    with read_session(db) as session:
        rows = session.exec(
            select(Generation.inference_ms, Generation.submitted_at, Generation.completed_at,
                   Generation.params_json)
            .where(Generation.status == "completed", Generation.provider == provider,
                   Generation.model_id == model_id)
            .order_by(col(Generation.id).desc())
            .limit(limit)
        ).all()
    durations = []
    for inference_ms, submitted, completed, params_json in rows:
        if timing_kind(model_id, json.loads(params_json)) != kind:
            continue
        if inference_ms is not None:
            durations.append(inference_ms / 1000)
        elif submitted and completed:
            durations.append((completed - submitted).total_seconds())
    return durations


def claimed_task_ids(db: Database, provider: str) -> set[str]:
    """Task ids some generation of this provider holds: those tasks are accounted for."""
    with read_session(db) as session:
        rows = session.exec(
            select(Generation.request_id).where(
                Generation.provider == provider, col(Generation.request_id).is_not(None)
            )
        ).all()
    return {r for r in rows if r}


def with_lost_answers(db: Database, provider: str) -> list[Generation]:
    """Generations of this provider with more maybe-paid submits than known tasks (a lost
    answer before a retry), apart from ``unknown`` ones, whose windows are known."""
    with read_session(db) as session:
        rows = session.exec(
            select(Generation).where(
                Generation.provider == provider, col(Generation.paid_attempts) > 0
            )
        ).all()
    return [
        r for r in rows
        if r.paid_attempts - (1 if r.request_id and r.status != "unknown" else 0)
        - (1 if r.status == "unknown" else 0) > 0
    ]
