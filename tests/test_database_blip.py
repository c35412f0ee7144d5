"""The database server drops every connection of a PostgreSQL library in the middle of a
``refstudio gen`` (issue 14, "Bad input and faults"): the command ends with one clear line and a
documented exit code, or recovers by itself; nothing is submitted (paid) twice; and every paid
output is stored, hash-verified, by the time ``refstudio resume`` has run, even one that was
downloaded while the database could not record it.

Real parts only: a real ``refstudio gen`` process, the project's simulator over HTTP, and the
test server's own ``pg_terminate_backend`` / ``ALLOW_CONNECTIONS`` to cut the library off.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import db_rows, pg_admin, run_cli

from refstudio import DatabaseUnavailableError
from refstudio.storage.database import Database
from refstudio.storage.dburl import parse_database_url
from refstudio.storage.slots import SharedSlots

KEY = "sim-key-blip-0123456789abcdef"
#: Shown to nobody: the server trusts local logins, so libpq never even sends it.
PGPASSWORD = "pg-SENTINEL-never-shown"
SIM_DEFAULTS = {"key": KEY, "account_concurrency": 2, "seed": 14}
N = 2


def _project(tmp_path: Path, database: str, sim_url: str) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "studio"
    assert run_cli("init", str(root)).returncode == 0
    (root / "library.db").unlink()
    toml = root / "refstudio.toml"
    toml.write_text(f'database_url = "{database}"\n' + toml.read_text())
    env = {**os.environ, "REFSTUDIO_MACHINE": "blip", "WAVESPEED_API_KEY": KEY,
           "WAVESPEED_BASE_URL": sim_url, "REFSTUDIO_NO_PROGRESS": "1", "COLUMNS": "200",
           "PGPASSWORD": PGPASSWORD}
    assert run_cli("-p", str(root), "ref", "list", env=env).returncode == 0  # schema made
    return root, env


def _start_gen(root: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "refstudio", "-p", str(root), "gen", "a lighthouse at dusk",
         "-n", str(N), "--provider", "wavespeed", "--resolution", "720p"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_submitted(root: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while db_rows(root, "SELECT count(*) FROM generation WHERE status = 'submitted'") != [(N,)]:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)


def _terminate_all(database: str) -> int:
    """Every server connection to ``database`` killed, from an admin connection elsewhere;
    returns once the killed backends have exited (and so freed their locks)."""
    engine = pg_admin()
    try:
        with engine.connect() as conn:
            killed = conn.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)).scalar()
            return int(killed or 0)
    finally:
        engine.dispose()


@contextlib.contextmanager
def _outage(database: str) -> Iterator[None]:
    """The server refuses ``database`` for the block, and drops whoever is connected to it."""
    engine = pg_admin()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        _terminate_all(database)
        yield
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        engine.dispose()


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:  # a hang is a failure, not a stuck suite
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"refstudio gen hung after the drop:\n{out}\n{err}") from None
    return proc.returncode, out, err


def _assert_clean_end(code: int, out: str, err: str) -> None:
    """0 (it recovered by itself), or one `error:` line with the database's exit code."""
    assert "Traceback" not in err, err
    assert KEY not in out + err and PGPASSWORD not in out + err
    if code == 0:
        return
    assert code == DatabaseUnavailableError.exit_code, (code, out, err)
    lines = err.splitlines()
    assert sum(line.startswith("error:") for line in lines) == 1, err
    assert "cannot reach the database server" in lines[0]
    assert "run `refstudio resume`" in err  # the way back, not "nothing was changed"
    assert "nothing was changed" not in err


def _assert_all_stored(root: Path) -> None:
    """Every generation completed, each with its output whose media file matches its hash."""
    assert db_rows(root, "SELECT status, count(*) FROM generation GROUP BY status") == [
        ("completed", N)]
    rows = db_rows(root, "SELECT o.generation_id, a.sha256, a.path FROM output o "
                         "JOIN asset a ON a.id = o.asset_id ORDER BY o.generation_id")
    assert len(rows) == N and len({gen for gen, _, _ in rows}) == N
    for _, sha, rel in rows:
        media = root / "media" / rel
        assert media.is_file(), rel
        assert hashlib.sha256(media.read_bytes()).hexdigest() == sha


def _assert_nothing_half_written(root: Path) -> None:
    """Between the failed run and the resume: every row is one the resume can finish, and a
    `completed` row has its outputs (it is never marked done without them)."""
    states = dict(db_rows(root, "SELECT status, count(*) FROM generation GROUP BY status"))
    assert set(states) <= {"submitted", "completed"} and sum(states.values()) == N, states
    bare = db_rows(root, "SELECT count(*) FROM generation g WHERE g.status = 'completed' "
                         "AND NOT EXISTS (SELECT 1 FROM output o WHERE o.generation_id = g.id)")
    assert bare == [(0,)]


