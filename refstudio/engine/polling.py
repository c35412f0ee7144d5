"""When to ask a task whether it is done.

The official SDK asks every 1.0 s from the start, forever. Here each task's polls follow what
this library has seen before. Past task times give a window ``[low, high]`` (their 2nd and 98th
percentiles, widened a little for a short history) in which a task almost surely finishes;
nothing is asked before it.

Inside the window the polls are placed to spend as few requests as possible for a mean detection
lag of ``target_lag``. A task that finishes in the interval before poll ``j`` pays for ``j``
polls, so early polls are paid by nearly every task and late ones by few: the cheapest schedule
for a given lag has long gaps early and short gaps late. Modelling finish times as uniform over
the window, the optimum (minimise lag + λ·polls; the Lagrange condition is linear in the
poll index) has gaps that shrink by a constant step,

    gap_j = δ · (k + θ − j),   j = 1 … k,   the last poll exactly at ``high``,

and :func:`_solve` picks ``k`` and ``θ`` so the model's mean lag meets the target with the fewest
expected polls. Compared with evenly spaced polls at the same lag this saves about a tenth of the
polls, and it ends the window with its densest polls, where the slowest task of a batch (the one
that decides when a batch is done) finishes.

A task still running at ``high`` is a straggler, which past tasks say is rare and usually just
late: it is asked again soon, then ever more gently (×1.5 per poll, at most every 5 s). One loop
serves every task in flight (see :class:`refstudio.engine.core.Engine`), and an overall deadline
applies there.
"""

from __future__ import annotations

import bisect
import functools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

__all__ = ["PollPlan"]

#: Gaps below this are not worth a request (a poll's own round trip is a few milliseconds).
MIN_GAP = 0.02
#: The smallest gap a learned plan keeps: the model's last gaps shrink towards zero, but the
#: window's end is itself an estimate, so crowding polls against it buys nothing real.
MIN_PLANNED_GAP = 0.05
#: The default mean detection lag for short tasks (see :meth:`PollPlan.automatic_lag`).
DEFAULT_MIN_LAG = 0.18


@dataclass(frozen=True)
class PollPlan:
    """A polling schedule: poll times (seconds after submit), then a straggler backoff."""

    offsets: tuple[float, ...]  # planned polls, increasing; the last one closes the window
    tail_first: float  # first gap after the window
    tail_growth: float = 1.5
    straggler_max: float = 5.0  # longest gap after the window

    #: Past durations needed before they are trusted over ``default_expected``.
    MIN_HISTORY: ClassVar[int] = 3

    @property
    def window_end(self) -> float:
        """Past this many seconds after submit a task that is still running is a straggler."""
        return self.offsets[-1]

    @staticmethod
    def automatic_lag(durations: Sequence[float]) -> float:
        """The default mean lag: 2 % of the typical task time, never under 0.18 s.

        A fixed lag would poll a 20 s task two dozen times to notice it 0.18 s sooner, which
        nobody waiting 20 s can tell apart from 0.4 s; a 3 s task gets the 0.18 s floor.
        """
        typical = statistics.median(durations) if durations else 0.0
        return max(DEFAULT_MIN_LAG, 0.02 * typical)

    @classmethod
    def learn(
        cls,
        durations: Sequence[float],
        *,
        target_lag: float | None = None,
        default_expected: float = 20.0,
    ) -> PollPlan:
        """Build a plan from past durations; with fewer than :attr:`MIN_HISTORY`, assume
        ``default_expected``.

        ``target_lag`` is the mean delay between a task finishing and us noticing it, for tasks
        that finish inside the learned window; None picks :meth:`automatic_lag`.
        """
        if target_lag is None:
            target_lag = cls.automatic_lag(durations)
        target_lag = max(MIN_GAP, target_lag)
        if len(durations) < cls.MIN_HISTORY:
            # No history yet: start early and poll at a moderate, even pace until we learn
            # (the plan is rebuilt as tasks finish, and tasks in flight adopt it).
            gap = max(0.5, 2 * target_lag)
            start = min(1.0, default_expected / 4)
            count = int((default_expected * 2 - start) / gap) + 1
            return cls(offsets=tuple(round(start + i * gap, 6) for i in range(count)),
                       tail_first=gap)
        ordered = sorted(durations)
        q = statistics.quantiles(ordered, n=50, method="inclusive")
        low, high = q[0], q[-1]  # 2nd and 98th percentiles
        # A sample's range understates the true one (by about width/n at each end for uniform
        # times); widening by that keeps a short history from calling many tasks stragglers.
        margin = (high - low) / len(ordered)
        low, high = max(0.0, low - margin), max(0.0, high + margin)
        gaps = _solve(round(high - low, 3), round(target_lag, 3))
        offsets, at = [], low
        for gap in gaps:
            at += gap
            offsets.append(round(at, 6))
        offsets[-1] = high  # exactly, whatever the rounding did
        return cls(offsets=tuple(offsets), tail_first=max(MIN_GAP, min(gaps[-1], target_lag)))

    def first_poll(self) -> float:
        """Seconds after submit of a task's first poll."""
        return self.offsets[0]

    def next_poll(self, elapsed: float, straggler_polls: int) -> float:
        """Seconds after submit of the poll that follows one made ``elapsed`` seconds in.

        Polls sit on the planned offsets, not a gap after the previous answer, so round trips
        do not stretch the schedule. ``straggler_polls`` counts polls already made past the
        window.
        """
        index = bisect.bisect_right(self.offsets, elapsed + MIN_GAP / 2)
        if index < len(self.offsets):
            return self.offsets[index]
        gap = self.tail_first * self.tail_growth ** straggler_polls
        return max(elapsed, self.window_end) + min(self.straggler_max, gap)


