"""Interrupted work: what was never sent stays resumable, and `resume` sends it.

A real `refstudio gen` subprocess is killed (SIGKILL) or interrupted (SIGINT) while part of its
batch waits for a free slot. The generations that never left are `pending`, not `failed`:
`refstudio resume --no-send` only collects what was submitted, `refstudio resume` also sends
the rest, each exactly once. `retry` says what it really costs, and without a terminal it
refuses (exit 2) instead of guessing an answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli, snapshot_project

from refstudio import Studio
from refstudio.simulator import Simulator, SimulatorConfig

KEY = "sk-resume-send"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(latency=2.5, jitter=0.0, key=KEY, seed=17)) as server:
        yield server


@pytest.fixture
def env(sim: Simulator, tmp_path: Path) -> dict[str, str]:
    return {"WAVESPEED_API_KEY": KEY, "WAVESPEED_BASE_URL": sim.base_url,
            "REFSTUDIO_NO_PROGRESS": "1", "REFSTUDIO_OFFLINE_DIR": str(tmp_path / "off")}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    Studio.init(tmp_path / "proj").close()  # concurrency 2: a batch of 6 waits for slots
    return tmp_path / "proj"


def _statuses(db: Path) -> dict[int, str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return dict(conn.execute("SELECT id, status FROM generation").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


def _start_gen(root: Path, env: dict[str, str], n: int, seed: int) -> subprocess.Popen[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("WAVESPEED_", "REFSTUDIO_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "refstudio", "--project", str(root), "gen", "a night market",
         "-n", str(n), "--seed", str(seed), "--resolution", "720p", "--provider", "wavespeed"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**full, **env},
    )


def _stop_after_two_submitted(proc: subprocess.Popen[str], db: Path, sig: int) -> str:
    deadline = time.monotonic() + 30
    try:
        while sum(s == "submitted" for s in _statuses(db).values()) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the first two were never submitted"
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return err


def _ok_json(root: Path, env: dict[str, str], *args: str) -> list[dict[str, object]]:
    r = run_cli("--project", str(root), *args, "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_sigkill_then_resume_no_send_collects_and_resume_sends_the_rest(
    sim: Simulator, env: dict[str, str], root: Path
) -> None:
    db = root / "library.db"
    proc = _start_gen(root, env, 6, 100)
    _stop_after_two_submitted(proc, db, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.3)  # anything already on the wire reaches the server
    at_kill = _statuses(db)
    assert len(at_kill) == 6
    sent_at_kill = sim.stats()["submits_received"]
    never_sent = {g for g, s in at_kill.items() if s == "pending"}
    assert len(never_sent) >= 3  # concurrency 2: most of the batch was still waiting

    # Collect only: the submitted ones complete, the never-sent ones stay pending, unsent.
    collected = {g["id"]: g for g in _ok_json(root, env, "resume", "--no-send")}
    assert sim.stats()["submits_received"] == sent_at_kill
    for gen_id in never_sent:
        assert collected[gen_id]["status"] == "pending"
        assert "never sent" in str(collected[gen_id]["error"])
    for gen_id, status in at_kill.items():
        if status == "submitted":
            assert collected[gen_id]["status"] == "completed"
    assert set(_statuses(db).values()) <= {"completed", "pending", "unknown"}
    pending = [g["id"] for g in _ok_json(root, env, "history", "--status", "pending")]
    assert set(pending) == never_sent

    # Send the rest: each never-sent generation exactly once, as it was asked for.
    resumed = {g["id"]: g for g in _ok_json(root, env, "resume")}
    assert never_sent <= set(resumed)
    assert all(resumed[g]["status"] == "completed" for g in never_sent)
    stats = sim.stats()
    assert stats["submits_received"] == sent_at_kill + len(never_sent)
    seeds = sorted(t["seed"] for t in stats["tasks"].values())
    assert len(seeds) == len(set(seeds))  # nothing was paid twice
    final = _ok_json(root, env, "history", "--limit", "100")
    assert {g["seed"] for g in final if g["status"] == "completed"} == set(seeds)
    for g in final:  # only a request caught mid-send may be left unknown (never resent)
        assert g["status"] == "completed" or at_kill[g["id"]] == "submitting"
    assert _ok_json(root, env, "resume") == []
    assert sim.stats()["submits_received"] == stats["submits_received"]


def test_ctrl_c_then_python_resume(sim: Simulator, env: dict[str, str], root: Path) -> None:
    db = root / "library.db"
    proc = _start_gen(root, env, 4, 500)
    err = _stop_after_two_submitted(proc, db, signal.SIGINT)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert "refstudio resume --no-send" in err
    time.sleep(0.3)
    at_stop = _statuses(db)
    sent = sim.stats()["submits_received"]

    with Studio.open(root) as studio:
        studio.provider_options["wavespeed"] = {"api_key": KEY, "base_url": sim.base_url}
        collected = studio.resume(send=False)
        assert sim.stats()["submits_received"] == sent
        assert {g.id: g.status for g in collected if g.status != "pending"} == {
            g: "completed" for g, s in at_stop.items() if s == "submitted"}
        waiting = [g.id for g in studio.history(status="pending", limit=None)]
        assert waiting == sorted((g for g, s in at_stop.items() if s == "pending"), reverse=True)
        assert waiting
        sent_now = studio.resume()
        assert sorted(g.id for g in sent_now) == sorted(waiting)
        assert all(g.status == "completed" and g.outputs for g in sent_now)
    assert sim.stats()["submits_received"] == sent + len(waiting)


def _unknown_generation(root: Path, sim: Simulator) -> int:
    """A generation whose submit answer was lost (a 502 with nothing behind it)."""
    sim.config.submit_faults = ["502_lost"]
    with Studio.open(root) as studio:
        studio.provider_options["wavespeed"] = {"api_key": KEY, "base_url": sim.base_url}
        [g] = studio.generate("a harbour crane", seed=8, resolution="720p", provider="wavespeed")
        assert g.status == "unknown"
    return g.id


def _never_sent_generation(root: Path) -> int:
    """A generation recorded (write-ahead) by an engine that stopped before sending it, then
    left for a later `resume`, as after Ctrl-C."""
    from refstudio.engine import Engine
    from refstudio.engine.records import PreparedRequest

    async def record() -> int:
        with Studio.open(root) as studio:
            provider = studio.make_provider("wavespeed")
            async with Engine(studio.db, studio.store, provider) as engine:
                [gen_id] = engine.record_many(
                    [PreparedRequest(prompt="an unsent lamp", aspect_ratio="1:1",
                                     resolution="720p", seed=10)], 0.05)
            await provider.aclose()
            return gen_id

    gen_id = asyncio.run(record())
    with Studio.open(root) as studio:
        [left] = studio.resume(send=False)  # the engine is closed: its row is free to take
        assert left.id == gen_id and left.status == "pending"
    return gen_id


def test_retry_says_what_it_costs_and_needs_yes_without_a_terminal(
    sim: Simulator, env: dict[str, str], root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", KEY)
    monkeypatch.setenv("WAVESPEED_BASE_URL", sim.base_url)
    never = _never_sent_generation(root)
    unknown_id = _unknown_generation(root, sim)
    sim.config.fail_rate = 1.0
    with Studio.open(root) as studio:
        studio.provider_options["wavespeed"] = {"api_key": KEY, "base_url": sim.base_url}
        [failed] = studio.generate("a broken kite", seed=9, resolution="720p",
                                   provider="wavespeed")
    sim.config.fail_rate = 0.0
    assert failed.status == "failed" and failed.request_id
    before = snapshot_project(root)
    received = sim.stats()["submits_received"]

    def retry(gen_id: int) -> subprocess.CompletedProcess[str]:
        return run_cli("--project", str(root), "retry", str(gen_id), env=env)

    expectations = {
        never: "nothing was paid for it before",
        failed.id: f"accepted it before (task {failed.request_id})",
        unknown_id: "may be paid twice",
    }
    for gen_id, words in expectations.items():
        r = retry(gen_id)  # stdin is not a terminal here
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert "Traceback" not in r.stderr
        lines = r.stderr.strip().splitlines()
        assert lines[0].startswith("error: ") and words in lines[0]
        assert f"refstudio retry {gen_id} --yes" in r.stderr
        assert len(lines) == 2
    assert "may cost" not in retry(never).stderr
    assert snapshot_project(root) == before
    assert sim.stats()["submits_received"] == received

    # At a terminal, a "no" sends nothing either, with the same code.
    master, slave = pty.openpty()
    try:
        full = {k: v for k, v in os.environ.items()
                if not k.startswith(("WAVESPEED_", "REFSTUDIO_"))}
        proc = subprocess.Popen(
            [sys.executable, "-m", "refstudio", "--project", str(root), "retry", str(never)],
            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**full, **env})
        os.write(master, b"n\n")
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 2, err
    assert "nothing was paid for it before" in err and "not sent" in err
    assert snapshot_project(root) == before

    r = run_cli("--project", str(root), "retry", str(never), "--yes", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "completed"
    assert sim.stats()["submits_received"] == received + 1


def test_resume_refuses_to_send_over_budget_and_changes_nothing(
    sim: Simulator, env: dict[str, str], root: Path
) -> None:
    proc = _start_gen(root, env, 4, 900)
    _stop_after_two_submitted(proc, root / "library.db", signal.SIGKILL)
    time.sleep(0.3)
    toml = root / "refstudio.toml"
    toml.write_text(toml.read_text().replace("# budget = 10.0", "budget = 0.12"))  # sent: 0.10
    before = snapshot_project(root)
    sent = sim.stats()["submits_received"]
    r = run_cli("--project", str(root), "resume", env=env)
    assert r.returncode == 8, r.stderr
    assert r.stderr.startswith("error: sending the 2 never-sent generation(s)")
    assert "budget" in r.stderr and "resume --no-send" in r.stderr
    assert snapshot_project(root) == before
    assert sim.stats()["submits_received"] == sent
    r = run_cli("--project", str(root), "resume", "--no-send", env=env)
    assert r.returncode == 0, r.stderr
    assert "never sent" in r.stdout
    assert sim.stats()["submits_received"] == sent


def test_rerun_workflow_sends_its_own_never_sent_rows_not_new_ones(
    sim: Simulator, env: dict[str, str], root: Path
) -> None:
    toml = root / "refstudio.toml"
    toml.write_text(toml.read_text().replace("concurrency = 2", "concurrency = 1"))
    (root / "workflows" / "lamps.toml").write_text(
        '[[step]]\nid = "lamps"\nprompt = "three paper lamps"\nvariants = 3\nresolution = "720p"\n')
    full = {k: v for k, v in os.environ.items() if not k.startswith(("WAVESPEED_", "REFSTUDIO_"))}
    db = root / "library.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "refstudio", "--project", str(root), "run", "lamps",
         "--provider", "wavespeed", "--concurrency", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**full, **env})
    try:
        deadline = time.monotonic() + 30
        while sorted(_statuses(db).values()) != ["pending", "pending", "submitted"]:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, _statuses(db)
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed = _statuses(db)
    with Studio.open(root) as studio:
        studio.provider_options["wavespeed"] = {"api_key": KEY, "base_url": sim.base_url}
        report = studio.run_workflow("lamps", provider="wavespeed")
        assert report.status == "completed", [(s.id, s.status, s.message) for s in report.steps]
    final = _statuses(db)
    assert set(final) == set(killed)  # the same three rows: none recorded twice
    assert set(final.values()) == {"completed"}
    stats = sim.stats()
    assert stats["submits_accepted"] == 3
    assert len({t["seed"] for t in stats["tasks"].values()}) == 3


def test_two_resumes_at_once_send_each_never_sent_generation_once(
    sim: Simulator, env: dict[str, str], root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from refstudio import AsyncStudio

    db = root / "library.db"
    proc = _start_gen(root, env, 6, 700)
    _stop_after_two_submitted(proc, db, signal.SIGKILL)
    time.sleep(0.3)
    never_sent = {g for g, s in _statuses(db).items() if s == "pending"}
    assert never_sent
    sent = sim.stats()["submits_received"]
    monkeypatch.setenv("WAVESPEED_API_KEY", KEY)
    monkeypatch.setenv("WAVESPEED_BASE_URL", sim.base_url)

    async def both() -> None:
        # Both read the stopped process's rows before either sends: only one may take each.
        first, second = AsyncStudio.open(root), AsyncStudio.open(root)
        try:
            await asyncio.gather(first.resume(), second.resume())
        finally:
            first.close()
            second.close()

    asyncio.run(both())
    stats = sim.stats()
    assert stats["submits_received"] == sent + len(never_sent)
    seeds = [t["seed"] for t in stats["tasks"].values()]
    assert len(seeds) == len(set(seeds))
    assert set(_statuses(db).values()) <= {"completed", "unknown"}
