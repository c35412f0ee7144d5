"""Budgets fail closed: a cost limit that is NaN, infinite or negative is refused wherever it
enters (CLI option, refstudio.toml, workflow file, Python keyword) before anything is written
or sent; and two processes racing against one budget can never together overrun it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ImageMaker, db_rows, run_cli, snapshot_project

from refstudio import Studio
from refstudio.errors import BudgetExceededError, ConfigError, ParameterError
from refstudio.simulator import Simulator, SimulatorConfig

#: Every test here runs on SQLite and on PostgreSQL: on PostgreSQL the budget race is settled
#: by an advisory lock, not by SQLite's single writer.
BACKENDS = ("sqlite", "postgresql")

KEY = "sim-key-budget-0123456789"
BAD_LIMITS = ["nan", "inf", "-inf", "-1", "-0.01"]

WORKFLOW = '[[step]]\nid = "one"\nprompt = "@mara by the sea"\nresolution = "720p"\n'


@pytest.fixture
def root(tmp_path: Path, make_image: ImageMaker) -> Path:
    with Studio.init(tmp_path / "proj") as studio:
        studio.add_reference("mara", [make_image(tmp_path / "mara.png", seed=3)])
        (studio.project.workflows_dir / "one.toml").write_text(WORKFLOW)
        return studio.root


def _env(tmp_path: Path) -> dict[str, str]:
    return {"REFSTUDIO_NO_PROGRESS": "1", "REFSTUDIO_OFFLINE_DIR": str(tmp_path / "offline")}


def _one_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert sum(line.startswith("error:") for line in result.stderr.splitlines()) == 1, result.stderr
    return result.stderr


def _generations(root: Path) -> int:
    return int(db_rows(root, "SELECT count(*) FROM generation")[0][0])


@pytest.mark.parametrize("limit", BAD_LIMITS)
def test_cli_max_cost_must_be_finite_and_not_negative(
    root: Path, tmp_path: Path, limit: str
) -> None:
    before = snapshot_project(root)
    for args in (["gen", "@mara", "--resolution", "720p"], ["run", "one"]):
        result = run_cli("-p", str(root), *args, f"--max-cost={limit}", env=_env(tmp_path))
        err = _one_error(result, ParameterError.exit_code)
        assert "--max-cost" in err
    assert snapshot_project(root) == before


@pytest.mark.parametrize("limit", [float("nan"), float("inf"), -1.0])
def test_python_max_cost_must_be_finite_and_not_negative(root: Path, limit: float) -> None:
    with Studio.open(root) as studio:
        with pytest.raises(ParameterError, match="max_cost"):
            studio.generate("@mara", resolution="720p", max_cost=limit)
        with pytest.raises(ParameterError, match="max_cost"):
            studio.run_workflow("one", max_cost=limit)
    assert _generations(root) == 0


@pytest.mark.parametrize(
    ("old", "new"),
    [("", f"budget = {v}\n") for v in BAD_LIMITS]
    + [('[prices.offline]\n"720p" = 0.0', '[prices.offline]\n"720p" = nan'),
       ('[prices.wavespeed]\n"720p" = 0.05', '[prices.wavespeed]\n"720p" = inf'),
       ("max_image_mb = 20", "max_image_mb = inf"),
       ("concurrency = 2", "concurrency = inf")],
)
def test_project_file_limits_must_be_finite(
    root: Path, tmp_path: Path, old: str, new: str
) -> None:
    toml = root / "refstudio.toml"
    text = toml.read_text()
    assert old in text
    toml.write_text(new + text if not old else text.replace(old, new))
    before = snapshot_project(root)
    result = run_cli("-p", str(root), "gen", "@mara", "--resolution", "720p",
                     env=_env(tmp_path))
    err = _one_error(result, ConfigError.exit_code)
    # concurrency is a count, so its message asks for a whole number instead
    assert "finite" in err or "whole number" in err
    assert snapshot_project(root) == before
    with pytest.raises(ConfigError):
        Studio.open(root)


def test_workflow_file_budget_is_refused(root: Path, tmp_path: Path) -> None:
    (root / "workflows" / "nan.toml").write_text("budget = nan\n" + WORKFLOW)
    before = snapshot_project(root)
    result = run_cli("-p", str(root), "run", "nan", env=_env(tmp_path))
    assert "budget" in _one_error(result, 12)
    assert snapshot_project(root) == before


# -- two processes, one budget --------------------------------------------------------------

#: Imports everything first, says it is ready, waits for the go file, then runs the real CLI:
#: both processes reach the budget check within a millisecond or so of each other.
RACER = """
import os, sys, time
from pathlib import Path
import refstudio.cli, refstudio.app.studio, refstudio.engine, refstudio.providers.wavespeed.client
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.0005)
sys.argv = ["refstudio", *sys.argv[3:]]
refstudio.cli.main()
"""


def test_two_processes_cannot_both_spend_the_last_of_a_budget(
    root: Path, tmp_path: Path
) -> None:
    # $0.05 an image at 720p: a batch of 2 is $0.10; the budget allows one batch, not two.
    toml = root / "refstudio.toml"
    toml.write_text("budget = 0.15\n" + toml.read_text())
    go = tmp_path / "go"
    with Simulator(SimulatorConfig(latency=0.2, jitter=0.0, key=KEY, seed=9)) as sim:
        env = {**os.environ, **_env(tmp_path), "WAVESPEED_API_KEY": KEY,
               "WAVESPEED_BASE_URL": sim.base_url}
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", RACER, str(tmp_path / f"ready{i}"), str(go),
                 "-p", str(root), "gen", f"@mara, take {i}", "-n", "2", "--resolution", "720p",
                 "--json"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for i in range(2)
        ]
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
            assert time.monotonic() < deadline, "the racing processes did not start"
            time.sleep(0.01)
        go.touch()
        results = [(p.wait(timeout=120), *p.communicate()) for p in racers]
        submits = sim.stats()["submits_received"]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, BudgetExceededError.exit_code], results
    loser = next(err for code, _, err in results if code == BudgetExceededError.exit_code)
    assert "budget" in loser and "nothing was sent" in loser and "Traceback" not in loser
    winner = next(json.loads(out) for code, out, _ in results if code == 0)
    assert [g["status"] for g in winner] == ["completed", "completed"]
    assert submits == 2
    [(count, total)] = db_rows(root, "SELECT count(*), sum(cost_estimate) FROM generation")
    assert count == 2 and total <= 0.15 + 1e-9


def test_retry_is_checked_against_the_budget_where_it_is_requeued(root: Path) -> None:
    toml = root / "refstudio.toml"
    toml.write_text("budget = 0.05\n" + toml.read_text())  # one 720p image at $0.05
    with Simulator(SimulatorConfig(latency=0.05, jitter=0.0, key=KEY, seed=4)) as sim, \
            Studio.open(root) as studio:
        studio.provider_options["wavespeed"] = {"api_key": KEY, "base_url": sim.base_url}
        sim.config.fail_rate = 1.0
        [failed] = studio.generate("@mara", provider="wavespeed", resolution="720p")
        assert failed.status == "failed"  # failed work is not spend
        sim.config.fail_rate = 0.0
        [done] = studio.generate("@mara", provider="wavespeed", resolution="720p", seed=5)
        assert done.status == "completed"
        with pytest.raises(BudgetExceededError, match="budget"):
            studio.retry(failed.id)
        assert studio.generation(failed.id).status == "failed"
        assert sim.stats()["submits_received"] == 2
