"""The simulator's memory: configuration, tasks, uploads, fault dice and statistics.

Kept apart from the HTTP layer so the rules (what a task's status is at a given instant, what
counts as a detection lag) read without socket code around them. All methods are thread-safe:
the HTTP server runs one thread per connection.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import heapq
import math
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

from refstudio.models import catalog
from refstudio.providers.offline.previews import encode_png, following_size, render_preview
from refstudio.simulator.prerender import PreRenderer

__all__ = ["SimState", "SimulatorConfig", "Task", "sha256_name"]


@dataclass
class SimulatorConfig:
    """How the simulated WaveSpeed server behaves.

    ``latency``/``jitter``: a task takes ``max(0, latency ± uniform(jitter))`` seconds.
    ``fail_rate``: chance a task ends ``failed``. ``rate_429``/``rate_5xx``/``drop_rate``: chance
    per request (submits and polls) of a 429, a 5xx, or a connection closed without an answer.
    ``key``: the one accepted Bearer token; None accepts any non-empty token. ``seed``: seeds
    the fault dice, task timings and random image seeds, for reproducible runs.
    ``rate_per_minute``: submits accepted per trailing 60 s, like the account limit.
    ``rate_lost``: chance a submit is answered 502/504 although no task was created (what a
    gateway says when the service behind it never got the request): ambiguous to the client,
    and only the history endpoint can tell it apart from a 5xx after creation.
    ``submit_faults``: faults for the next submits, in order, before any dice are rolled
    (one of :data:`SUBMIT_FAULTS` each), so a test can stage exactly the case it checks.
    ``history_input``: history items carry the request they were made from (``input``). The
    documented history does not show it; webhooks do. Clients must work either way.
    ``account_concurrency``: tasks the account runs at once, like WaveSpeed's account levels (the
    default level runs 2); later tasks are accepted and wait in a queue, as ``created``, for a
    free slot. None: no limit. Either way the stats report the most tasks a client had in flight
    at once (``max_tasks_in_flight``: accepted, queued or running, not yet finished).
    """

    host: str = "127.0.0.1"
    port: int = 0
    latency: float = 3.0
    jitter: float = 1.0
    fail_rate: float = 0.0
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    drop_rate: float = 0.0
    key: str | None = None
    seed: int | None = None
    retry_after: float = 1.0
    rate_per_minute: int | None = None
    account_concurrency: int | None = None
    #: How long a sync-mode POST is held before answering "Sync mode timed out".
    sync_timeout: float = 60.0
    #: Log every request to stderr (the CLI turns it on; tests keep it quiet).
    verbose: bool = False
    rate_lost: float = 0.0
    submit_faults: list[str] = field(default_factory=list)
    history_input: bool = False
    #: Runway's protocol (``/v1/...``, :mod:`refstudio.simulator.runway`): tasks each model
    #: runs at once before later ones wait as THROTTLED, generations per model per rolling day
    #: before a create answers 429, and the organisation's credits. None: the model's tier-1
    #: figures (:mod:`refstudio.models.runway_api`).
    runway_concurrency: int | None = None
    runway_daily_limit: int | None = None
    runway_credits: int = 100_000
    #: How the next Runway tasks end, in order, before any dice: "ok", or a failure code such
    #: as ``SAFETY.INPUT.TEXT`` (the task ends FAILED with it).
    runway_task_faults: list[str] = field(default_factory=list)
    #: The failure code of a task the ``fail_rate`` dice fail.
    runway_fail_code: str = "INTERNAL.BAD_OUTPUT.CODE01"
    #: How long a ``runway://`` upload stays usable (Runway: about 24 hours).
    runway_upload_ttl: float = 24 * 3600.0
    #: US dollars on the account at start (``GET /api/v3/balance``); each task created costs
    #: its model's price.
    balance: float = 10.0
    #: Publish a catalog that has drifted from refstudio's built-in descriptions (one field
    #: added, one removed, one range changed, one model gone, one new): what `models sync`
    #: must notice. Submits are still checked against the built-in schemas.
    catalog_drift: bool = False
    #: Outputs are flat images of the task's size in a colour drawn from its seed (~2 ms each)
    #: instead of previews drawn from the prompt and references (~45 ms of Pillow work per
    #: 720p image). For benchmarks of the client (``benchmarks/bench_database.py``), where the
    #: simulator's drawing would otherwise be what is measured.
    plain_outputs: bool = False

    def __post_init__(self) -> None:
        # Fail at construction (e.g. a CLI flag typo), not with odd behaviour mid-run.
        for name in ("fail_rate", "rate_429", "rate_5xx", "drop_rate", "rate_lost"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        for name in ("latency", "jitter", "retry_after", "sync_timeout"):
            if not getattr(self, name) >= 0:  # NaN too: it would make every timing NaN
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if isinstance(self.port, bool) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535 (0: any free port), got "
                             f"{self.port}")
        if self.account_concurrency is not None and self.account_concurrency < 1:
            raise ValueError(
                f"account_concurrency must be at least 1, got {self.account_concurrency}"
            )
        if not self.balance >= 0:
            raise ValueError(f"balance must be 0 or more, got {self.balance}")
        if self.rate_per_minute is not None and self.rate_per_minute < 0:
            raise ValueError(f"rate_per_minute must not be negative, got {self.rate_per_minute}")
        for name in ("runway_concurrency", "runway_daily_limit"):
            value = getattr(self, name)
            if value is not None and value < (1 if name == "runway_concurrency" else 0):
                raise ValueError(f"{name} must be at least "
                                 f"{1 if name == 'runway_concurrency' else 0}, got {value}")
        if self.runway_credits < 0:
            raise ValueError(f"runway_credits must not be negative, got {self.runway_credits}")
        if self.key is not None and not self.key.strip():
            raise ValueError("key must be a non-empty token (or None: accept any)")
        for fault in self.submit_faults:
            if fault not in SUBMIT_FAULTS:
                raise ValueError(f"unknown submit fault {fault!r}; one of {SUBMIT_FAULTS}")


#: Staged submit outcomes (``SimulatorConfig.submit_faults``): ``ok``; ``429``/``503`` (not
#: accepted); ``500_after``/``drop_after`` (the task is created, then the answer is a 500 or
#: a dropped connection); ``502_lost``/``drop_lost`` (no task, answered 502 or dropped).
SUBMIT_FAULTS = ("ok", "429", "503", "500_after", "drop_after", "502_lost", "drop_lost")

#: How far back the history endpoint lists tasks, like the real service.
HISTORY_RETENTION = 7 * 24 * 3600.0


@dataclass
class Task:
    """One accepted generation. Its status is a function of the clock, not of a worker."""

    id: str
    prompt: str
    #: The WaveSpeed model path it was submitted to (``runwayml/gen4-image``).
    model: str
    #: (width, height) of its output; None when the output follows the first input image.
    size: tuple[int, int] | None
    reference_images: list[str]
    seed: int
    base64_output: bool
    created_at: float  # epoch seconds
    duration: float  # seconds from the start of its run to the terminal state
    fails: bool
    #: How the submit was answered: "ok", "5xx" (ambiguous error after acceptance), "dropped".
    submit_outcome: str = "ok"
    #: The request as the server recorded it (validated, defaults filled in).
    input: dict[str, Any] = field(default_factory=dict)
    polls: int = 0
    first_seen_completed_at: float | None = None
    #: False once stats were reset: the task still answers polls but leaves the stats.
    tracked: bool = True
    render_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: When the account had a free slot for it (epoch seconds); None: at once (created_at).
    started_at: float | None = None
    #: Which protocol created it ("wavespeed" or "runway") and, for Runway, its failure code
    #: (set: the task fails with it), credits and when it was cancelled.
    protocol: str = "wavespeed"
    failure_code: str | None = None
    credits: int = 0
    cancelled_at: float | None = None

    @property
    def completed_at(self) -> float:
        return (self.created_at if self.started_at is None else self.started_at) + self.duration

    def status_at(self, now: float) -> str:
        """created (queued) → processing → completed|failed, by elapsed time."""
        if self.cancelled_at is not None and now >= self.cancelled_at:
            return "cancelled"
        start = self.created_at if self.started_at is None else self.started_at
        elapsed = now - start
        if elapsed >= self.duration:
            return "failed" if self.fails else "completed"
        # A short "created" phase, like a queue, so clients meet all three states.
        return "created" if elapsed < min(0.25, self.duration * 0.1) else "processing"


class SimState:
    """Everything the server remembers. ``base_url`` is set once the socket is bound."""

    #: Bytes of rendered PNGs kept in memory (a few hundred images); older ones are rendered
    #: again on demand, identically (rendering is deterministic).
    PNG_CACHE_BYTES = 96 * 1024 * 1024

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.base_url = ""
        self._lock = threading.RLock()
        self._rng = random.Random(config.seed)
        self._tasks: dict[str, Task] = {}
        self._uploads: dict[str, tuple[bytes, str]] = {}  # name -> (bytes, content type)
        self._tickets: dict[str, tuple[str, str]] = {}  # token -> (upload name, content type)
        self._pngs: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._png_bytes = 0
        self._prerender = PreRenderer(self._render_task)
        self._accepted_times: collections.deque[float] = collections.deque()
        #: When each of the account's task slots is next free (epoch seconds; a min-heap).
        self._slots_free: list[float] = []
        #: Ends (epoch seconds) of tasks accepted and not yet finished, to count those in flight.
        self._unfinished: list[float] = []
        self._spent = 0.0
        self._requests_now = 0
        self._connections_now = 0
        self._counters: dict[str, int] = {}
        self._reset_counters()

    # ---- dice -----------------------------------------------------------------------------
    def chance(self, probability: float) -> bool:
        """Roll the seeded dice (one shared generator keeps a seeded run reproducible)."""
        if probability <= 0:
            return False
        with self._lock:
            return self._rng.random() < probability

    def choice(self, options: tuple[int, ...]) -> int:
        with self._lock:
            return self._rng.choice(options)

    # ---- counters -------------------------------------------------------------------------
    def _reset_counters(self) -> None:
        self._counters = dict.fromkeys(
            (
                "submits_received",
                "submits_accepted",
                "submits_rejected_429",
                "submits_rejected_400",
                "submits_rejected_401",
                "submits_5xx_accepted",
                "submits_5xx_not_accepted",
                "submits_dropped_accepted",
                "submits_lost",
                "history_requests",
                "history_faulted",
                "polls",
                "polls_faulted",
                "requests",
                "cancels",
                "submits_rejected_daily_limit",
                "uploads",
                "downloads",
                "upload_fetches",
                "external_references",
                "max_tasks_in_flight",
                "max_requests_in_progress",
                "max_open_connections",
            ),
            0,
        )

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def request_started(self) -> None:
        with self._lock:
            self._requests_now += 1
            if self._requests_now > self._counters["max_requests_in_progress"]:
                self._counters["max_requests_in_progress"] = self._requests_now

    def request_ended(self) -> None:
        with self._lock:
            self._requests_now -= 1

    def connection_opened(self) -> None:
        with self._lock:
            self._connections_now += 1
            if self._connections_now > self._counters["max_open_connections"]:
                self._counters["max_open_connections"] = self._connections_now

    def connection_closed(self) -> None:
        with self._lock:
            self._connections_now -= 1

    # ---- account rate limit ---------------------------------------------------------------
    def rate_limited(self) -> float | None:
        """Seconds until a submit would fit the per-minute budget, or None if it fits now."""
        limit = self.config.rate_per_minute
        if limit is None:
            return None
        now = time.monotonic()
        with self._lock:
            while self._accepted_times and now - self._accepted_times[0] >= 60.0:
                self._accepted_times.popleft()
            if len(self._accepted_times) < limit:
                return None
            if limit <= 0:
                return 60.0
            return max(0.0, 60.0 - (now - self._accepted_times[0]))

    # ---- tasks ----------------------------------------------------------------------------
    def create_task(self, params: dict[str, Any], outcome: str = "ok") -> Task:
        """Accept a validated submit: the task exists (and would be billed) from here on."""
        with self._lock:
            task_id, duration, fails, seed = self.roll_task(params["seed"])
            task = Task(
                id=task_id,
                prompt=params["prompt"],
                model=params["model"],
                size=_output_size(params["model"], params["input"]),
                reference_images=params["references"],
                seed=seed,
                base64_output=params["enable_base64_output"],
                created_at=time.time(),
                duration=duration,
                fails=fails,
                submit_outcome=outcome,
                input={k: v for k, v in params["input"].items() if v is not None},
            )
            self.admit(task, self._slots_free, self.config.account_concurrency)
            self._spent += _price(params["model"], params["input"])
        return task

    def roll_task(self, seed: int | None) -> tuple[str, float, bool, int]:
        """A new task's id, how long it runs, whether the ``fail_rate`` dice fail it, and its
        seed (``seed``, else a random one). Drawn in one order so seeded runs repeat."""
        cfg = self.config
        with self._lock:
            duration = max(0.0, cfg.latency + self._rng.uniform(-cfg.jitter, cfg.jitter))
            fails = cfg.fail_rate > 0 and self._rng.random() < cfg.fail_rate
            if seed is None:
                seed = self._rng.randint(1, 2_147_483_647)
            task_id = (uuid.UUID(int=self._rng.getrandbits(128), version=4).hex
                       if cfg.seed is not None else uuid.uuid4().hex)
        return task_id, duration, fails, seed

    def admit(self, task: Task, slots: list[float], limit: int | None) -> None:
        """Keep an accepted task: it waits for one of ``limit`` slots (a heap of when each is
        next free; None: no limit), is pre-rendered, and counts in the stats."""
        with self._lock:
            self._start_when_free(task, slots, limit)
            self._tasks[task.id] = task
            if not task.fails:
                self._prerender.schedule(task.id, task.completed_at)
            self._accepted_times.append(time.monotonic())
            self._counters["submits_accepted"] += 1
            if task.submit_outcome == "5xx":
                self._counters["submits_5xx_accepted"] += 1
            elif task.submit_outcome == "dropped":
                self._counters["submits_dropped_accepted"] += 1
            for url in task.reference_images:
                if self._own_upload(url) is None:
                    self._counters["external_references"] += 1

    def balance(self) -> float:
        """US dollars left: the configured balance less the price of every task created."""
        with self._lock:
            return self.config.balance - self._spent

    def catalog(self) -> list[dict[str, Any]]:
        """``GET /api/v3/models``: the WaveSpeed models of refstudio's catalog, as JSON Schemas
        (drifted when ``catalog_drift``)."""
        from refstudio.models.schema import catalog_entry

        entries = [catalog_entry(m) for m in catalog.all_models() if m.provider == "wavespeed"]
        return _drift(entries) if self.config.catalog_drift else entries

    def next_submit_fault(self) -> str | None:
        """The next staged submit fault, if any (consumed)."""
        with self._lock:
            if self.config.submit_faults:
                return self.config.submit_faults.pop(0)
        return None

    def history(
        self,
        *,
        model: str | None,
        status: str | None,
        created_after: float | None,
        created_before: float | None,
        now: float | None = None,
    ) -> list[Task]:
        """Tasks of the last 7 days matching the filters, newest first (the history endpoint)."""
        now = time.time() if now is None else now
        with self._lock:
            tasks = list(self._tasks.values())
        found = [
            t for t in tasks
            if t.protocol == "wavespeed" and now - t.created_at <= HISTORY_RETENTION
            and (model is None or model == t.model)
            and (status is None or t.status_at(now) == status)
            and (created_after is None or t.created_at >= created_after)
            and (created_before is None or t.created_at < created_before)
        ]
        found.sort(key=lambda t: (t.created_at, t.id), reverse=True)
        return found

    def _start_when_free(self, task: Task, slots: list[float], limit: int | None) -> None:
        """Queue ``task`` for the next free one of ``limit`` slots, and count the tasks in
        flight. (A cancelled task keeps its slot until its planned end: a simplification.)"""
        now = task.created_at
        if limit is not None:
            while len(slots) < limit:
                heapq.heappush(slots, 0.0)
            free_at = heapq.heappop(slots)
            if free_at > now:
                task.started_at = free_at
            heapq.heappush(slots, task.completed_at)
        while self._unfinished and self._unfinished[0] <= now:
            heapq.heappop(self._unfinished)
        heapq.heappush(self._unfinished, task.completed_at)
        if len(self._unfinished) > self._counters["max_tasks_in_flight"]:
            self._counters["max_tasks_in_flight"] = len(self._unfinished)

    def get_task(self, task_id: str) -> Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    def note_poll(self, task: Task) -> None:
        with self._lock:
            task.polls += 1

    def task_data(
        self, task: Task, *, now: float | None = None, seen: bool = True
    ) -> dict[str, Any]:
        """The ``data`` object of a result answer; ``seen`` marks the client as informed."""
        now = time.time() if now is None else now
        status = task.status_at(now)
        terminal = status in ("completed", "failed")
        if terminal and seen:
            with self._lock:
                if task.first_seen_completed_at is None:
                    task.first_seen_completed_at = now
        outputs: list[str] = []
        if status == "completed":
            if task.base64_output:
                outputs = [base64.b64encode(self.output_png(task)).decode("ascii")]
            else:
                outputs = [f"{self.base_url}/_sim/outputs/{task.id}/0.png"]
        data: dict[str, Any] = {
            "id": task.id,
            "model": task.model,
            "status": status,
            "outputs": outputs,
            "has_nsfw_contents": [False] * len(outputs),
            "error": "Simulated failure: the model could not render this request"
            if status == "failed"
            else "",
            "created_at": _iso(task.created_at),
            "urls": {"get": f"{self.base_url}/api/v3/predictions/{task.id}/result"},
            "timings": {"inference": round(task.duration * 1000)} if terminal else {},
        }
        return data

    def mark_seen(self, task: Task, now: float) -> None:
        """The client was told the task reached its end (for the detection-lag stats)."""
        with self._lock:
            if task.first_seen_completed_at is None:
                task.first_seen_completed_at = now

    def output_png(self, task: Task) -> bytes:
        """The task's one output, rendered on first use and cached (polls stay cheap)."""
        with self._lock:
            png = self._pngs.get(task.id)
            if png is not None:
                self._pngs.move_to_end(task.id)
                return png
        # One render per task even when many clients ask at once; other tasks render in parallel.
        with task.render_lock:
            with self._lock:
                png = self._pngs.get(task.id)
            if png is None:
                refs = [blob for url in task.reference_images if (blob := self._own_upload(url))]
                width, height = task.size or following_size(refs)
                if self.config.plain_outputs:
                    colour = random.Random(task.seed).getrandbits(24).to_bytes(3, "big")
                    img = Image.new("RGB", (width, height), tuple(colour))
                else:
                    img = render_preview(
                        width=width,
                        height=height,
                        prompt=task.prompt,
                        references=refs,
                        seed=task.seed,
                        label="SIMULATED",
                    )
                png = encode_png(img)
            with self._lock:
                if task.id not in self._pngs:
                    self._pngs[task.id] = png
                    self._png_bytes += len(png)
                self._pngs.move_to_end(task.id)
                while self._png_bytes > self.PNG_CACHE_BYTES and len(self._pngs) > 1:
                    self._png_bytes -= len(self._pngs.popitem(last=False)[1])
        return png

    def _render_task(self, task_id: str) -> None:
        task = self.get_task(task_id)
        if task is not None:
            self.output_png(task)

    def close(self) -> None:
        """Stop background work (the pre-renderer); the state stays readable."""
        self._prerender.stop()

    # ---- uploads --------------------------------------------------------------------------
    def store_upload(self, name: str, data: bytes, content_type: str) -> None:
        with self._lock:
            self._uploads[name] = (data, content_type)
            self._counters["uploads"] += 1

    def get_upload(self, name: str) -> tuple[bytes, str] | None:
        with self._lock:
            return self._uploads.get(name)

    def _own_upload(self, url: str) -> bytes | None:
        """The bytes behind ``url`` if it is one of this simulator's own upload URLs."""
        if url.startswith("runway://"):  # the simulator's Runway uploads: runway://sim/<name>
            found = self.get_upload(url.rsplit("/", 1)[-1])
            return found[0] if found else None
        if url.startswith("data:"):
            return _data_uri_bytes(url)
        parts = urlsplit(url)
        if not parts.path.startswith("/_sim/uploads/"):
            return None
        own = urlsplit(self.base_url)
        if parts.port != own.port:
            return None
        found = self.get_upload(parts.path.rsplit("/", 1)[-1])
        return found[0] if found else None

    def open_ticket(self, ext: str, content_type: str) -> tuple[str, str]:
        """Reserve an upload name for the PUT flow; return (token, name)."""
        token = uuid.uuid4().hex
        name = f"{token}.{ext}"
        with self._lock:
            self._tickets[token] = (name, content_type)
        return token, name

    def close_ticket(self, token: str) -> tuple[str, str] | None:
        with self._lock:
            return self._tickets.pop(token, None)

    # ---- stats ----------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters plus per-task timing, the numbers a client's polling is judged by."""
        now = time.time()
        with self._lock:
            out: dict[str, Any] = dict(self._counters)
            tasks: dict[str, Any] = {}
            lags: list[float] = []
            polls = 0
            for task in self._tasks.values():
                if not task.tracked:
                    continue
                seen = task.first_seen_completed_at
                lag = None if seen is None else max(0.0, seen - task.completed_at)
                if lag is not None:
                    lags.append(lag)
                polls += task.polls
                tasks[task.id] = {
                    "server_time": task.duration,
                    "created_at": task.created_at,
                    "started_at": task.started_at or task.created_at,
                    "completed_at": task.completed_at,
                    "first_seen_completed_at": seen,
                    "detection_lag": lag,
                    "polls": task.polls,
                    "status": task.status_at(now),
                    "submit_outcome": task.submit_outcome,
                    "seed": task.seed,
                    "reference_images": list(task.reference_images),
                }
        out["tasks"] = tasks
        out["mean_detection_lag"] = math.fsum(lags) / len(lags) if lags else None
        out["max_detection_lag"] = max(lags) if lags else None
        out["polls_per_task"] = polls / len(tasks) if tasks else None
        return out

    def reset_stats(self) -> None:
        """Zero the counters and forget tasks for stats (they still answer polls)."""
        with self._lock:
            self._reset_counters()
            # Tasks still running stay in flight for the count: the account is still busy.
            self._counters["max_tasks_in_flight"] = len(
                [end for end in self._unfinished if end > time.time()]
            )
            for task in self._tasks.values():
                task.tracked = False
            self._accepted_times.clear()


