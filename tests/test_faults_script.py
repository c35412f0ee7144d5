"""``benchmarks/faults.py``: its short run finds no duplicate paid submit and no lost output, and
its accounting does catch a duplicate and a lost output when there is one.

The script's timing is not asserted (benchmarks print figures; tests assert correctness).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from refstudio.simulator import Simulator, SimulatorConfig

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "faults.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("faults_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_short_fault_run_pays_once_and_loses_nothing() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--short"], capture_output=True,
                          text=True, timeout=600, env=dict(os.environ))
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "Traceback" not in report
    assert report.count("duplicate paid submits: 0") == 2, report
    assert report.count("lost outputs: 0") == 2, report
    assert "kill -9: 3 trials" in report


def test_the_accounting_sees_a_duplicate_and_a_lost_output(tmp_path: Path) -> None:
    faults = _load_script()
    (tmp_path / "home").mkdir()
    project = faults.make_project(tmp_path, "p")
    with Simulator(SimulatorConfig(latency=0.05, jitter=0.0, key=faults.KEY, seed=3)) as sim:
        env = faults.cli_env(tmp_path / "home", sim.base_url)
        assert faults.cli_gen(project, env, 700, 2) == []
        stats = sim.stats()
    seeds = {700, 701}
    clean = faults.account(project, stats, seeds)
    assert clean.states["completed"] == 2
    assert not clean.duplicates and not clean.lost

    twice = copy.deepcopy(stats)
    task_id, task = next(iter(twice["tasks"].items()))
    twice["tasks"][task_id + "-again"] = dict(task)
    assert len(faults.account(project, twice, seeds).duplicates) == 1

    orphan = copy.deepcopy(stats)
    orphan["tasks"]["never-claimed"] = {**task, "seed": 702}
    assert len(faults.account(project, orphan, seeds | {702}).lost) == 1

    gen = faults.library_rows(project)[0]
    (project / "media" / gen["outputs"][0]["path"]).write_bytes(b"truncated")
    lost = faults.account(project, stats, seeds).lost
    assert len(lost) == 1 and "does not match its hash" in lost[0]


@pytest.fixture(autouse=True)
def _no_stray_project(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
