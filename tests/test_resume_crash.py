"""Crash safety: a process generating a batch is SIGKILLed mid-flight; ``resume`` in another
process finishes every submitted generation by polling, and never submits anything again.

The simulator runs in the test process, so it outlives the killed client.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import gen4_facts as gen4
import pytest
from PIL import Image
from project_support import wavespeed_from_env

from refstudio import Studio
from refstudio.simulator import Simulator, SimulatorConfig

KEY = "sk-crash-test"
N = 8
FIRST_SEED = 500

SCRIPT = textwrap.dedent(
    """
    import sys
    from refstudio import Studio

    studio = Studio.open(sys.argv[1])
    studio.generate("a quiet harbour at dawn", n=int(sys.argv[2]), seed=int(sys.argv[3]),
                    aspect_ratio="16:9", resolution="720p", provider="wavespeed")
    print("finished without being killed", flush=True)
    """
)


@pytest.fixture
def slow_sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    with wavespeed_from_env(monkeypatch, KEY, latency=3.0, jitter=0.5, seed=7) as server:
        yield server


def _statuses(db_path: Path) -> dict[int, str]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        return dict(conn.execute("SELECT id, status FROM generation").fetchall())
    except sqlite3.OperationalError:
        return {}  # not created yet / busy: ask again
    finally:
        conn.close()


def test_sigkill_mid_batch_then_resume_polls_without_resubmitting(
    slow_sim: Simulator, project: Studio, tmp_path: Path
) -> None:
    root = project.root
    toml = root / "refstudio.toml"
    toml.write_text("\n".join(f"concurrency = {N}" if line.startswith("concurrency") else line
                              for line in toml.read_text().splitlines()) + "\n")
    project.close()
    script = tmp_path / "batch.py"
    script.write_text(SCRIPT)

    env = {**os.environ, "WAVESPEED_API_KEY": KEY, "WAVESPEED_BASE_URL": slow_sim.base_url}
    proc = subprocess.Popen([sys.executable, str(script), str(root), str(N), str(FIRST_SEED)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        statuses: dict[int, str] = {}
        while time.monotonic() < deadline:
            statuses = _statuses(root / "library.db")
            if sum(s == "submitted" for s in statuses.values()) >= 1:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        else:
            pytest.fail(f"no generation reached `submitted` in 30 s: {statuses}")
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert b"finished without being killed" not in out, err

    time.sleep(0.3)  # let the server finish any request that was already on the wire
    at_kill = _statuses(root / "library.db")
    assert len(at_kill) == N  # every row was written before anything was sent
    submitted_at_kill = {g for g, s in at_kill.items() if s == "submitted"}
    assert submitted_at_kill
    # Everything still running on the server at the moment of the kill.
    before = slow_sim.stats()
    accepted_before = before["submits_accepted"]
    assert any(t["status"] != "completed" for t in before["tasks"].values())

    never_sent = {g for g, s in at_kill.items() if s == "pending"}
    studio = Studio.open(root)
    try:
        resumed = studio.resume()
        after = slow_sim.stats()
        # Only what never left is sent, once each; nothing that may have been accepted.
        assert after["submits_accepted"] == accepted_before + len(never_sent)
        assert after["submits_received"] == before["submits_received"] + len(never_sent)
        resumed_ids = {g.id for g in resumed}
        assert submitted_at_kill <= resumed_ids
        infos = {g: studio.generation(g) for g in at_kill}
        for gen_id in submitted_at_kill:
            info = infos[gen_id]
            assert info.status == "completed", info.error
            assert info.request_id in after["tasks"]
            path = Path(info.outputs[0].path)
            with Image.open(path) as img:
                img.load()
                assert img.size == gen4.output_size("16:9", "720p")
        # Rows caught mid-send are `unknown` (maybe paid, not resent); rows never sent were
        # sent by resume; none is left in an open state, and none was sent twice.
        for gen_id, status in at_kill.items():
            info = infos[gen_id]
            assert info.status in ("completed", "unknown")
            if status == "submitting":
                assert info.status == "unknown" and "may have been accepted" in info.error
            if status == "pending":
                assert info.status == "completed"
        seeds = [t["seed"] for t in after["tasks"].values()]
        assert len(seeds) == len(set(seeds))
        # Resuming again finds nothing to do and sends nothing.
        assert studio.resume() == []
        assert slow_sim.stats()["submits_received"] == after["submits_received"]
    finally:
        studio.close()


def test_concurrent_generates_in_one_process_do_not_take_each_others_work(
    monkeypatch: pytest.MonkeyPatch, project: Studio
) -> None:
    """`generate` resumes dead processes' work first; a live engine in this same process is not
    dead, so the second call must not poll, fail or mark `unknown` the first call's rows."""
    import asyncio

    from refstudio import AsyncStudio
    from refstudio.engine import Event

    root = project.root
    project.close()
    with Simulator(SimulatorConfig(latency=1.0, jitter=0.2, key=KEY, seed=9)) as sim:
        monkeypatch.setenv("WAVESPEED_API_KEY", KEY)
        monkeypatch.setenv("WAVESPEED_BASE_URL", sim.base_url)
        second_events: list[Event] = []

        async def main() -> tuple[list[int], list[int]]:
            studio = AsyncStudio.open(root)
            try:
                first = asyncio.create_task(studio.generate("a red boat", n=3, seed=1))
                await asyncio.sleep(0.5)  # two in flight, the third queued behind concurrency 2
                second = await studio.generate("a blue boat", n=1, seed=100,
                                               on_event=second_events.append)
                return [g.id for g in await first], [g.id for g in second]
            finally:
                studio.close()

        first_ids, second_ids = asyncio.run(main())
        stray = {e.generation_id for e in second_events} - set(second_ids)
        assert not stray, f"the second call drove the first call's generations {stray}"
        reopened = Studio.open(root)
        try:
            assert all(reopened.generation(g).status == "completed"
                       for g in [*first_ids, *second_ids])
        finally:
            reopened.close()
        assert sim.stats()["submits_accepted"] == 4