def _iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, tz=timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _data_uri_bytes(uri: str) -> bytes | None:
    """The bytes of a base64 ``data:`` URI, or None when it is not one."""
    head, _, payload = uri.partition(",")
    if not head.endswith(";base64"):
        return None
    try:
        return base64.b64decode(payload, validate=True)
    except ValueError:
        return None


def sha256_name(data: bytes, ext: str) -> str:
    """Content-addressed upload name: the same image uploaded twice gets the same URL."""
    return f"{hashlib.sha256(data).hexdigest()}.{ext}"


def _output_size(model: str, body: dict[str, Any]) -> tuple[int, int] | None:
    """What the model returns for this (validated) body; None: it follows the first image."""
    spec = catalog.get(f"wavespeed:{model}")
    options = {k: v for k, v in body.items() if k in spec.options.model_fields}
    return spec.output_size(spec.parse_options(options))



def _price(model: str, body: dict[str, Any]) -> float:
    spec = catalog.get(f"wavespeed:{model}")
    options = {k: v for k, v in body.items() if k in spec.options.model_fields}
    return spec.price_of(spec.parse_options(options))


def _drift(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The catalog as a service might have changed it since refstudio was written."""
    import copy

    drifted = copy.deepcopy(entries)
    by_id = {e["model_id"]: e for e in drifted}

    def props(model: str) -> dict[str, Any]:
        schema = by_id[model]["api_schema"]["api_schemas"][0]["request_schema"]
        return schema["properties"]  # type: ignore[no-any-return]

    if "runwayml/gen4-image" in by_id:
        gen4 = props("runwayml/gen4-image")
        gen4["style"] = {"type": "string", "enum": ["none", "cinematic", "anime"]}
        gen4["aspect_ratio"]["enum"] = [*gen4["aspect_ratio"]["enum"], "21:9"]
    if "bytedance/seedream-v4/edit" in by_id:
        props("bytedance/seedream-v4/edit")["images"]["maxItems"] = 14
    if "wavespeed-ai/flux-kontext-pro/multi" in by_id:
        props("wavespeed-ai/flux-kontext-pro/multi").pop("guidance_scale", None)
    drifted = [e for e in drifted if e["model_id"] != "runwayml/gen4-image-turbo"]
    drifted.append({"model_id": "google/nano-banana-2/edit", "name": "Nano Banana 2 edit",
                    "type": "image-to-image", "base_price": 0.08,
                    "api_schema": {"api_schemas": [{"type": "model_run", "request_schema": {
                        "type": "object", "required": ["prompt", "images"],
                        "properties": {"prompt": {"type": "string"},
                                       "images": {"type": "array", "maxItems": 14}}}}]}})
    return drifted
