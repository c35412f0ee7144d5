"""What the client-against-client benchmarks share (``bench_engine.py``, ``bench_runway.py``):
the simulator in a process of its own, and child processes that report as a JSON last line.

A helper module, not a benchmark: the scripts import it from their own folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx


class RemoteSim:
    """A simulator in its own process (so it never competes with a client for the GIL);
    stats and reset over HTTP. ``settings`` are :class:`SimulatorConfig`'s, as literals."""

    def __init__(self, **settings: Any) -> None:
        code = ("from refstudio.simulator import SimulatorConfig, run_forever; "
                f"run_forever(SimulatorConfig(**{settings!r}))")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.base_url = line.strip().rsplit(" ", 1)[-1]
        assert self.base_url.startswith("http://"), line

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.base_url}/_sim/stats", timeout=10).json()

    def reset(self) -> None:
        httpx.post(f"{self.base_url}/_sim/reset", timeout=10).raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def run_json_child(cmd: list[str], what: str, timeout: float) -> dict[str, Any]:
    """Run a child process; its last line of output is its result, as JSON."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{what} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
