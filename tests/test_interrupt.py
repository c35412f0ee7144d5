"""Ctrl-C during `refstudio gen`: submitted work stays resumable, and the CLI says how."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from refstudio import Studio
from refstudio.simulator import Simulator, SimulatorConfig

KEY = "sk-interrupt-test"


def _submitted(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute(
            "SELECT count(*) FROM generation WHERE status = 'submitted'").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def test_ctrl_c_leaves_submitted_work_resumable(tmp_path: Path) -> None:
    Studio.init(tmp_path / "p").close()
    with Simulator(SimulatorConfig(latency=2.5, jitter=0.0, key=KEY, seed=3)) as sim:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("WAVESPEED_", "REFSTUDIO_"))}
        env.update(WAVESPEED_API_KEY=KEY, WAVESPEED_BASE_URL=sim.base_url,
                   REFSTUDIO_NO_PROGRESS="1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "refstudio", "--project", str(tmp_path / "p"), "gen",
             "a lighthouse in fog", "-n", "2", "--resolution", "720p"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        deadline = time.monotonic() + 20
        while _submitted(tmp_path / "p" / "library.db") < 2:
            assert time.monotonic() < deadline, "the batch was never submitted"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130
        assert "refstudio resume" in err
        assert "Traceback" not in err
        accepted = sim.stats()["submits_accepted"]
        assert accepted == 2

        with Studio.open(tmp_path / "p") as studio:
            studio.provider_options["wavespeed"] = {"api_key": KEY, "base_url": sim.base_url}
            resumed = studio.resume()
            assert sorted(g.status for g in resumed) == ["completed"] * 2
            assert all(g.outputs and g.outputs[0].path.is_file() for g in resumed)
        assert sim.stats()["submits_accepted"] == accepted  # nothing was sent again
