"""What checking the bound reference images before a generation is recorded costs.

    python benchmarks/media_verify.py [--mb 4] [--runs 5]

``Engine.record_many`` reads and hashes the media file of every image a batch binds before it
writes a row (``UploadCache.verify``): a missing or changed file is refused while nothing is
recorded or sent. This prints, for three references of about ``--mb`` MB each:

* the check itself (median of 20);
* the read + SHA-256 floor of the same files;
* ``refstudio gen "@mara in @tavern holding @lantern"`` on the offline provider, wall time of
  the whole command (median of ``--runs``), so the check can be seen next to what a user waits
  for; with ``--compare DIR``, also the same command run from another checkout (e.g. one
  without the check: ``git worktree add /tmp/old COMMIT``), the two alternating.

Asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from PIL import Image

from refstudio import Studio
from refstudio.engine.uploads import UploadCache
from refstudio.providers.offline import OfflineProvider


def noise_png(path: Path, mb: float) -> Path:
    """A PNG of random pixels (incompressible) of about ``mb`` MB."""
    side = int((mb * 1e6 / 3) ** 0.5)
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(
        path, optimize=False, compress_level=1)
    return path


def median_time(fn: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=4.0, help="size of each reference image")
    parser.add_argument("--runs", type=int, default=5, help="`refstudio gen` runs")
    parser.add_argument("--compare", type=Path, help="another checkout to time `gen` from")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        studio = Studio.init(tmp / "proj")
        names = ["mara", "tavern", "lantern"]
        for name in names:
            studio.add_reference(name, [noise_png(tmp / f"{name}.png", args.mb)])
        images = [studio.reference(n).primary for n in names]
        shas = [img.sha256 for img in images]
        paths = [Path(img.path) for img in images]
        sizes = [p.stat().st_size / 1e6 for p in paths]
        cache = UploadCache(studio.db, studio.store, OfflineProvider(cache_dir=tmp / "off"),
                            ttl=timedelta(hours=12))
        verify = median_time(lambda: cache.verify(shas), 20)
        floor = median_time(lambda: [hashlib.sha256(p.read_bytes()).hexdigest()
                                     for p in paths], 20)
        studio.close()
        env = {**os.environ, "REFSTUDIO_NO_PROGRESS": "1"}
        env.pop("WAVESPEED_API_KEY", None)
        cmd = [sys.executable, "-m", "refstudio", "-p", str(tmp / "proj"), "gen",
               "@mara in @tavern holding @lantern", "--resolution", "720p", "--provider", "offline"]

        def gen(checkout: Path | None) -> float:
            run_env = env if checkout is None else {**env, "PYTHONPATH": str(checkout)}
            start = time.perf_counter()
            # Not from this checkout's folder: `python -m` puts the working directory first.
            subprocess.run(cmd, env=run_env, check=True, capture_output=True, cwd=tmp)
            return time.perf_counter() - start

        walls: list[float] = []
        others: list[float] = []
        for _ in range(args.runs):
            walls.append(gen(None))
            if args.compare is not None:
                others.append(gen(args.compare.resolve()))
        wall = statistics.median(walls)
    print(f"3 references of {', '.join(f'{s:.1f}' for s in sizes)} MB")
    print(f"  check before recording (verify): {verify * 1e3:7.1f} ms (median of 20)")
    print(f"  read + sha256 floor:             {floor * 1e3:7.1f} ms")
    print(f"  `refstudio gen` offline, wall:   {wall * 1e3:7.1f} ms (median of {args.runs}); "
          f"the check is {verify / wall:.1%} of it")
    if others:
        other = statistics.median(others)
        print(f"  `refstudio gen` from {args.compare}: {other * 1e3:7.1f} ms "
              f"(difference {(wall - other) * 1e3:+.1f} ms)")


if __name__ == "__main__":
    main()
