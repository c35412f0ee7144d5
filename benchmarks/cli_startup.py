"""The two speed targets of issue 12 in one run, each next to its floor or a peer.

Run:  python benchmarks/cli_startup.py [--runs 20]      (about 10-20 s)

1. ``refstudio --help`` wall time (median of N runs, target < 100 ms) next to ``python -c
   pass`` (the interpreter's floor) and ``python -c "import typer"`` (the floor of any typer
   CLI), then where the import time of ``--help`` goes (``-X importtime``, cumulative, by
   top-level group), so a slow start says which import to make lazy.
2. Resolving a 3-reference prompt in a 100,000-reference in-memory library (median and p95 per
   call, target < 50 us) next to 3 plain dict lookups.

Wall times on a shared machine swing with its load; compare the ratios to the floors measured in
the same run. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HELP = (
    "import sys; sys.argv = ['refstudio', '--help']\n"
    "from refstudio.cli import main\n"
    "try:\n    main()\nexcept SystemExit:\n    pass\n"
)


def cli_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m refstudio``."""
    script = Path(sys.executable).with_name("refstudio")
    return [str(script)] if script.exists() else [sys.executable, "-m", "refstudio"]


def median_times(cmd: Sequence[str], runs: int) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system) of a command, in seconds.

    CPU time swings far less than wall time with the load of a shared machine: a start-up
    waiting for a core is not counted.
    """
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)  # warm the page cache
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def import_groups() -> list[tuple[str, float]]:
    """Milliseconds of import (self time, summed) per group, for ``refstudio --help``."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", HELP],
                          capture_output=True, text=True, check=True)
    groups: dict[str, float] = defaultdict(float)
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = (part.strip() for part in line[len("import time:"):].split("|"))
        top = name.split(".")[0]
        group = name if top == "refstudio" and name.count(".") <= 2 else top
        groups[group if top in ("refstudio", "typer", "click") else "stdlib and others"] += (
            int(self_us) / 1000)
    return sorted(groups.items(), key=lambda item: -item[1])


def per_call_us(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and p95 of ``runs`` calls, in microseconds (after a warm-up)."""
    for _ in range(min(200, runs)):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95)]


def resolve_figures(runs: int) -> list[str]:
    from refstudio.prompts import RefImage, RefRecord, resolve

    records: dict[str, RefRecord] = {}
    for i in range(100_000):
        name = f"ref{i:06d}"
        images = (
            RefImage(2 * i, "front", True, f"{i:064x}", f"media/{i}.png", 1024, 1024),
            RefImage(2 * i + 1, "side", False, f"{i + 1:064x}", f"media/{i}s.png", 1024, 1024),
        )
        records[name] = RefRecord(name, "character", f"reference {i}", ("a", "b"), images)

    class Lookup:
        def find(self, name: str) -> RefRecord | None:
            return records.get(name.lower())

        def all_names(self) -> list[str]:
            return [r.name for r in records.values()]

    lookup = Lookup()
    prompt = ("Cinematic still: @Ref012345 in a long red coat, standing in @ref054321:side at "
              "dusk, holding @ref099999; @ref012345 looks at the camera.")
    floor = per_call_us(lambda: [lookup.find(n) for n in ("a", "b", "c")], runs)
    timed = per_call_us(lambda: resolve(prompt, lookup), runs)
    return [
        f"  resolve() of a 3-reference prompt, 100,000 refs  median {timed[0]:6.1f} us   "
        f"p95 {timed[1]:6.1f} us   (target < 50 us)",
        f"  floor: 3 dict lookups                            median {floor[0]:6.1f} us   "
        f"p95 {floor[1]:6.1f} us",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per start-up figure")
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s), load average {load:.1f}")
    figures = [
        ("refstudio --help", median_times([*cli_command(), "--help"], args.runs),
         "target < 100 ms"),
        ("python -c pass", median_times([sys.executable, "-c", "pass"], args.runs),
         "interpreter floor"),
        ("python -c 'import typer'", median_times([sys.executable, "-c", "import typer"],
                                                  args.runs), "floor of a typer CLI"),
    ]
    print(f"start-up (median of {args.runs}):          wall       CPU")
    for label, (wall, cpu), note in figures:
        print(f"  {label:<26} {wall * 1000:7.1f} ms {cpu * 1000:7.1f} ms   {note}")
    (help_wall, help_cpu), (typer_wall, typer_cpu) = figures[0][1], figures[2][1]
    print(f"  {'refstudio beyond typer':<26} {(help_wall - typer_wall) * 1000:7.1f} ms "
          f"{(help_cpu - typer_cpu) * 1000:7.1f} ms")
    print("import time of --help by group (self time, one run):")
    for group, ms in import_groups():
        if ms >= 0.5:
            print(f"  {group:<34} {ms:6.1f} ms")
    print("prompt resolution:")
    print("\n".join(resolve_figures(20_000)))


if __name__ == "__main__":
    main()
