"""Backoff with jitter, and a gate every request passes so one 429 slows everyone down."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, capped; ``retry_after`` from the server wins."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    max_attempts: int = 6

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before attempt number ``attempt + 1`` (``attempt`` counts from 1)."""
        ceiling = min(self.cap, self.base * self.factor ** (attempt - 1))
        jittered = (rng or random).uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            return max(retry_after, jittered if retry_after <= 0 else retry_after)
        return jittered


class RateGate:
    """Shared by all requests to one provider: after a 429, nobody sends until it has passed.

    Without it, fifty tasks each backing off on their own keep hammering an account that is
    already over its limit, and each extra 429 pushes the next accepted request further out.
    """

    def __init__(self) -> None:
        self._open_at = 0.0
        self._lock = threading.Lock()  # one account's gate is shared by engines in any thread

    def close_for(self, seconds: float) -> None:
        """Hold every request for ``seconds`` (extends, never shortens, an existing hold)."""
        until = time.monotonic() + max(0.0, seconds)
        with self._lock:
            self._open_at = max(self._open_at, until)

    async def wait(self) -> None:
        while True:
            remaining = self._open_at - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining)
