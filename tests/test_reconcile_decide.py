"""Reconcile's decisions, case by case, on hand-made rows and histories (no network).

The simulator tests (test_reconcile.py) drive the whole path; these pin down the branches that
are hard to stage on a live server: clock differences, incomplete reads, wide windows, a lost
answer from before a retry.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import gen4_facts as gen4

from refstudio.engine.reconcile import decide, fit
from refstudio.providers.base import TaskHistory, TaskRecord
from refstudio.storage.tables import Generation

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
BODY = {"prompt": "a red door", "aspect_ratio": "16:9", "resolution": "720p", "seed": 5}


def unknown(gen_id: int, sent: datetime, until: datetime | None = None,
            body: dict[str, object] | None = None) -> Generation:
    return Generation(
        id=gen_id, status="unknown", provider="wavespeed", model=gen4.MODEL_ID,
        prompt="a red door", params_json="{}", payload_json=json.dumps(body or BODY),
        request_hash="h", created_at=sent - timedelta(seconds=1), updated_at=until or sent,
        sent_at=sent, sent_until=until or sent + timedelta(seconds=1), paid_attempts=1,
    )


def task(task_id: str, created: datetime, body: dict[str, object] | None = None) -> TaskRecord:
    return TaskRecord(task_id=task_id, model=gen4.MODEL_ID, created_at=created,
                      state="completed", input=body)


def history(*tasks: TaskRecord, offset: float = 0.0, complete: bool = True,
            reason: str = "") -> TaskHistory:
    return TaskHistory(
        tasks=tasks, since=NOW - timedelta(hours=1), until=NOW + timedelta(hours=1),
        complete=complete, reason=reason, server_now=NOW + timedelta(seconds=offset),
        clock_offset=offset, clock_error=0.3,
    )


SENT = NOW - timedelta(minutes=5)


def test_a_lone_task_in_a_quiet_window_is_adopted_by_time() -> None:
    [d] = decide([unknown(1, SENT)], history(task("t1", SENT + timedelta(seconds=0.4))), set())
    assert d.verdict == "adopted" and d.task is not None and d.task.task_id == "t1"
    assert "by model and submit time" in d.reason


def test_the_server_clock_may_run_ahead() -> None:
    """The server's stamps are 10 minutes ahead: its task is still found in our window."""
    ahead = 600.0
    shifted = task("t1", SENT + timedelta(seconds=ahead + 0.4))
    [d] = decide([unknown(1, SENT)], history(shifted, offset=ahead), set())
    assert d.verdict == "adopted"
    # Read without correcting, the same task would fall outside the window: not ours, and
    # nothing else there: "not accepted" would be wrong. The offset prevents exactly that.
    [wrong] = decide([unknown(1, SENT)], history(shifted, offset=0.0), set())
    assert wrong.verdict == "not_accepted"


def test_a_read_that_does_not_cover_the_window_proves_nothing() -> None:
    far = history(offset=3 * 3600.0)  # clocks 3 h apart: our window is outside what was read
    [d] = decide([unknown(1, SENT)], far, set())
    assert d.verdict == "unknown" and "does not cover its window" in d.reason


def test_an_incomplete_read_proves_nothing() -> None:
    [d] = decide([unknown(1, SENT)], history(complete=False, reason="page 3 failed"), set())
    assert d.verdict == "unknown" and "page 3 failed" in d.reason


def test_claimed_tasks_are_never_candidates() -> None:
    [d] = decide([unknown(1, SENT)], history(task("t1", SENT + timedelta(seconds=0.5))), {"t1"})
    assert d.verdict == "not_accepted"


def test_a_different_request_is_not_a_candidate_when_the_history_shows_it() -> None:
    other = dict(BODY, seed=6)
    [d] = decide([unknown(1, SENT)],
                 history(task("t1", SENT + timedelta(seconds=0.5), other)), set())
    assert d.verdict == "not_accepted"
    assert fit(BODY, task("t", SENT, other)) == "no"
    assert fit(BODY, task("t", SENT, {**BODY, "enable_sync_mode": False})) == "yes"
    assert fit(BODY, task("t", SENT, {"prompt": "a red door"})) == "maybe"
    assert fit(BODY, task("t", SENT)) == "maybe"


def test_a_wide_window_is_not_matched_by_time_alone() -> None:
    """A process killed mid-send: its window runs until the resume that found it dead."""
    wide = unknown(1, SENT, until=SENT + timedelta(minutes=4))
    [d] = decide([wide], history(task("t1", SENT + timedelta(seconds=30))), set())
    assert d.verdict == "unknown" and "too wide" in d.reason
    # The same window with the request shown: adopted, because the request says it is ours.
    [d] = decide([wide], history(task("t1", SENT + timedelta(seconds=30), BODY)), set())
    assert d.verdict == "adopted" and "and request" in d.reason


def test_an_earlier_lost_answer_of_another_generation_blocks_matching_by_time() -> None:
    """#2 lost an answer before it was retried (and completed): the lone task in #1's window
    may be that lost one."""
    retried = Generation(
        id=2, status="completed", provider="wavespeed", model=gen4.MODEL_ID, prompt="x",
        params_json="{}", request_hash="h2", request_id="t-retry", paid_attempts=2,
        created_at=SENT - timedelta(seconds=10), updated_at=SENT + timedelta(seconds=20),
    )
    [d] = decide([unknown(1, SENT)], history(task("t1", SENT + timedelta(seconds=0.5))), set(),
                 others=[retried])
    assert d.verdict == "unknown" and "#2 also lost a submit answer" in d.reason


def test_twins_and_two_candidates() -> None:
    twins = [unknown(1, SENT), unknown(2, SENT + timedelta(seconds=0.2))]
    decisions = decide(twins, history(task("t1", SENT + timedelta(seconds=0.5), BODY)), set())
    assert [d.verdict for d in decisions] == ["unknown", "unknown"]
    assert "#2 (an identical request" in decisions[0].reason
    [d] = decide([unknown(1, SENT)], history(task("t1", SENT + timedelta(seconds=0.3)),
                                             task("t2", SENT + timedelta(seconds=0.6))), set())
    assert d.verdict == "unknown" and "2 unclaimed tasks" in d.reason


def test_older_than_the_history_reaches() -> None:
    old = NOW - timedelta(days=7)
    [d] = decide([unknown(1, old)], TaskHistory(
        tasks=(), since=old - timedelta(hours=1), until=NOW, complete=True, server_now=NOW,
        clock_offset=0.0), set())
    assert d.verdict == "unknown" and "longer ago than" in d.reason
