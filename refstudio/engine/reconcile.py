"""Resolving ``unknown`` generations from the provider's own records (its task history).

A submit whose answer was lost may or may not have created a task. The provider's history
lists every task the account created (WaveSpeed: the last 7 days), so for each ``unknown``
generation we look at the tasks of its model created inside its *submit window* — from the
moment its request was about to leave (``sent_at``) to the last moment a task from it can have
been created (``sent_until``), on the provider's clock — that no generation of this library
claims (by task id). Then, per generation:

* **adopt** the one task that is its own without doubt: the only unclaimed candidate in its
  window, no other ``unknown`` generation could be its owner, and either the history shows the
  request and it is ours, or (when the history does not show requests) the window is narrow
  and already closed, no other submit of this library with a lost answer overlaps it, and no
  task of the model that this library cannot explain was made around then (a sign of another
  client on the account). Matching by time alone still assumes that no other client made
  exactly one task of the same model inside those few seconds;
* **not accepted**: the history covers the whole window, it is closed, every page was read,
  and no candidate is left — nothing was created, so sending it is paid for the first time;
* otherwise leave it ``unknown`` and say why (two candidates, a twin, history too old or
  incomplete, a window still open).

Deciding is a pure function (:func:`decide`) of the generations, the history and the claimed
task ids; :class:`Engine.reconcile <refstudio.engine.core.Engine.reconcile>` fetches and applies.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from ..providers.base import TaskHistory, TaskRecord
from ..storage.tables import Generation

#: After an *unanswered* submit (timeout, dropped connection, killed process) the server may
#: still be working on the request it received; a task created this long after we gave up is
#: still counted as possibly ours.
LATE_CREATION = timedelta(seconds=60)
#: Added to the measured clock difference, both ways (server stamps vs. our stamps).
CLOCK_SLACK = timedelta(seconds=2)
#: Used instead when the provider did not say what time it was (no ``Date`` header).
UNMEASURED_CLOCK_SLACK = timedelta(minutes=5)
#: How much wider than the windows the history is asked for, so a clock difference that only
#: shows in the answer still leaves the windows inside what was read.
QUERY_MARGIN = timedelta(minutes=15)
#: A task matched by model and time alone (the history does not show requests) is adopted only
#: when the window is at most this wide: wider, and another client of the account could have
#: made a task of the same model in it.
TIME_ONLY_MAX_WINDOW = timedelta(minutes=2)
#: Records near the end of the provider's retention may vanish while we read them.
RETENTION_SAFETY = timedelta(hours=1)
#: How far back a window may start for the history (WaveSpeed keeps 7 days) to be asked.
HISTORY_REACH = timedelta(days=7) - RETENTION_SAFETY

Verdict = Literal["adopted", "not_accepted", "unknown"]


@dataclass(frozen=True)
class Decision:
    """What reconcile concluded for one ``unknown`` generation, and why."""

    generation_id: int
    verdict: Verdict
    reason: str
    task: TaskRecord | None = None


@dataclass(frozen=True)
class Window:
    """An unknown submit's window on the local clock."""

    start: datetime
    end: datetime


def window_of(gen: Generation) -> Window:
    """The submit window of an ``unknown`` generation (local clock).

    Rows from before windows were recorded fall back to wider, still safe bounds: the row was
    written before anything was sent, and its last update came when its fate became unknown.
    """
    start = _aware(gen.sent_at or gen.created_at)
    end = _aware(gen.sent_until) if gen.sent_until else _aware(
        gen.updated_at or gen.created_at) + LATE_CREATION
    return Window(start, max(start, end))


def unexplained_attempts(gen: Generation) -> int:
    """Maybe-paid submits of ``gen`` whose task we do not know and that are not its current
    ``unknown`` one: a lost answer from before a retry, somewhere in its lifetime."""
    known = (1 if gen.request_id and gen.status != "unknown" else 0)
    current = 1 if gen.status == "unknown" else 0
    return max(0, gen.paid_attempts - known - current)


def query_range(windows: Iterable[Window]) -> tuple[datetime, datetime]:
    """What to ask the history for (local clock, widened for clock differences)."""
    spans = list(windows)
    return (min(w.start for w in spans) - QUERY_MARGIN, max(w.end for w in spans) + QUERY_MARGIN)


def fit(payload: dict[str, Any], task: TaskRecord) -> Literal["yes", "no", "maybe"]:
    """Whether a task was made from this request body: ``yes`` (the history shows the request
    and every field we sent matches), ``no`` (a field we sent differs), ``maybe`` (the history
    does not show it, or not all of it)."""
    if task.input is None:
        return "maybe"
    missing = False
    for key, value in payload.items():
        if key not in task.input:
            missing = True
        elif task.input[key] != value:
            return "no"
    return "maybe" if missing or not payload else "yes"