def _resume(root: Path, env: dict[str, str], sim: Any) -> None:
    result = run_cli("-p", str(root), "resume", env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert sim.stats()["submits_received"] == N  # collected, never sent again


def _ends_cleanly_then_resume_stores_all(proc: subprocess.Popen[str], root: Path,
                                         env: dict[str, str], sim: Any) -> None:
    """What any drop must come to: the run ends cleanly having paid each generation once,
    leaves nothing half-written, and a resume stores every output."""
    code, out, err = _finish(proc)
    _assert_clean_end(code, out, err)
    assert sim.stats()["submits_received"] == N
    _assert_nothing_half_written(root)
    _resume(root, env, sim)
    _assert_all_stored(root)


def test_every_connection_dropped_while_tasks_are_in_flight(
    tmp_path: Path, pg_database: str, make_sim: Any
) -> None:
    """A blip: every connection killed, again and again for half a second, reconnects too,
    while both tasks are at the provider."""
    sim = make_sim(latency=1.5)
    root, env = _project(tmp_path, pg_database, sim.base_url)
    database = pg_database.rsplit("/", 1)[1]
    proc = _start_gen(root, env)
    _wait_submitted(root, proc)
    killed = 0
    for _ in range(5):
        killed += _terminate_all(database)
        time.sleep(0.1)
    assert killed >= 1  # the engine really was connected (its slots, at least)
    assert sim.stats()["downloads"] == 0, "the tasks ended before the drop: raise the latency"
    _ends_cleanly_then_resume_stores_all(proc, root, env, sim)


def test_outputs_downloaded_during_an_outage_are_recorded_by_resume(
    tmp_path: Path, pg_database: str, make_sim: Any
) -> None:
    """The server is unreachable from while the tasks run until after their outputs were
    downloaded: the paid images cannot be recorded then, and must not be lost."""
    sim = make_sim(latency=1.5)
    root, env = _project(tmp_path, pg_database, sim.base_url)
    database = pg_database.rsplit("/", 1)[1]
    proc = _start_gen(root, env)
    _wait_submitted(root, proc)
    with _outage(database):
        deadline = time.monotonic() + 60
        while sim.stats()["downloads"] < N and proc.poll() is None:
            assert time.monotonic() < deadline, "the outputs were never downloaded"
            time.sleep(0.05)
        downloaded = sim.stats()["downloads"]
        time.sleep(1.0)  # the engine tries to record them while the server still refuses
    assert downloaded >= 1, "nothing was downloaded during the outage: it proves nothing"
    _ends_cleanly_then_resume_stores_all(proc, root, env, sim)


def test_slots_held_through_a_dropped_connection_are_taken_back(
    tmp_path: Path, pg_database: str
) -> None:
    """An account slot is a lock on a connection: when the server drops it, giving back one
    slot is no error, and the slots still in use are taken again on the new connection, so
    another machine cannot take them meanwhile (2 at once stays 2)."""
    db = Database(parse_database_url(pg_database, root=tmp_path, source="test",
                                     allow_password=False))
    mine, other = SharedSlots(db, "wavespeed:blip", 2), SharedSlots(db, "wavespeed:blip", 2)
    try:
        assert [mine.try_acquire(), mine.try_acquire()] == [0, 1]
        assert _terminate_all(pg_database.rsplit("/", 1)[1]) == 1
        mine.release(1)  # its lock went with the connection: done, not an error
        assert other.try_acquire() == 1
        assert other.try_acquire() is None  # slot 0 is still mine: taken back
        mine.release(0)  # on the new connection, which holds it
        assert other.try_acquire() == 0
    finally:
        mine.close()
        other.close()
        db.dispose()


def test_a_look_for_a_slot_reconnects_once_then_says_the_database_is_gone(
    tmp_path: Path, pg_database: str
) -> None:
    """Waiting for a slot over a dropped connection costs a reconnect; over a server that
    refuses the library, it is the database's one error (exit 14), not a driver traceback."""
    database = pg_database.rsplit("/", 1)[1]
    db = Database(parse_database_url(pg_database, root=tmp_path, source="test",
                                     allow_password=False))
    slots = SharedSlots(db, "wavespeed:blip", 2)
    try:
        assert slots.try_acquire() == 0
        assert _terminate_all(database) == 1
        assert slots.try_acquire() == 1  # a new connection, slot 0 taken back on it
        with _outage(database):
            slots.release(1)  # over a lost connection: given back with it, no error
            with pytest.raises(DatabaseUnavailableError, match="cannot reach the database"):
                slots.try_acquire()  # a look that cannot reconnect is the database's error
    finally:
        slots.close()
        db.dispose()
