"""Large batches: ``-n`` up to 1,000 (a clear error above), sent at the account's concurrency
by a few workers rather than as a thousand waiting tasks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from conftest import run_cli, snapshot_project

from refstudio import Studio
from refstudio.engine import Event
from refstudio.errors import ParameterError
from refstudio.models.params import MAX_BATCH
from refstudio.simulator import Simulator, SimulatorConfig


def _set(root: Path, old: str, new: str) -> None:
    toml = root / "refstudio.toml"
    text = toml.read_text()
    assert old in text
    toml.write_text(text.replace(old, new))


def test_a_batch_of_1000_on_the_offline_provider(
    project: Studio, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REFSTUDIO_OFFLINE_DIR", str(tmp_path / "offline"))
    most_tasks = 0

    def on_event(_: Event) -> None:
        nonlocal most_tasks
        most_tasks = max(most_tasks, len(asyncio.all_tasks()))

    gens = project.generate("a lighthouse at dusk", n=MAX_BATCH, aspect_ratio="1:1",
                            resolution="720p", seed=1000, on_event=on_event)
    assert MAX_BATCH == 1000
    assert len(gens) == MAX_BATCH
    assert all(g.status == "completed" and len(g.outputs) == 1 for g in gens)
    assert sorted(g.seed for g in gens) == list(range(1000, 2000))
    # Workers, not one waiting task per generation (the poll loop and writer add a few).
    assert 0 < most_tasks <= project.project.config.concurrency + 8, most_tasks


def test_over_1000_is_refused_naming_the_limit(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    Studio.init(root).close()
    before = snapshot_project(root)
    for n in ("1001", "0", "-3"):
        r = run_cli("-p", str(root), "gen", "a lighthouse", "-n", n,
                    env={"REFSTUDIO_NO_PROGRESS": "1"})
        assert r.returncode == ParameterError.exit_code, (r.returncode, r.stderr)
        assert "Traceback" not in r.stderr
        assert "between 1 and 1000" in r.stderr
    (root / "workflows" / "big.toml").write_text(
        '[[step]]\nid = "many"\nprompt = "a lighthouse"\nvariants = 1001\n')
    r = run_cli("-p", str(root), "run", "big", "--dry-run")
    assert r.returncode == 12 and "1000" in r.stderr, r.stderr
    assert snapshot_project(root) == before
    with Studio.open(root) as studio, pytest.raises(ParameterError, match="1000"):
        studio.generate("a lighthouse", n=1001)


def test_a_batch_of_200_against_the_simulator_keeps_to_the_concurrency(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    Studio.init(root).close()
    _set(root, "concurrency = 2", "concurrency = 6")
    with Simulator(SimulatorConfig(latency=0.05, jitter=0.02, key="k", seed=3)) as sim:
        env = {"REFSTUDIO_NO_PROGRESS": "1", "WAVESPEED_API_KEY": "k",
               "WAVESPEED_BASE_URL": sim.base_url}
        r = run_cli("-p", str(root), "gen", "a lighthouse at dusk", "-n", "200",
                    "--resolution", "720p", "--aspect-ratio", "1:1", "--json", env=env)
        stats = sim.stats()
    assert r.returncode == 0, r.stderr
    gens = json.loads(r.stdout)
    assert len(gens) == 200 and {g["status"] for g in gens} == {"completed"}
    assert stats["submits_received"] == 200
    # Tasks the client held at once: from creation to the poll that saw them done.
    spans = [(t["created_at"], t["first_seen_completed_at"]) for t in stats["tasks"].values()]
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    assert 1 < most <= 6, most