def decide(
    unknowns: Sequence[Generation],
    history: TaskHistory,
    claimed: set[str],
    others: Sequence[Generation] = (),
    provider: str = "the provider",
) -> list[Decision]:
    """Decide every ``unknown`` generation of one model against one read of the history.

    ``claimed``: task ids any generation of this library holds. ``others``: the library's
    other generations of this provider (to see lost answers from before a retry).
    """
    offset = timedelta(seconds=history.clock_offset or 0.0)
    slack = (CLOCK_SLACK + timedelta(seconds=history.clock_error)
             if history.clock_offset is not None else UNMEASURED_CLOCK_SLACK)
    server_now = history.server_now or datetime.now(timezone.utc) + offset
    oldest = server_now - history.retention + RETENTION_SAFETY

    windows: dict[int, tuple[datetime, datetime]] = {}
    for gen in unknowns:
        w = window_of(gen)
        windows[_id(gen)] = (w.start + offset - slack, w.end + offset + slack)
    payloads = {_id(g): _payload(g) for g in unknowns}
    free = [t for t in history.tasks if t.task_id not in claimed]
    candidates: dict[int, list[tuple[TaskRecord, str]]] = {}
    for gen in unknowns:
        lo, hi = windows[_id(gen)]
        candidates[_id(gen)] = [
            (t, f) for t in free
            if lo <= t.created_at <= hi and (f := fit(payloads[_id(gen)], t)) != "no"
        ]
    owners: dict[str, list[int]] = {}
    for gen_id, found in candidates.items():
        for task, _ in found:
            owners.setdefault(task.task_id, []).append(gen_id)
    # Unclaimed tasks near the windows that none of them can explain: someone else (the web
    # site, another library, another tool) used this model on the account around then.
    strangers = [t for t in free if t.task_id not in owners]

    decisions = []
    for gen in unknowns:
        gen_id = _id(gen)
        lo, hi = windows[gen_id]
        span = f"{_show(lo)} – {_show(hi)}"
        closed = hi <= server_now
        if lo < oldest:
            decisions.append(Decision(gen_id, "unknown", (
                f"sent {_show(lo)}, longer ago than {provider}'s history reaches "
                f"({history.retention.days} days); it can no longer tell")))
            continue
        if not history.complete:
            decisions.append(Decision(gen_id, "unknown",
                                      f"{provider}'s history could not be read in full: "
                                      f"{history.reason}"))
            continue
        # The query's bounds were sent as written; the provider applies them on its clock.
        if not (history.since <= lo and hi <= history.until):
            decisions.append(Decision(gen_id, "unknown", (
                f"the history read ({_show(history.since)} – {_show(history.until)}) does not "
                f"cover its window {span} (clocks differ by {offset.total_seconds():.0f} s)")))
            continue
        found = candidates[gen_id]
        if not found:
            if closed:
                decisions.append(Decision(gen_id, "not_accepted", (
                    f"{provider}'s history has no task of {gen.model} created in its submit "
                    f"window {span} that another generation does not claim")))
            else:
                decisions.append(Decision(gen_id, "unknown", (
                    f"no task yet, but a task could still appear until {_show(hi)}; "
                    "`refstudio reconcile` after that")))
            continue
        if len(found) > 1:
            ids = ", ".join(t.task_id for t, _ in found)
            decisions.append(Decision(gen_id, "unknown", (
                f"{len(found)} unclaimed tasks of {gen.model} were created in its window "
                f"({ids}); refstudio cannot tell which is its own")))
            continue
        task, how = found[0]
        rivals = [g for g in owners[task.task_id] if g != gen_id]
        if rivals:
            twins = [g for g in rivals if payloads[g] == payloads[gen_id]]
            kind = "an identical request" if twins else "a request"
            decisions.append(Decision(gen_id, "unknown", (
                f"task {task.task_id} could also be the answer to "
                + ", ".join(f"#{g}" for g in rivals)
                + f" ({kind} in an overlapping window); refstudio will not guess")))
            continue
        if how == "yes":
            decisions.append(Decision(gen_id, "adopted", (
                f"matched task {task.task_id} by model, submit time and request"), task))
            continue
        # Model and time only: adopt only when nothing else could explain that task.
        if not closed:
            decisions.append(Decision(gen_id, "unknown", (
                f"one task ({task.task_id}) so far, but another could still appear until "
                f"{_show(hi)}; `refstudio reconcile` after that")))
            continue
        if hi - lo > TIME_ONLY_MAX_WINDOW + 2 * slack:
            decisions.append(Decision(gen_id, "unknown", (
                f"one unclaimed task ({task.task_id}) in its window, but {provider}'s history "
                "does not show requests and the window is too wide "
                f"({(hi - lo).total_seconds():.0f} s) to match by time alone")))
            continue
        if strangers:
            decisions.append(Decision(gen_id, "unknown", (
                f"one unclaimed task ({task.task_id}) in its window, but {provider}'s history "
                "does not show requests and other tasks of this model that this library did "
                f"not make were created around then ({', '.join(t.task_id for t in strangers[:3])}"
                f"{', …' if len(strangers) > 3 else ''}): another client uses the account, so "
                "matching by time alone is not safe")))
            continue
        lost = [o for o in others if _id(o) != gen_id and unexplained_attempts(o)
                and _overlaps(o, lo - offset, hi - offset)]
        if lost:
            decisions.append(Decision(gen_id, "unknown", (
                f"one unclaimed task ({task.task_id}) in its window, but "
                + ", ".join(f"#{_id(o)}" for o in lost)
                + " also lost a submit answer around that time and the history does not "
                "show requests")))
            continue
        decisions.append(Decision(gen_id, "adopted", (
            f"matched task {task.task_id} by model and submit time (the only task in its "
            f"{(hi - lo).total_seconds():.0f} s window; {provider}'s history does not show "
            "requests)"), task))
    return decisions


def _overlaps(gen: Generation, lo: datetime, hi: datetime) -> bool:
    start = _aware(gen.created_at)
    end = _aware(gen.updated_at or gen.completed_at or gen.created_at)
    return start <= hi and lo <= end


def _payload(gen: Generation) -> dict[str, Any]:
    try:
        body = json.loads(gen.payload_json or "{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _aware(when: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were written in UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def _show(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _id(gen: Generation) -> int:
    assert gen.id is not None
    return gen.id


__all__ = ["LATE_CREATION", "Decision", "Window", "decide", "fit", "query_range", "window_of"]
