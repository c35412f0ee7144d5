"""What the simulated Runway organisation remembers: credits, per-model slots and daily usage,
upload tickets and ``runway://`` URIs. Tasks themselves live in the shared
:class:`~refstudio.simulator.state.SimState`, so stats, outputs and detection lags are counted
the same way for both protocols.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from refstudio.models import runway_api
from refstudio.simulator.state import SimState, Task

__all__ = ["DAY", "RunwayBook"]

#: Runway counts daily generations over the past day (a rolling window).
DAY = 24 * 3600.0


class RunwayBook:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.config = state.config
        self._lock = threading.Lock()
        self.credits = self.config.runway_credits
        self._slots: dict[str, list[float]] = {}
        self._created: dict[str, collections.deque[float]] = {}
        #: upload token -> (runway URI, the form fields it was issued with)
        self._tickets: dict[str, tuple[str, dict[str, str]]] = {}
        #: runway URI -> when it expires (epoch seconds); set once the file arrived
        self._uris: dict[str, float] = {}

    # ---- limits ---------------------------------------------------------------------------
    def limits(self, model: runway_api.RunwayModel) -> tuple[int, int]:
        """(tasks at once, generations per day) of the organisation's tier for ``model``."""
        concurrency, daily = model.tier1
        if self.config.runway_concurrency is not None:
            concurrency = self.config.runway_concurrency
        if self.config.runway_daily_limit is not None:
            daily = self.config.runway_daily_limit
        return concurrency, daily

    def _window(self, model: str, now: float) -> collections.deque[float]:
        created = self._created.setdefault(model, collections.deque())
        while created and now - created[0] >= DAY:
            created.popleft()
        return created

    def daily_used(self, model: str, now: float | None = None) -> int:
        with self._lock:
            return len(self._window(model, time.time() if now is None else now))

    def daily_full(self, model: runway_api.RunwayModel, now: float) -> float | None:
        """Seconds until the day's window frees a generation, or None when there is room."""
        _, daily = self.limits(model)
        with self._lock:
            created = self._window(model.api_name, now)
            if len(created) < daily:
                return None
            return max(1.0, created[0] + DAY - now) if created else DAY

    # ---- tasks ----------------------------------------------------------------------------
    def next_failure(self) -> str | None:
        """The failure code the next task ends with (a staged one first), or None."""
        with self.state._lock:
            if self.config.runway_task_faults:
                fault = self.config.runway_task_faults.pop(0)
                return None if fault == "ok" else fault
        return None

    def create(self, params: dict[str, Any], outcome: str = "ok") -> Task:
        """Accept a validated create: credits are spent, the day's count grows, the task
        waits as THROTTLED when the model's slots are busy."""
        model: runway_api.RunwayModel = params["model"]
        credits = runway_api.credits_for(model, params["ratio"])
        failure = self.next_failure()
        task_id, duration, fails, seed = self.state.roll_task(params["seed"])
        if failure is None and fails:
            failure = self.config.runway_fail_code
        now = time.time()
        task = Task(
            id=str(uuid.UUID(hex=task_id)),
            prompt=params["prompt"],
            model=model.api_name,
            size=runway_api.ratio_size(params["ratio"]),
            reference_images=list(params["references"]),
            seed=seed,
            base64_output=False,
            created_at=now,
            # A failure is found out early, as moderation of the input is.
            duration=duration if failure is None else min(duration, 0.5),
            fails=failure is not None,
            submit_outcome=outcome,
            input={"model": model.api_name, "ratio": params["ratio"], "tags": params["tags"]},
            protocol="runway",
            failure_code=failure,
            credits=credits,
        )
        concurrency, _ = self.limits(model)
        with self._lock:
            self.credits -= credits
            self._window(model.api_name, now).append(now)
            slots = self._slots.setdefault(model.api_name, [])
        self.state.admit(task, slots, concurrency)
        return task

    def cancel(self, task: Task) -> None:
        with self.state._lock:
            if task.cancelled_at is None:
                task.cancelled_at = time.time()

    def task_json(self, task: Task, *, seen: bool = True) -> dict[str, Any]:
        """``GET /v1/tasks/{id}`` for ``task`` now; ``seen`` marks the client as told."""
        now = time.time()
        status = task.status_at(now)
        data: dict[str, Any] = {"id": task.id, "createdAt": _iso(task.created_at)}
        if status in ("completed", "failed", "cancelled"):
            if seen and status != "cancelled":
                self.state.mark_seen(task, now)
            refunded = status == "cancelled" or (
                status == "failed" and not (task.failure_code or "").startswith("SAFETY.INPUT"))
            data["cost"] = {"credits": 0 if refunded else task.credits}
        else:
            data["estimatedCost"] = {"credits": task.credits}
        if status == "created":
            queued = task.started_at is not None and now < task.started_at
            data["status"] = "THROTTLED" if queued else "PENDING"
        elif status == "processing":
            start = task.started_at or task.created_at
            progress = 0.0 if task.duration <= 0 else (now - start) / task.duration
            data["status"] = "RUNNING"
            data["progress"] = round(min(0.99, max(0.0, progress)), 2)
        elif status == "completed":
            data["status"] = "SUCCEEDED"
            data["output"] = [f"{self.state.base_url}/_sim/outputs/{task.id}/0.png"]
        elif status == "failed":
            data["status"] = "FAILED"
            data["failureCode"] = task.failure_code
            data["failure"] = _FAILURE_TEXT.get((task.failure_code or "").split(".")[0],
                                                "The task failed.")
        else:
            data["status"] = "CANCELLED"
        return data

    # ---- uploads --------------------------------------------------------------------------
    def open_upload(self, filename: str) -> tuple[str, str, dict[str, str]]:
        """A presigned form for one file: (token, runway URI, the fields to post back)."""
        token = uuid.uuid4().hex
        ext = filename.rsplit(".", 1)[-1].lower()
        uri = f"runway://sim/{token}.{ext}"
        fields = {"key": f"uploads/{token}/{filename}", "policy": uuid.uuid4().hex,
                  "x-amz-algorithm": "AWS4-HMAC-SHA256", "x-amz-signature": uuid.uuid4().hex}
        with self._lock:
            self._tickets[token] = (uri, fields)
        return token, uri, fields

    def ticket(self, token: str) -> tuple[str, dict[str, str]] | None:
        with self._lock:
            return self._tickets.get(token)

    def complete_upload(self, token: str, data: bytes, content_type: str) -> None:
        with self._lock:
            uri, _ = self._tickets.pop(token)
            self._uris[uri] = time.time() + self.config.runway_upload_ttl
        self.state.store_upload(uri.rsplit("/", 1)[-1], data, content_type)

    def known_upload(self, uri: str) -> bool:
        with self._lock:
            expires = self._uris.get(uri)
        return expires is not None and time.time() < expires

    # ---- organisation ---------------------------------------------------------------------
    def organization(self) -> dict[str, Any]:
        now = time.time()
        tier: dict[str, Any] = {}
        usage: dict[str, Any] = {}
        for name, model in runway_api.MODELS.items():
            concurrency, daily = self.limits(model)
            tier[name] = {"maxConcurrentGenerations": concurrency, "maxDailyGenerations": daily}
            usage[name] = {"dailyGenerations": self.daily_used(name, now)}
        with self._lock:
            credits = self.credits
        return {"creditBalance": credits,
                "tier": {"maxMonthlyCreditSpend": 100_000, "models": tier},
                "usage": {"models": usage}}


_FAILURE_TEXT = {
    "SAFETY": "The input or output was flagged by content moderation.",
    "INTERNAL": "The model could not produce a usable output.",
    "ASSET": "An input asset could not be read.",
}


def _iso(epoch: float) -> str:
    return (datetime.fromtimestamp(epoch, tz=timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"))
