"""SQLite vs PostgreSQL for one library, in one run.

    python benchmarks/bench_database.py [--generations 100] [--references 100000]

Prints figures; asserts nothing about timing. Needs PostgreSQL at 127.0.0.1:5432 (user
``postgres``, trust auth; ``REFSTUDIO_TEST_PG`` names another server's ``postgres`` database);
it creates and drops databases named ``rs_bench_*``.

1. Generating: 4 processes, each ``Studio.generate(n=N)`` on one shared library against a
   zero-latency simulator (an account running 64 at once, flat outputs, so the database is
   what is measured).
   Per backend: state changes committed per second (4 per generation: pending, submitting,
   submitted, completed; wall time of the slowest process) and the p50/p95 latency of every
   write transaction (BEGIN to COMMIT, SQLAlchemy's engine events in each process).
2. Listing: ``Studio.references()`` (what ``ref list`` prints) on a library of 100,000
   references, each with one image and one tag; median of 3.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ADMIN = os.environ.get("REFSTUDIO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
KEY = "bench-key-0123456789"

WORKER = r"""
import json, sys, time
from sqlalchemy import event
from refstudio import Studio
root, n, base_url, go, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
with Studio.open(root) as studio:
    studio.provider_options["wavespeed"] = {"api_key": key, "base_url": base_url}
    began, spans = {}, []
    engine = studio.db.engine
    event.listen(engine, "begin", lambda conn: began.__setitem__(id(conn), time.perf_counter()))
    def committed(conn):
        start = began.pop(id(conn), None)
        if start is not None:
            spans.append(time.perf_counter() - start)
    event.listen(engine, "commit", committed)
    from pathlib import Path
    while not Path(go).exists():
        time.sleep(0.002)
    t0 = time.perf_counter()
    gens = studio.generate("a bench picture", n=n, provider="wavespeed", resolution="720p")
    wall = time.perf_counter() - t0
    assert all(g.status == "completed" for g in gens), [g.error for g in gens]
