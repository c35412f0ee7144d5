"""The two speed targets of issue 12 in one run, each next to its floor or a peer.

Run:  python benchmarks/cli_startup.py [--runs 20] [--no-bytecode-cache]    (about 30-60 s)

1. ``refstudio --help`` (median of N runs, target < 100 ms), ``refstudio`` with no arguments
   and ``refstudio ref --help``, next to ``python -c pass`` (the interpreter's floor), ``python
   -c "import typer"`` (the floor of any typer CLI) and ``python -c "import click"`` (what a
   plain click CLI would start from; typer 0.29 vendors its own copy of click, so refstudio
   cannot build on plain click), then where the import time of ``--help`` goes (``-X
   importtime``, self time, by top-level group), so a slow start says which import to make lazy.
2. Resolving a 3-reference prompt in a 100,000-reference in-memory library (median and p95 per
   call, target < 50 us) next to 3 plain dict lookups.

Each start runs with its bytecode cached (in a temporary PYTHONPYCACHEPREFIX, even where
PYTHONDONTWRITEBYTECODE is set), as an installed package has it; ``--no-bytecode-cache`` measures
with the environment as it is. Wall times on a shared machine swing with its load (a start
waiting for a core is counted); CPU time (user + system) swings far less, so the target is read
on CPU time, next to the floors measured in the same run. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

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


#: The environment of every measured start (see ``child_env``).
ENV: dict[str, str] = dict(os.environ)


def child_env(cache: bool, cache_dir: str) -> dict[str, str]:
    """The environment, with bytecode written to and read from ``cache_dir`` when ``cache``.

    Without a cache (PYTHONDONTWRITEBYTECODE=1, as on the machine these figures come from) every
    start compiles refstudio's modules from source, which a user's installed copy never does,
    while typer's come precompiled from its wheel: refstudio would look slower than it is.
    """
    env = dict(os.environ)
    if cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache_dir
    return env


class Start(NamedTuple):
    label: str
    cmd: list[str]
    note: str
    exit_code: int = 0


def median_times(starts: Sequence[Start], runs: int) -> list[tuple[float, float]]:
    """Median wall time and median CPU time (user + system) of each start, in seconds.

    The starts take turns, run by run, so a change in the machine's load falls on all of them
    alike. CPU time swings far less than wall time with the load of a shared machine: a start
    waiting for a core is not counted.
    """

    def run(start: Start) -> tuple[float, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        done = subprocess.run(start.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=ENV)
        wall = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != start.exit_code:
            raise SystemExit(f"{' '.join(start.cmd)} exited {done.returncode}, "
                             f"not {start.exit_code}")
        return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime

    for start in starts:
        run(start)  # warm the page cache (and write the bytecode cache)
    samples: list[list[tuple[float, float]]] = [[] for _ in starts]
    for _ in range(runs):
        for i, start in enumerate(starts):
            samples[i].append(run(start))
    return [(statistics.median(w for w, _ in times), statistics.median(c for _, c in times))
            for times in samples]


def import_groups() -> list[tuple[str, float]]:
    """Milliseconds of import (self time, summed) per group, for ``refstudio --help``."""
    subprocess.run([sys.executable, "-c", HELP], capture_output=True, check=True, env=ENV)
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", HELP],
                          capture_output=True, text=True, check=True, env=ENV)
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
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="measure with the environment as it is (PYTHONDONTWRITEBYTECODE)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="refstudio-pyc-") as cache_dir:
        ENV.clear()
        ENV.update(child_env(not args.no_bytecode_cache, cache_dir))
        startup_figures(args.runs)
    print("prompt resolution:")
    print("\n".join(resolve_figures(20_000)))


def startup_figures(runs: int) -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s), load average {load:.1f}")
    cached = "PYTHONPYCACHEPREFIX" in ENV
    print("bytecode: " + ("cached in a temporary PYTHONPYCACHEPREFIX" if cached else
                          "as the environment has it (PYTHONDONTWRITEBYTECODE="
                          f"{ENV.get('PYTHONDONTWRITEBYTECODE', '')!r})"))
    cli, python = cli_command(), sys.executable
    starts = [
        Start("refstudio --help", [*cli, "--help"], "target < 100 ms"),
        Start("refstudio (no arguments)", cli, "the same help, exit 2", exit_code=2),
        Start("refstudio ref --help", [*cli, "ref", "--help"], "imports and builds one module"),
        Start("python -c pass", [python, "-c", "pass"], "interpreter floor"),
        Start("python -c 'import typer'", [python, "-c", "import typer"],
              "floor of a typer CLI"),
    ]
    if importlib.util.find_spec("click") is not None:
        starts.append(Start("python -c 'import click'", [python, "-c", "import click"],
                            "floor of a plain click CLI"))
    figures = median_times(starts, runs)
    print(f"start-up (median of {runs}, taking turns):  wall       CPU")
    for start, (wall, cpu) in zip(starts, figures, strict=True):
        print(f"  {start.label:<30} {wall * 1000:7.1f} ms {cpu * 1000:7.1f} ms   {start.note}")
    (help_wall, help_cpu), (typer_wall, typer_cpu) = figures[0], figures[4]
    print(f"  {'refstudio --help beyond typer':<30} {(help_wall - typer_wall) * 1000:7.1f} ms "
          f"{(help_cpu - typer_cpu) * 1000:7.1f} ms")
    print("import time of --help by group (self time, one run):")
    for group, ms in import_groups():
        if ms >= 0.5:
            print(f"  {group:<34} {ms:6.1f} ms")


if __name__ == "__main__":
    main()
