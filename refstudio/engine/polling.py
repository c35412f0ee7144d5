"""When to ask a task whether it is done.

The official SDK asks every 1.0 s from the start, forever. Here each task's polls follow what
this library has seen before: nothing until the earliest plausible finish, dense polling through
the window where past tasks finished (so completion is noticed within ``target_lag`` on average),
then a gentle backoff for stragglers, and an overall deadline. One loop serves every task in
flight (see :class:`refstudio.engine.core.Engine`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PollPlan:
    """A polling schedule derived from past task durations (seconds)."""

    window_start: float  # earliest plausible finish
    window_end: float  # by now nearly every past task had finished
    dense_interval: float  # spacing inside the window
    straggler_max: float = 5.0  # longest gap after the window

    @classmethod
    def learn(
        cls,
        durations: Sequence[float],
        *,
        target_lag: float = 0.15,
        default_expected: float = 20.0,
    ) -> PollPlan:
        """Build a plan from past durations; with fewer than 3, assume ``default_expected``.

        ``target_lag`` is the mean delay between a task finishing and us noticing; polls inside
        the window are spaced twice that.
        """
        dense = max(0.05, 2 * target_lag)
        if len(durations) < 3:
            # No history yet: start early and poll at a moderate pace until we learn.
            return cls(window_start=min(1.0, default_expected / 4), window_end=default_expected * 2,
                       dense_interval=max(dense, 0.5))
        ordered = sorted(durations)
        q = statistics.quantiles(ordered, n=50, method="inclusive")
        low, high = q[0], q[-1]  # 2nd and 98th percentiles
        spread = max(ordered[-1] - ordered[0], 0.1)
        # First poll one interval after the earliest plausible finish: a poll at or before it
        # finds (almost) nothing done and only costs a request. A window narrower than one
        # interval gets a single poll at its end.
        return cls(
            window_start=max(0.0, min(low + dense, high)),
            # A quarter of the spread past the last finish seen: a small history rarely holds
            # the slowest task yet, and the slowest task decides when a batch is done.
            window_end=high + 0.25 * spread,
            dense_interval=dense,
        )

    def first_delay(self, elapsed: float) -> float:
        """Seconds from now to a task's first poll: at the earliest plausible finish (at once
        for a task that is already past it, e.g. one picked up by resume)."""
        return max(0.0, self.window_start - elapsed)

    def next_delay(self, elapsed: float, straggler_polls: int) -> float:
        """Seconds from now to the next poll, given time since submit and polls past the window.

        Inside the window polls sit on a fixed grid (``window_start + k * dense_interval`` after
        submit) rather than one interval after the previous answer, so the round trip of each
        poll does not stretch the spacing (which would raise the detection lag).
        """
        if elapsed < self.window_start:
            return self.window_start - elapsed
        if elapsed < self.window_end:
            dense = self.dense_interval
            steps = math.floor((elapsed - self.window_start) / dense) + 1
            delay = self.window_start + steps * dense - elapsed
            # Never closer than half an interval to the previous poll (a late answer).
            return delay if delay >= dense / 2 else delay + dense
        # Back off gently: stragglers are usually just past the window, not minutes late.
        return min(self.straggler_max, self.dense_interval * 1.5 ** (straggler_polls + 1))
