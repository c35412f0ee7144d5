"""The poll schedule: what it promises, checked against its own model and against even spacing."""

from __future__ import annotations

import random
import statistics

import pytest

from refstudio.engine.polling import PollPlan


def _walk(plan: PollPlan, finish: float) -> tuple[float, int]:
    """Detection lag and polls spent for a task finishing ``finish`` seconds after submit."""
    at, polls, stragglers = plan.first_poll(), 1, 0
    while at < finish:
        if at >= plan.window_end:
            stragglers += 1
        at = plan.next_poll(at, stragglers)
        polls += 1
    return at - finish, polls


def _uniform_history(n: int, low: float = 2.0, high: float = 4.0, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(low, high) for _ in range(n)]


def test_polls_increase_and_close_the_window_where_past_tasks_ended() -> None:
    history = _uniform_history(200)
    plan = PollPlan.learn(history, target_lag=0.18)
    assert list(plan.offsets) == sorted(set(plan.offsets))
    assert 2.0 < plan.first_poll() < 3.0  # nothing before the earliest plausible finish
    assert 3.9 < plan.window_end < 4.1
    gaps = [b - a for a, b in zip(plan.offsets, plan.offsets[1:], strict=False)]
    assert gaps == sorted(gaps, reverse=True)  # sparse early, dense at the end


@pytest.mark.parametrize("target", [0.1, 0.18, 0.3])
def test_mean_lag_meets_the_target_with_fewer_polls_than_even_spacing(target: float) -> None:
    plan = PollPlan.learn(_uniform_history(200), target_lag=target)
    rng = random.Random(2)
    walks = [_walk(plan, rng.uniform(2.0, 4.0)) for _ in range(20_000)]
    lag = statistics.fmean(w[0] for w in walks)
    polls = statistics.fmean(w[1] for w in walks)
    assert lag <= target * 1.08  # the window is estimated from a sample, hence a little slack

    # Even spacing with the same target (gap = 2 × lag), ending where the plan ends.
    gap = 2 * target
    count = int((plan.window_end - 2.0) / gap + 0.999)
    even = PollPlan(offsets=tuple(plan.window_end - gap * i for i in range(count, -1, -1)
                                  if plan.window_end - gap * i > 2.0), tail_first=gap)
    even_walks = [_walk(even, rng.uniform(2.0, 4.0)) for _ in range(20_000)]
    assert statistics.fmean(w[1] for w in even_walks) > polls
    assert statistics.fmean(w[0] for w in even_walks) >= lag * 0.95


def test_stragglers_are_asked_soon_then_ever_more_gently() -> None:
    plan = PollPlan.learn(_uniform_history(200), target_lag=0.18)
    at, gaps = plan.window_end, []
    for stragglers in range(1, 15):
        following = plan.next_poll(at, stragglers - 1)
        gaps.append(following - at)
        at = following
    assert gaps[0] <= 0.18
    assert gaps == sorted(gaps)
    assert max(gaps) == plan.straggler_max


def test_without_history_it_polls_at_an_even_moderate_pace() -> None:
    plan = PollPlan.learn([4.0, 5.0], default_expected=20.0)
    gaps = {round(b - a, 6) for a, b in zip(plan.offsets, plan.offsets[1:], strict=False)}
    assert gaps == {0.5}
    assert plan.first_poll() == 1.0
    assert plan.window_end >= 39.0


def test_identical_past_durations_get_one_poll_at_that_time() -> None:
    assert PollPlan.learn([3.0] * 10).offsets == (3.0,)
    assert PollPlan.learn([0.0] * 10).offsets == (0.0,)


def test_one_outlier_does_not_stretch_the_window() -> None:
    history = [*_uniform_history(199), 600.0]
    assert PollPlan.learn(history).window_end < 4.2


def test_default_lag_grows_with_the_task_time_so_long_tasks_are_not_hammered() -> None:
    short = _uniform_history(200, 2.0, 4.0)
    long = _uniform_history(200, 20.0, 40.0)
    assert PollPlan.automatic_lag(short) == pytest.approx(0.18)
    assert PollPlan.automatic_lag(long) == pytest.approx(0.02 * statistics.median(long))
    rng = random.Random(3)
    walks = [_walk(PollPlan.learn(long), rng.uniform(20.0, 40.0)) for _ in range(5_000)]
    assert statistics.fmean(w[1] for w in walks) < 15  # the SDK would poll ~30 times
    assert statistics.fmean(w[0] for w in walks) <= 0.02 * 30 * 1.1


@pytest.mark.parametrize("target", [0.05, 0.18, 0.5])
def test_no_planned_gap_is_narrower_than_fifty_milliseconds(target: float) -> None:
    plan = PollPlan.learn(_uniform_history(200, 10.0, 20.0), target_lag=target)
    gaps = [b - a for a, b in zip(plan.offsets, plan.offsets[1:], strict=False)]
    assert min(gaps) >= 0.05 - 1e-9
