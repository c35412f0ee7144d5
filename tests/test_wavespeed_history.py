"""The WaveSpeed provider reads the account's task history (against the simulator, over HTTP)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import gen4_facts as gen4
import httpx
import pytest

from refstudio.errors import AuthenticationError
from refstudio.providers.base import TaskHistory
from refstudio.providers.offline.provider import OfflineProvider
from refstudio.providers.wavespeed.client import WaveSpeedProvider, parse_time
from refstudio.simulator import Simulator, SimulatorConfig

KEY = "sk-history"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    # Long tasks: nothing is rendered while the test runs.
    with Simulator(SimulatorConfig(latency=600.0, jitter=0.0, key=KEY, seed=5)) as server:
        yield server


def _submit(sim: Simulator, n: int, **body: object) -> list[str]:
    with httpx.Client(base_url=sim.base_url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        return [c.post(f"/api/v3/{gen4.MODEL_ID}", json={"prompt": f"p{i}", **body})
                .json()["data"]["id"] for i in range(n)]


def _history(sim: Simulator, since: datetime, until: datetime, key: str = KEY,
             **kwargs: int) -> TaskHistory:
    async def main() -> TaskHistory:
        async with WaveSpeedProvider(api_key=key, base_url=sim.base_url) as provider:
            return await provider.task_history(model=gen4.MODEL_ID, since=since, until=until,
                                               **kwargs)
    return asyncio.run(main())


def test_history_pages_through_every_task_in_the_window(sim: Simulator) -> None:
    start = datetime.now(timezone.utc) - timedelta(seconds=1)
    ids = _submit(sim, 230)
    history = _history(sim, start, datetime.now(timezone.utc) + timedelta(seconds=1))
    assert history.complete, history.reason
    assert sorted(t.task_id for t in history.tasks) == sorted(ids)
    assert sim.stats()["history_requests"] == 3  # 100 + 100 + 30
    task = history.tasks[0]
    assert task.model == gen4.MODEL_ID and task.state in ("created", "processing")
    assert task.input is None  # the documented history does not show the request
    assert task.poll_url and task.poll_url.endswith(f"/{task.task_id}/result")
    assert task.created_at.tzinfo is not None
    # Both clocks are this machine's: the measured offset is within its stated error.
    assert history.clock_offset is not None
    assert abs(history.clock_offset) <= history.clock_error + 0.05
    assert history.server_now is not None


def test_history_window_and_page_limit(sim: Simulator) -> None:
    _submit(sim, 3)
    time.sleep(0.05)
    middle = datetime.now(timezone.utc)
    time.sleep(0.05)
    later = _submit(sim, 120)
    history = _history(sim, middle, datetime.now(timezone.utc) + timedelta(seconds=1))
    assert history.complete and {t.task_id for t in history.tasks} == set(later)
    cut = _history(sim, middle, datetime.now(timezone.utc) + timedelta(seconds=1), max_pages=1)
    assert not cut.complete and "more than 100 tasks" in cut.reason


def test_history_shows_inputs_when_the_server_does(sim: Simulator) -> None:
    sim.config.history_input = True
    start = datetime.now(timezone.utc) - timedelta(seconds=1)
    _submit(sim, 1, seed=77, aspect_ratio="16:9")
    [task] = _history(sim, start, datetime.now(timezone.utc) + timedelta(seconds=1)).tasks
    assert task.input is not None
    assert task.input["seed"] == 77 and task.input["aspect_ratio"] == "16:9"


def test_history_with_a_wrong_key_is_an_authentication_error(sim: Simulator) -> None:
    now = datetime.now(timezone.utc)
    with pytest.raises(AuthenticationError):
        _history(sim, now - timedelta(minutes=1), now, key="sk-wrong")


def test_offline_provider_keeps_no_history() -> None:
    assert WaveSpeedProvider.supports_history
    assert not OfflineProvider.supports_history


@pytest.mark.parametrize("text, expected", [
    ("2025-05-19T06:09:15.948268264Z", datetime(2025, 5, 19, 6, 9, 15, 948268, timezone.utc)),
    ("2025-05-19T06:09:15Z", datetime(2025, 5, 19, 6, 9, 15, tzinfo=timezone.utc)),
    ("2025-05-19T08:09:15.5+02:00", datetime(2025, 5, 19, 6, 9, 15, 500000, timezone.utc)),
    ("2025-05-19 06:09:15.123", datetime(2025, 5, 19, 6, 9, 15, 123000, timezone.utc)),
])
def test_parse_time_reads_wavespeed_timestamps(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2025-13-45T99:00:00Z", "2025-05-19"])
def test_parse_time_refuses_what_it_cannot_read(text: str) -> None:
    assert parse_time(text) is None