print(json.dumps({"wall": wall, "spans": spans}))
"""


def admin() -> Any:
    return create_engine(ADMIN.replace("postgresql://", "postgresql+psycopg://", 1),
                         isolation_level="AUTOCOMMIT")


def pg_database(name: str) -> str:
    engine = admin()
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return ADMIN.rsplit("/", 1)[0] + "/" + name


def drop(name: str) -> None:
    engine = admin()
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    engine.dispose()


def project(root: Path, url: str | None, concurrency: int) -> Path:
    from refstudio import Studio

    Studio.init(root).close()
    toml = root / "refstudio.toml"
    # The smallest poll lag: on a zero-latency simulator the poll schedule, not the database,
    # would otherwise set the pace.
    text_ = "poll_lag = 0.05\n" + toml.read_text().replace("concurrency = 2",
                                                           f"concurrency = {concurrency}")
    if url:
        (root / "library.db").unlink()
        text_ = f'database_url = "{url}"\n' + text_
    toml.write_text(text_)
    return root


def generating(root: Path, per_process: int) -> dict[str, float]:
    from refstudio.simulator import Simulator, SimulatorConfig

    go = root.parent / f"go-{root.name}"
    env = {**os.environ, "REFSTUDIO_NO_PROGRESS": "1"}
    # Flat outputs: drawing previews (~45 ms of CPU each) would cap the figure well below what
    # either database can do.
    with Simulator(SimulatorConfig(latency=0.0, jitter=0.0, key=KEY, account_concurrency=64,
                                   plain_outputs=True)) as sim:
        # Warm-up: the engine learns from this library's history that tasks take no time, so
        # its poll plan stops assuming the 20 s of a real Gen-4 task.
        from refstudio import Studio

        with Studio.open(root) as studio:
            studio.provider_options["wavespeed"] = {"api_key": KEY, "base_url": sim.base_url}
            studio.generate("warm-up", n=8, provider="wavespeed", resolution="720p")
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(root), str(per_process),
                                   sim.base_url, str(go), KEY], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(4)]
        time.sleep(3.0)  # every worker opened the library and waits for the signal
        go.touch()
        outs = []
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise SystemExit(err)
            outs.append(json.loads(out.strip().splitlines()[-1]))
    spans = sorted(s for o in outs for s in o["spans"])
    wall = max(o["wall"] for o in outs)
    changes = 4 * 4 * per_process  # the warm-up is not counted
    return {"changes_per_s": changes / wall, "wall": wall,
            "p50_ms": 1000 * statistics.median(spans),
            "p95_ms": 1000 * spans[int(0.95 * (len(spans) - 1))], "commits": len(spans)}


def fill(root: Path, count: int) -> None:
    """``count`` references with one image (one shared asset) and one tag each, inserted in
    bulk through SQLAlchemy Core on the library's own engine."""
    from refstudio import Studio
    from refstudio.storage.tables import Asset, Reference, ReferenceImage, ReferenceTag, utcnow

    with Studio.open(root) as studio:
        now = utcnow()
        with studio.db.write_engine.begin() as conn:
            conn.execute(Asset.__table__.insert(), [{  # type: ignore[attr-defined]
                "sha256": "0" * 64, "path": "00/00/x.png", "format": "PNG", "width": 800,
                "height": 1000, "bytes": 1, "quality_json": "[]", "created_at": now}])
            asset_id = conn.execute(text("SELECT id FROM asset")).scalar()
            for start in range(0, count, 10_000):
                names = [f"ref{i:06d}" for i in range(start, min(count, start + 10_000))]
                conn.execute(Reference.__table__.insert(), [  # type: ignore[attr-defined]
                    {"name": n, "name_key": n, "kind": "character", "description": "",
                     "created_at": now, "updated_at": now} for n in names])
            ids = [r[0] for r in conn.execute(text("SELECT id FROM reference"))]
            for start in range(0, len(ids), 10_000):
                chunk = ids[start:start + 10_000]
                conn.execute(ReferenceImage.__table__.insert(), [  # type: ignore[attr-defined]
                    {"reference_id": i, "asset_id": asset_id, "is_primary": True, "position": 0,
                     "created_at": now} for i in chunk])
                conn.execute(ReferenceTag.__table__.insert(), [  # type: ignore[attr-defined]
                    {"reference_id": i, "tag": "bench"} for i in chunk])


def listing(root: Path, count: int) -> float:
    from refstudio import Studio

    times = []
    with Studio.open(root) as studio:
        for _ in range(3):
            t0 = time.perf_counter()
            refs = studio.references()
            times.append(time.perf_counter() - t0)
            assert len(refs) == count
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=100, help="per process")
    parser.add_argument("--references", type=int, default=100_000)
    args = parser.parse_args()
    tag = f"rs_bench_{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        try:
            backends = {"sqlite": None, "postgresql": pg_database(tag + "_gen")}
            print(f"4 processes x {args.generations} generations, zero-latency simulator")
            for name, url in backends.items():
                root = project(base / f"gen_{name}", url, concurrency=64)
                r = generating(root, args.generations)
                print(f"  {name:10} {r['changes_per_s']:8.0f} state changes/s   "
                      f"commit p50 {r['p50_ms']:6.1f} ms  p95 {r['p95_ms']:6.1f} ms   "
                      f"({r['commits']} commits, slowest process {r['wall']:.1f} s)")
            print(f"ref list on {args.references:,} references (median of 3)")
            backends["postgresql"] = pg_database(tag + "_list")
            for name, url in backends.items():
                root = project(base / f"list_{name}", url, concurrency=2)
                fill(root, args.references)
                print(f"  {name:10} {listing(root, args.references):8.2f} s")
        finally:
            drop(tag + "_gen")
            drop(tag + "_list")


if __name__ == "__main__":
    main()
