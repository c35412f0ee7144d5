"""Library benchmarks: CLI start-up, image import rate, and listing a large library.

Run:  python benchmarks/bench_library.py            (about 1-2 minutes on a 2-core machine)
      python benchmarks/bench_library.py --images 200 --refs 2000   (quicker)

Prints figures; asserts nothing about time. Everything happens in a temporary folder.

1. ``refstudio --help`` wall time (median of 10 runs) next to ``python -c pass``, and which of
   sqlmodel / sqlalchemy / httpx / PIL printing help imported (it should be none).
2. Importing N distinct 256x256 PNGs, images/s, next to the floor of reading + SHA-256 + a full
   Pillow decode of the same files, the ways users import: ``Studio.add_references`` (one batch,
   one reference per image), ``refstudio ref add NAME FILE…`` (the CLI, one reference holding
   all N), ``refstudio import`` of a pack of the N references, and for comparison one
   ``Studio.add_reference`` call per image (each call durable on its own, so it cannot share
   the flushes).
3. ``refstudio ref list`` (table and ``--json``, subprocess) and ``Studio.references()``
   (in-process) on a library of M references. The library is built with a few references added
   through the API, then cloned by bulk SQL inserts in one transaction (every clone has its own
   name, a tag and an image row pointing at one of the shared assets), which takes seconds
   instead of the minutes M API calls would.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HEAVY = ("sqlmodel", "sqlalchemy", "httpx", "PIL")


def cli_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m refstudio``."""
    script = Path(sys.executable).with_name("refstudio")
    return [str(script)] if script.exists() else [sys.executable, "-m", "refstudio"]


