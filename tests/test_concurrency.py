"""Several processes writing one library at once: every add succeeds and the file stays sound."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import ImageMaker

from refstudio import Studio
from refstudio.app.project import write_new_project
from refstudio.storage.migrations import MIGRATIONS

WORKERS = 4
ADDS = 50
SHARED_IMAGES = 10

# Each worker imports refstudio and (optionally) opens the project, then waits for the "go" file
# so that all of them write at the same moment rather than one after another.
WORKER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    root, worker, adds, go, images_dir, open_first = sys.argv[1:7]
    worker, adds = int(worker), int(adds)
    images = sorted(Path(images_dir).glob("*.png"))

    from refstudio import Studio

    def wait() -> None:
        deadline = time.monotonic() + 60
        while not os.path.exists(go):
            if time.monotonic() > deadline:
                sys.exit("never got the go signal")
            time.sleep(0.005)

    if open_first == "1":
        studio = Studio.open(root)
        wait()
    else:
        wait()
        studio = Studio.open(root)
    with studio:
        for i in range(adds):
            image = images[(worker * 7 + i) % len(images)]
            studio.add_reference(f"w{worker}_ref{i:03d}", [image], tags=[f"worker{worker}"])
    print("done", worker)
    """
)


def run_workers(root: Path, images_dir: Path, tmp_path: Path, *, open_first: bool) -> float:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(root), str(w), str(ADDS), str(go), str(images_dir),
             "1" if open_first else "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WORKERS)
    ]  # fmt: skip
    time.sleep(1.5)  # let them import (and open) before the start signal
    start = time.monotonic()
    go.touch()
    try:
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    elapsed = time.monotonic() - start
    for w, (p, (out, err)) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"worker {w} failed:\n{err}"
        assert out.strip() == f"done {w}"
    return elapsed


def check_library(root: Path) -> None:
    conn = sqlite3.connect(root / "library.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("SELECT count(*) FROM reference").fetchone()[0] == WORKERS * ADDS
        assert conn.execute("SELECT count(*) FROM referenceimage").fetchone()[0] == WORKERS * ADDS
        # Shared images were stored once each, however many processes raced to store them.
        assert conn.execute("SELECT count(*) FROM asset").fetchone()[0] == SHARED_IMAGES
        per_worker = dict(conn.execute("SELECT tag, count(*) FROM referencetag GROUP BY tag"))
        assert per_worker == {f"worker{w}": ADDS for w in range(WORKERS)}
        ledger = [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY rowid")]
    finally:
        conn.close()
    with Studio.open(root) as studio:
        assert studio.db.migrate() == []  # nothing left to apply
        refs = studio.references()
    assert ledger == [m.name for m in MIGRATIONS]  # each applied once, in order
    assert len(refs) == WORKERS * ADDS
    assert all(len(r.images) == 1 and r.images[0].is_primary for r in refs)
    media = [p for p in (root / "media").rglob("*") if p.is_file()]
    assert len([p for p in media if ".tmp" not in p.parts]) == SHARED_IMAGES
    assert [p for p in media if p.suffix == ".part"] == []


def make_shared_images(make_image: ImageMaker, folder: Path) -> Path:
    for i in range(SHARED_IMAGES):
        make_image(folder / f"img{i:02d}.png", size=(256, 256), seed=100 + i)
    return folder


def test_four_processes_add_fifty_each(tmp_path: Path, make_image: ImageMaker) -> None:
    Studio.init(tmp_path / "p").close()
    images = make_shared_images(make_image, tmp_path / "images")
    elapsed = run_workers(tmp_path / "p", images, tmp_path, open_first=True)
    check_library(tmp_path / "p")
    assert elapsed < 60


def test_four_processes_open_a_fresh_library_together(
    tmp_path: Path, make_image: ImageMaker
) -> None:
    """The first open creates and migrates the database: four at once must agree."""
    write_new_project(tmp_path / "p")
    assert not (tmp_path / "p" / "library.db").exists()
    images = make_shared_images(make_image, tmp_path / "images")
    run_workers(tmp_path / "p", images, tmp_path, open_first=False)
    check_library(tmp_path / "p")
    assert os.path.getsize(tmp_path / "p" / "library.db") > 0