@functools.lru_cache(maxsize=256)
def _solve(width: float, target_lag: float) -> tuple[float, ...]:
    """Gaps (seconds) of the cheapest schedule over a window of ``width`` whose mean detection
    lag, for finish times uniform over the window, is at most ``target_lag``.

    For ``k`` gaps proportional to ``m_i = θ + i`` (i = k−1 … 0, so they shrink), the model's
    mean lag is ``W·Σm² / (2·(Σm)²)`` and its expected poll count ``Σ j·m_j / Σm``; both have
    closed forms. θ → 0 gives the steepest (triangular) schedule, θ → ∞ even spacing.
    """
    if width <= 2 * target_lag or width <= MIN_GAP:
        return (width,)  # one poll at the end of the window meets the target already
    best: tuple[float, int, float] | None = None  # (expected polls, k, theta)
    # Even spacing needs k = W / (2·lag) gaps; the triangular schedule about 2W / (3·lag).
    k_low = max(1, int(width / (2 * target_lag)))
    k_high = int(2 * width / (3 * target_lag)) + 3
    for k in range(k_low, k_high + 1):
        if _lag(width, k, 0.0) <= target_lag:
            theta = 0.0
        elif _lag(width, k, 1e6) > target_lag:
            continue  # even spacing with k gaps is not dense enough
        else:
            # Lag falls as theta grows; bisect on u = θ/(1+θ) in [0, 1) for lag == target.
            lo, hi = 0.0, 1.0 - 1e-9
            for _ in range(50):
                mid = (lo + hi) / 2
                if _lag(width, k, mid / (1 - mid)) > target_lag:
                    lo = mid
                else:
                    hi = mid
            theta = hi / (1 - hi)
        # The last gap is width·θ/Σm; keep it at least MIN_PLANNED_GAP (a larger θ only
        # lowers the lag, so the target still holds).
        if k > 1:
            room = width - k * MIN_PLANNED_GAP
            if room <= 0:
                continue
            theta = max(theta, MIN_PLANNED_GAP * k * (k - 1) / (2 * room))
        polls = _polls(k, theta)
        if best is None or polls < best[0] - 1e-9:
            best = (polls, k, theta)
    if best is None:  # a window too narrow for gaps of MIN_PLANNED_GAP: one poll at its end
        return (width,)
    _, k, theta = best
    weights = [theta + i for i in range(k - 1, -1, -1)]
    total = sum(weights)
    if total <= 0:  # theta == 0 and k == 1
        return (width,)
    gaps = [width * w / total for w in weights]
    # A zero last gap (theta == 0) would be a second poll at the same instant: merge it.
    return tuple(g for g in gaps if g > 1e-9)


def _sums(k: int, theta: float) -> tuple[float, float, float]:
    """Σm, Σm² and Σ j·m_j for m_j = θ + (k − j), j = 1 … k."""
    s1 = k * theta + k * (k - 1) / 2
    s2 = k * theta**2 + theta * k * (k - 1) + (k - 1) * k * (2 * k - 1) / 6
    sj = theta * k * (k + 1) / 2 + k * k * (k - 1) / 2 - (k - 1) * k * (2 * k - 1) / 6
    return s1, s2, sj


def _lag(width: float, k: int, theta: float) -> float:
    s1, s2, _ = _sums(k, theta)
    return width * s2 / (2 * s1 * s1) if s1 > 0 else width / 2


def _polls(k: int, theta: float) -> float:
    s1, _, sj = _sums(k, theta)
    return sj / s1 if s1 > 0 else 1.0