def median_wall(cmd: Sequence[str], runs: int, **kwargs: object) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                       **kwargs)  # type: ignore[call-overload]  # fmt: skip
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_call(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def heavy_imports_for_help() -> list[str]:
    code = (
        "import contextlib, io, json, sys\n"
        "sys.argv = ['refstudio', '--help']\n"
        "from refstudio.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main()\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout.strip()))


def make_images(folder: Path, count: int) -> list[Path]:
    """``count`` distinct 256x256 PNGs: a random gradient, shapes and a little noise each."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True)
    rng = random.Random(1)
    base = Image.linear_gradient("L").resize((256, 256))
    paths = []
    for i in range(count):
        colour = tuple(rng.randrange(256) for _ in range(3))
        img = Image.merge("RGB", (base, base.rotate(90), Image.new("L", (256, 256), colour[2])))
        draw = ImageDraw.Draw(img)
        for _ in range(4):
            x, y = rng.randrange(200), rng.randrange(200)
            draw.ellipse((x, y, x + rng.randrange(20, 56), y + rng.randrange(20, 56)), fill=colour)
        noise = Image.frombytes("L", (256, 256), rng.randbytes(256 * 256)).convert("RGB")
        img = Image.blend(img, noise, 0.08)
        path = folder / f"img{i:05d}.png"
        img.save(path, "PNG", compress_level=1)  # fast to make; still a real PNG
        paths.append(path)
    return paths


def floor_rate(paths: list[Path]) -> float:
    """Images/s for only reading, hashing and fully decoding: what any importer must do."""
    from PIL import Image

    start = time.perf_counter()
    for path in paths:
        data = path.read_bytes()
        hashlib.sha256(data).hexdigest()
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    return len(paths) / (time.perf_counter() - start)


def import_rate(root: Path, paths: list[Path]) -> tuple[float, int]:
    """One ``add_reference`` call per image."""
    from refstudio import Studio

    with Studio.init(root) as studio:
        start = time.perf_counter()
        for i, path in enumerate(paths):
            studio.add_reference(f"img{i:05d}", [path])
        elapsed = time.perf_counter() - start
        count = len(studio.references())
    return len(paths) / elapsed, count


def batch_rate(root: Path, paths: list[Path]) -> tuple[float, int]:
    """One ``add_references`` call for all images."""
    from refstudio import Studio

    with Studio.init(root) as studio:
        start = time.perf_counter()
        studio.add_references([{"name": f"img{i:05d}", "images": [p]}
                               for i, p in enumerate(paths)])
        elapsed = time.perf_counter() - start
        count = len(studio.references())
    return len(paths) / elapsed, count


def cli_rate(root: Path, paths: list[Path]) -> tuple[float, int]:
    """``refstudio ref add sheet FILE…`` (process start included)."""
    from refstudio import Studio

    Studio.init(root).close()
    start = time.perf_counter()
    subprocess.run([*cli_command(), "--project", str(root), "ref", "add", "sheet",
                    *map(str, paths)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # a quality warning per small image
    elapsed = time.perf_counter() - start
    with Studio.open(root) as studio:
        count = len(studio.reference("sheet").images)
    return len(paths) / elapsed, count


def pack_rate(source: Path, root: Path, pack: Path) -> tuple[float, int]:
    """``refstudio import`` of a pack holding every reference of ``source`` (process start
    included)."""
    from refstudio import Studio

    with Studio.open(source) as studio:
        studio.export_pack([r.name for r in studio.references()], pack)
    Studio.init(root).close()
    start = time.perf_counter()
    subprocess.run([*cli_command(), "--project", str(root), "import", str(pack)], check=True,
                   stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    with Studio.open(root) as studio:
        count = len(studio.references())
    return count / elapsed, count


def build_large_library(root: Path, seeds: list[Path], total: int) -> float:
    """A few references through the API, cloned by bulk SQL to ``total``. Returns seconds."""
    from refstudio import Studio

    start = time.perf_counter()
    with Studio.init(root) as studio:
        for i, path in enumerate(seeds):
            studio.add_reference(f"seed{i:02d}", [path], tags=["seed"], description="a seed")
    conn = sqlite3.connect(root / "library.db")
    try:
        with conn:
            assets = [r[0] for r in conn.execute("SELECT id FROM asset ORDER BY id")]
            now = "2025-01-01 00:00:00.000000"
            first = conn.execute("SELECT max(id) FROM reference").fetchone()[0] + 1
            clones = range(first, first + total - len(seeds))
            conn.executemany(
                "INSERT INTO reference (id, name, name_key, kind, description, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (i, f"Ref{i:05d}", f"ref{i:05d}", ("character", "location")[i % 2],
                     f"reference number {i}", now, now)
                    for i in clones
                ),
            )  # fmt: skip
            conn.executemany(
                "INSERT INTO referencetag (reference_id, tag) VALUES (?, ?)",
                ((i, f"group{i % 20}") for i in clones),
            )
            conn.executemany(
                "INSERT INTO referenceimage (reference_id, asset_id, label, is_primary, position,"
                " source_file, created_at) VALUES (?, ?, 'main', 1, 0, NULL, ?)",
                ((i, assets[i % len(assets)], now) for i in clones),
            )
    finally:
        conn.close()
    return time.perf_counter() - start


def row(label: str, value: str, note: str = "") -> str:
    return f"| {label:<46} | {value:>14} | {note:<40} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="images to import (part 2)")
    parser.add_argument("--refs", type=int, default=10_000, help="references to list (part 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--only", choices=("startup", "import", "list"),
                        help="run only this part")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="refstudio-bench-"))
    lines: list[str] = []
    try:
        cli = cli_command()
        if args.only in (None, "startup"):
            lines += startup_lines(cli)
        if args.only in (None, "import"):
            lines += import_lines(work, args.images)
        if args.only in (None, "list"):
            lines += list_lines(work, cli, args.refs)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    rule = "|" + "-" * 48 + "|" + "-" * 16 + "|" + "-" * 42 + "|"
    print()
    print(f"refstudio library benchmark: Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)")
    print(row("measure", "figure", "note"))
    print(rule)
    print("\n".join(lines))


def startup_lines(cli: list[str]) -> list[str]:
    """1. start-up"""
    t_help = median_wall([*cli, "--help"], 10)
    t_pass = median_wall([sys.executable, "-c", "pass"], 10)
    heavy = heavy_imports_for_help()
    lines = [
        row("`refstudio --help` (median of 10)", f"{t_help * 1000:.0f} ms", "target <= 150 ms"),
        row("`python -c pass` (median of 10)", f"{t_pass * 1000:.0f} ms", "interpreter floor"),
        row("heavy modules imported by --help", ", ".join(heavy) or "none",
            "of " + "/".join(HEAVY)),
    ]  # fmt: skip
    print("\n".join(lines), flush=True)
    return lines


def import_lines(work: Path, images: int) -> list[str]:
    """2. importing images, the ways users do, next to the floor"""
    t0 = time.perf_counter()
    paths = make_images(work / "images", images)
    made = time.perf_counter() - t0
    floor = floor_rate(paths)
    batch, count = batch_rate(work / "batch", paths)
    assert count == images
    cli, count = cli_rate(work / "cli", paths)
    assert count == images
    packed, count = pack_rate(work / "batch", work / "pack", work / "all.zip")
    assert count == images
    rate, count = import_rate(work / "import", paths)
    assert count == images
    mb = sum(p.stat().st_size for p in paths) / 1e6
    lines = [
        row(f"import {images} 256x256 PNGs (add_references)", f"{batch:.0f} img/s",
            f"{floor / batch:.1f}x the floor; target <= 3x"),
        row(f"`refstudio ref add` of {images} files", f"{cli:.0f} img/s",
            f"{floor / cli:.1f}x the floor; one reference"),
        row(f"`refstudio import` of a {images}-reference pack", f"{packed:.0f} img/s",
            f"{floor / packed:.1f}x the floor"),
        row(f"{images} add_reference calls, one each", f"{rate:.0f} img/s",
            f"{floor / rate:.1f}x the floor; each call durable"),
        row("floor: read + sha256 + full decode", f"{floor:.0f} img/s", f"{mb:.0f} MB of PNGs"),
    ]  # fmt: skip
    print("\n".join(lines), f"  (making the images took {made:.1f} s)", flush=True)
    return lines


def list_lines(work: Path, cli: list[str], refs: int) -> list[str]:
    """3. listing a large library"""
    from refstudio import Studio

    seeds = sorted((work / "images").glob("*.png"))[:8] or make_images(work / "seeds", 8)
    big = work / "big"
    built = build_large_library(big, seeds, refs)
    with Studio.open(big) as studio:
        everything = studio.references()
        n, middle = len(everything), everything[len(everything) // 2].name
        t_api = median_call(studio.references, 5)
        t_tag = median_call(lambda: studio.references(tag="group3"), 5)
        t_one = median_call(lambda: studio.reference(middle.upper()), 20)
    assert n == refs, n
    t_list = median_wall([*cli, "--project", str(big), "ref", "list"], 3,
                         env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    t_json = median_wall([*cli, "--project", str(big), "ref", "list", "--json"], 3)
    return [
        row(f"build {refs} refs (8 via API + bulk SQL)", f"{built:.1f} s", ""),
        row(f"`refstudio ref list` ({n} refs, table)", f"{t_list * 1000:.0f} ms",
            "subprocess, median of 3"),
        row(f"`refstudio ref list --json` ({n} refs)", f"{t_json * 1000:.0f} ms",
            "subprocess, median of 3"),
        row(f"Studio.references() ({n} refs)", f"{t_api * 1000:.0f} ms",
            "in-process, median of 5"),
        row(f"Studio.references(tag=...) ({n // 20} match)", f"{t_tag * 1000:.0f} ms",
            "in-process, median of 5"),
        row("Studio.reference(name)", f"{t_one * 1000:.1f} ms", "in-process, median of 20"),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
