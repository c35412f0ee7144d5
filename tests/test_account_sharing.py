"""One process, one account: concurrent calls share one connection pool and never run more tasks
at once than the account allows (WaveSpeed's default level: 2).

Everything runs against the project's simulator with ``account_concurrency=2``, whose stats say
what the server itself saw: the most tasks in flight, requests in progress and open connections.
"""

from __future__ import annotations

import asyncio
import collections
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from refstudio import AsyncStudio, Studio
from refstudio.app.demo import draw_sources
from refstudio.engine import account
from refstudio.errors import InputError
from refstudio.library.results import GenerationInfo
from refstudio.simulator import Simulator, SimulatorConfig

PROJECTS = Path(__file__).resolve().parent.parent / "projects"
KEY = "sk-account"
BATCHES = (13, 13, 12, 12)  # 50 generations over four concurrent calls
#: Connections the pool opens for a 2-task account (see make_provider): one per task in flight
#: and two spare for resumed polls and uploads.
POOL = 4


@pytest.fixture
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(latency=0.12, jitter=0.04, key=KEY, seed=3, account_concurrency=2)
    with Simulator(config) as server:
        yield server


def make_project(root: Path, *, concurrency: int = 2) -> Path:
    Studio.init(root).close()
    toml = root / "refstudio.toml"
    text = toml.read_text().replace("concurrency = 2", f"concurrency = {concurrency}")
    toml.write_text(text + "\npoll_lag = 0.05\n")
    return root


def open_on(cls: type[Studio] | type[AsyncStudio], root: Path, sim: Simulator) -> Studio:
    studio = cls.open(root)
    studio.provider_options["wavespeed"] = {"api_key": KEY, "base_url": sim.base_url}
    return studio  # type: ignore[return-value]


def check_server_saw(sim: Simulator, gens: list[GenerationInfo], *, n: int = 50) -> None:
    statuses = collections.Counter(g.status for g in gens)
    errors = {g.error for g in gens if g.status != "completed"}
    assert statuses == {"completed": n}, (statuses, errors)
    stats = sim.stats()
    assert stats["max_tasks_in_flight"] <= 2, stats["max_tasks_in_flight"]
    assert stats["max_open_connections"] <= POOL, stats["max_open_connections"]
    # Every generation was sent exactly once: no duplicate, nothing lost on the way.
    assert stats["submits_received"] == stats["submits_accepted"] == n
    seeds = [t["seed"] for t in stats["tasks"].values()]
    assert len(set(seeds)) == n
    assert sorted(seeds) == sorted(g.seed for g in gens)


def test_four_threads_of_studio_generate_share_the_account(sim: Simulator, tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    results: dict[int, list[GenerationInfo]] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(len(BATCHES))

    def call(i: int, n: int) -> None:
        try:
            with open_on(Studio, root, sim) as studio:
                start.wait(timeout=30)
                results[i] = studio.generate(f"a harbour at dawn, call {i}", n=n,
                                             provider="wavespeed", aspect_ratio="1:1",
                                             resolution="720p", seed=1000 * (i + 1))
        except BaseException as exc:  # reported below, with the others
            failures.append(exc)

    threads = [threading.Thread(target=call, args=(i, n)) for i, n in enumerate(BATCHES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not failures, failures
    check_server_saw(sim, [g for gens in results.values() for g in gens])


def test_asyncstudio_gather_shares_the_account(sim: Simulator, tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")

    async def main() -> list[list[GenerationInfo]]:
        studio = open_on(AsyncStudio, root, sim)
        try:
            return await asyncio.gather(*(
                studio.generate(f"a lighthouse, call {i}", n=n, provider="wavespeed",  # type: ignore[misc]
                                aspect_ratio="1:1", resolution="720p", seed=1000 * (i + 1))
                for i, n in enumerate(BATCHES)
            ))
        finally:
            studio.close()

    batches = asyncio.run(main())
    check_server_saw(sim, [g for gens in batches for g in gens])


def test_a_workflow_never_runs_more_tasks_than_the_account(
    sim: Simulator, tmp_path: Path
) -> None:
    """The storyboard has many independent steps; steps run 4 at once by default, but tasks in
    flight stay within the account's 2 (the default `concurrency`)."""
    root = tmp_path / "story"
    shutil.copytree(PROJECTS / "storyboard", root,
                    ignore=shutil.ignore_patterns("library.db*", "media", "sources"))
    toml = root / "refstudio.toml"
    toml.write_text(toml.read_text().replace("concurrency = 4", "concurrency = 2"))
    draw_sources(root / "sources")
    with open_on(Studio, root, sim) as studio:
        report = studio.run_workflow("storyboard", provider="wavespeed")
    assert report.status == "completed", report
    stats = sim.stats()
    assert stats["submits_accepted"] >= 4
    assert stats["max_tasks_in_flight"] <= 2, stats["max_tasks_in_flight"]


def test_account_gate_across_threads_and_loops() -> None:
    """The gate behind it: holders on two threads' loops never exceed the smallest member limit;
    a waiter cancelled in the queue takes no slot, and the gate is forgotten with its members."""
    gate, wide = account.join("test:gate", 3)
    same, narrow = account.join("test:gate", 2)
    assert same is gate and gate.limit == 2
    held = 0
    peak = 0
    lock = threading.Lock()

    async def hold(seconds: float) -> None:
        nonlocal held, peak
        async with gate.slot():
            with lock:
                held += 1
                peak = max(peak, held)
            await asyncio.sleep(seconds)
            with lock:
                held -= 1

    async def one_loop() -> None:
        await asyncio.gather(*(hold(0.02) for _ in range(6)))
        # A waiter cancelled while queued behind two holders takes nothing with it.
        blockers = [asyncio.create_task(hold(0.1)) for _ in range(2)]
        await asyncio.sleep(0.01)
        waiter = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.gather(*blockers)

    threads = [threading.Thread(target=asyncio.run, args=(one_loop(),)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert peak == 2 and gate.in_use == 0
    account.leave(gate, narrow)
    assert gate.limit == 3
    account.leave(gate, wide)
    fresh, token = account.join("test:gate", 5)
    assert fresh is not gate and fresh.limit == 5
    account.leave(fresh, token)


def test_a_batch_may_be_larger_than_16(project: Studio) -> None:
    """-n was capped at 16; a batch is sent at the account's concurrency, so 50 is fine."""
    _, requests = project.prepare_requests("a harbour at dawn", n=50, seed=7)
    assert [r.seed for r in requests] == list(range(7, 57))
    with pytest.raises(InputError):
        project.prepare_requests("a harbour at dawn", n=1001)
