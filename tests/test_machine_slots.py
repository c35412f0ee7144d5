"""One machine, two processes, two SQLite projects, one 2-at-once account: never more than 2
tasks in flight at the provider in total (the account's slots are lock files every process of
the machine takes), and a process killed while holding slots gives them back at once.

Two ``refstudio gen`` processes run against one simulator with ``account_concurrency=2``; its
stats say what the server saw."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import db_rows, run_cli

from refstudio.engine.machine_slots import MachineSlots, accounts_folder, machine_slots

KEY = "sim-key-one-machine-0123456789"
SIM_DEFAULTS = {"key": KEY, "account_concurrency": 2, "seed": 5}
#: How long the killed holder's tasks run at the server.
LONG_TASK_S = 12.0


def _project(tmp_path: Path, name: str, sim_url: str) -> tuple[Path, dict[str, str]]:
    root = tmp_path / name
    assert run_cli("init", str(root)).returncode == 0  # concurrency = 2: the account's level
    env = {**os.environ, "WAVESPEED_API_KEY": KEY, "WAVESPEED_BASE_URL": sim_url,
           "REFSTUDIO_NO_PROGRESS": "1", "COLUMNS": "200"}
    return root, env


def _gen(root: Path, env: dict[str, str], n: int, seed: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "refstudio", "-p", str(root), "gen", f"a picture from {root.name}",
         "-n", str(n), "--seed", str(seed), "--provider", "wavespeed", "--resolution", "720p"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _span(tasks: dict[str, Any], seeds: range) -> tuple[float, float]:
    mine = [t for t in tasks.values() if t["seed"] in seeds]
    return min(t["created_at"] for t in mine), max(t["completed_at"] for t in mine)


def _wait_for(what: str, done: Any, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert proc.poll() is None, (what, proc.communicate())
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_two_processes_on_two_projects_share_the_account(
    tmp_path: Path, make_sim: Any
) -> None:
    sim = make_sim(latency=1.5)
    a, env_a = _project(tmp_path, "project_a", sim.base_url)
    b, env_b = _project(tmp_path, "project_b", sim.base_url)
    procs = [_gen(a, env_a, 4, 1000), _gen(b, env_b, 4, 2000)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    stats = sim.stats()
    # Each process alone would send 2 at once: together they must still send 2, not 4.
    assert stats["max_tasks_in_flight"] <= 2, stats["max_tasks_in_flight"]
    assert stats["submits_received"] == 8
    # The runs overlapped (otherwise the limit above proves nothing).
    (a_start, a_end), (b_start, b_end) = (_span(stats["tasks"], range(1000, 1004)),
                                          _span(stats["tasks"], range(2000, 2004)))
    assert a_start < b_end and b_start < a_end, "the two runs did not overlap"
    for root in (a, b):
        assert db_rows(root, "SELECT status, count(*) FROM generation GROUP BY status") == [
            ("completed", 4)]
    # The lock files name a hash, never the key, and hold nothing.
    files = sorted(p for p in accounts_folder().rglob("*") if p.is_file())
    assert [p.name for p in files] == ["0.lock", "1.lock", "line.lock"]
    assert len(files[0].parent.name) == 16
    for path in files:
        assert KEY not in str(path) and path.read_bytes() == b""


def test_a_killed_holder_gives_its_slots_back(tmp_path: Path, make_sim: Any) -> None:
    # Long tasks: B must have started and be waiting before A's first tasks end (a CLI start
    # takes seconds on a loaded machine).
    sim = make_sim(latency=LONG_TASK_S)
    a, env_a = _project(tmp_path, "project_a", sim.base_url)
    b, env_b = _project(tmp_path, "project_b", sim.base_url)
    holder = _gen(a, env_a, 3, 1000)
    _wait_for("A's two tasks in flight", lambda: sim.stats()["submits_received"] == 2, holder)

    waiter = _gen(b, env_b, 2, 2000)
    _wait_for("B's rows", lambda: db_rows(
        b, "SELECT count(*) FROM generation WHERE status = 'pending'") == [(2,)], waiter)
    time.sleep(1.0)
    # A holds both slots: B, another process on another project, waits without sending.
    stats = sim.stats()
    a_first_end = min(t["completed_at"] for t in stats["tasks"].values())
    assert time.time() < a_first_end, "A's tasks ended before B was waiting: raise LONG_TASK_S"
    assert stats["submits_received"] == 2
    assert db_rows(b, "SELECT count(*) FROM generation WHERE status = 'pending'") == [(2,)]

    killed_at = time.time()
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=30)
    _, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, err
    stats = sim.stats()
    assert stats["submits_received"] == 4  # A's third was never sent
    b_start, _ = _span(stats["tasks"], range(2000, 2002))
    # B's tasks went out when A died, not when A's tasks ended at the server.
    _, a_end = _span(stats["tasks"], range(1000, 1002))
    assert killed_at <= b_start < a_end, (killed_at, b_start, a_end)
    b_created = sorted(t["created_at"] for t in stats["tasks"].values()
                       if t["seed"] in range(2000, 2002))
    assert b_created[1] < a_end  # both of A's slots came back, not just one
    assert db_rows(b, "SELECT status, count(*) FROM generation GROUP BY status") == [
        ("completed", 2)]


def test_slots_exclude_each_other_within_a_process_too(tmp_path: Path) -> None:
    """Locks belong to open files: two engines of one process never hold one slot; and whoever
    found every slot taken gets the next free one, before the one who freed it."""
    first = machine_slots("wavespeed:test-account", 2)
    second = machine_slots("wavespeed:test-account", 2)
    assert isinstance(first, MachineSlots) and isinstance(second, MachineSlots)
    assert first.folder == second.folder
    assert [first.try_acquire(), second.try_acquire(), second.try_acquire()] == [0, 1, None]
    first.release(0)
    assert first.try_acquire() is None  # second is in line
    assert second.try_acquire() == 0
    assert first.try_acquire() is None  # now first is in line ...
    second.close()  # ... and a closed holder gives everything back
    assert first.try_acquire() == 0 and first.try_acquire() == 1
    first.close()


def test_a_forked_child_keeps_none_of_its_parents_slots() -> None:
    """A lock lasts while any descriptor of its open file does: a child that kept the inherited
    ones would hold the parent's slot (and line) after the parent gave it back."""
    parent = machine_slots("wavespeed:test-fork", 1)
    other = machine_slots("wavespeed:test-fork", 1)
    assert isinstance(parent, MachineSlots) and isinstance(other, MachineSlots)
    assert parent.try_acquire() == 0
    assert other.try_acquire() is None  # other is in line now; parent holds the slot
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: stays alive, holding whatever it did not close, until told
        os.write(ready_w, b"x")
        os.read(done_r, 1)
        os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"x"
        parent.release(0)
        assert other.try_acquire() == 0  # not kept by the child's copy of the descriptor
        other.release(0)
        assert parent.try_acquire() == 0  # nor is the line
    finally:
        os.write(done_w, b"x")
        os.waitpid(pid, 0)
        for fd in (ready_r, ready_w, done_r, done_w):
            os.close(fd)
        parent.close()
        other.close()
