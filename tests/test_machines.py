"""Two "machines" (processes with their own project folders and machine names) on one
PostgreSQL library and one 2-at-once provider account: never more than 2 tasks in flight at the
provider in total, nothing submitted twice; a killed engine's work is left alone while its lease
runs and collected by the other machine's resume once it has expired."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from conftest import db_rows, run_cli

KEY = "sim-key-machines-0123456789"
#: Long enough for a resume to start and finish on a busy machine while the lease runs.
LEASE_S = 8.0
SIM_DEFAULTS = {"key": KEY, "account_concurrency": 2, "seed": 8}


def _machine(tmp_path: Path, name: str, database: str, sim_url: str) -> tuple[Path, dict[str, str]]:
    root = tmp_path / name
    assert run_cli("init", str(root)).returncode == 0
    (root / "library.db").unlink()
    toml = root / "refstudio.toml"
    toml.write_text(f'database_url = "{database}"\nlease_seconds = {LEASE_S}\n'
                    f'author = "{name}"\n' + toml.read_text())
    env = {**os.environ, "REFSTUDIO_MACHINE": name, "WAVESPEED_API_KEY": KEY,
           "WAVESPEED_BASE_URL": sim_url, "REFSTUDIO_NO_PROGRESS": "1", "COLUMNS": "200"}
    return root, env


def _two_machines(tmp_path: Path, database: str,
                  sim_url: str) -> list[tuple[Path, dict[str, str]]]:
    """Machines A and B on one library, made once (by A) before either starts work."""
    machines = [_machine(tmp_path, name, database, sim_url)
                for name in ("machine_a", "machine_b")]
    run_cli("-p", str(machines[0][0]), "ref", "list")
    return machines


def _now(root: Path) -> datetime:
    """The database server's clock (what leases are compared with here is UTC)."""
    return datetime.now(timezone.utc)


def _start(root: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "refstudio", "-p", str(root), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_machines_share_the_account_and_never_submit_twice(
    tmp_path: Path, pg_database: str, make_sim: object
) -> None:
    sim = make_sim(latency=0.6)  # type: ignore[operator]
    (a, env_a), (b, env_b) = _two_machines(tmp_path, pg_database, sim.base_url)
    procs = [_start(root, env, "gen", f"a picture from {root.name}", "-n", "5",
                    "--seed", str(seed), "--provider", "wavespeed", "--resolution", "720p",
                    "--json")
             for root, env, seed in ((a, env_a, 1000), (b, env_b, 2000))]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    for code, _, err in results:
        assert code == 0, err
    stats = sim.stats()
    assert stats["max_tasks_in_flight"] <= 2
    assert stats["submits_received"] == 10  # one per generation: nothing twice
    # The machines' runs overlapped (otherwise the limit above proves nothing): neither
    # machine shut the other out by taking each freed slot again at once.
    spans = [[t for t in stats["tasks"].values() if t["seed"] in range(first, first + 5)]
             for first in (1000, 2000)]
    (a_start, a_end), (b_start, b_end) = ((min(t["created_at"] for t in ts),
                                           max(t["completed_at"] for t in ts)) for ts in spans)
    assert a_start < b_end and b_start < a_end, "the two machines' runs did not overlap"
    rows = db_rows(a, "SELECT author, status, count(*) FROM generation GROUP BY author, status "
                      "ORDER BY author")
    assert rows == [("machine_a", "completed", 5), ("machine_b", "completed", 5)]
    # Who did what: history --by.
    mine = json.loads(run_cli("-p", str(b), "history", "--by", "machine_a", "--json").stdout)
    assert len(mine) == 5 and {g["author"] for g in mine} == {"machine_a"}


def test_a_killed_machines_work_waits_for_its_lease(
    tmp_path: Path, pg_database: str, make_sim: object
) -> None:
    sim = make_sim(latency=2.5)  # type: ignore[operator]
    (a, env_a), (b, env_b) = _two_machines(tmp_path, pg_database, sim.base_url)
    proc = _start(a, env_a, "gen", "a long one", "-n", "3", "--provider", "wavespeed",
                  "--resolution", "720p")
    deadline = time.monotonic() + 60
    while db_rows(a, "SELECT count(*) FROM generation WHERE status = 'submitted'") != [(2,)]:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    [(owner, expires_at)] = db_rows(a, "SELECT owner, expires_at FROM engine_lease")
    assert owner.startswith(f"{proc.pid}@machine_a#")

    # The lease still runs: machine B's resume leaves A's work alone.
    early = run_cli("-p", str(b), "resume", env=env_b)
    assert early.returncode == 0, early.stderr
    assert _now(a) < expires_at, "the resume outlasted the lease: raise LEASE_S"
    states = db_rows(a, "SELECT status, count(*) FROM generation GROUP BY status ORDER BY status")
    assert states == [("pending", 1), ("submitted", 2)]
    assert sim.stats()["submits_received"] == 2

    while _now(a) <= expires_at:
        time.sleep(0.2)
    late = run_cli("-p", str(b), "resume", env=env_b)
    assert late.returncode == 0, late.stderr
    states = db_rows(a, "SELECT status, count(*) FROM generation GROUP BY status")
    assert states == [("completed", 3)]
    stats = sim.stats()
    assert stats["submits_received"] == 3  # the two accepted ones collected, never resent
    assert stats["max_tasks_in_flight"] <= 2



def test_a_waiting_machine_gets_the_next_free_slot(pg_database: str, tmp_path: Path) -> None:
    """Whoever found every slot taken gets the next free one, before the one who freed it
    (else a machine with a long batch shuts the others out until it ends)."""
    from refstudio.storage.database import Database
    from refstudio.storage.dburl import parse_database_url
    from refstudio.storage.slots import SharedSlots

    db = Database(parse_database_url(pg_database, root=tmp_path, source="test",
                                     allow_password=False))
    first, second = SharedSlots(db, "wavespeed:line", 2), SharedSlots(db, "wavespeed:line", 2)
    try:
        assert [first.try_acquire(), second.try_acquire(), second.try_acquire()] == [0, 1, None]
        first.release(0)
        assert first.try_acquire() is None  # second is in line
        assert second.try_acquire() == 0
        assert first.try_acquire() is None  # now first is in line ...
        second.close()  # ... and a closed holder (a dead process) gives everything back,
        # once the server has seen its connection go (closed, not kept in a pool).
        deadline = time.monotonic() + 10
        while (got := first.try_acquire()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        # Either slot may come first: a look tries 0 then 1, and the server may free the
        # closed holder's locks between the two tries.
        assert got is not None and {got, first.try_acquire()} == {0, 1}
    finally:
        first.close()
        second.close()
        db.dispose()
