"""Pay-safety under faults and kills, through the public path (a script, not a timed test).

    python benchmarks/faults.py            # 200 generations, 20 kill -9 trials (a few minutes)
    python benchmarks/faults.py --short    # 40 generations, 3 trials (CI; under a minute)

1. **Faults.** Generations go through ``refstudio gen`` subprocesses and concurrent
   ``AsyncStudio.generate`` calls in one process (the public ``Studio.generate`` verb, four at a
   time), against the project's WaveSpeed simulator answering ~20 % of requests with a fault:
   429 with Retry-After, 5xx before and after a task exists, dropped connections after a task
   exists, failed tasks, faulted polls.
2. **Kills.** ``refstudio gen -n 8`` is killed with SIGKILL at a random moment mid-batch, then
   ``refstudio resume`` runs in a new process.

The simulator keeps every task it accepted (each one billed) with its seed; every generation
has its own seed, so each task is matched to the generation that sent it. Printed:

- **duplicate paid submits**: generations the server accepted more than once (must be 0);
- **lost outputs**: paid work the library neither holds nor flags: a task the server completed
  whose generation is not ``completed`` with its output in ``media/`` (``unknown`` generations
  are flagged, not lost), a task no generation claims, a generation still open after resume, an
  output attached to the wrong task, a stored output whose bytes do not match its hash (must be 0);
- final **states**, and how many ``unknown`` generations ``refstudio reconcile`` resolved (``n/a``
  while the command does not exist; detected with ``refstudio reconcile --help``).

Exits 1 if any duplicate or lost output is seen (or a command fails in a way it should not).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEY = "sk-faults-script"
PER_CALL = 10  # generations per `refstudio gen` / `generate` call
KILL_BATCH = 8


@dataclass
class Tally:
    """What one part of the run found."""

    generations: int = 0
    states: collections.Counter[str] = field(default_factory=collections.Counter)
    duplicates: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    unknown_accepted: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def unknown(self) -> int:
        return self.states["unknown"]


# ------------------------------------------------------------------------------ the project


def faulty(latency: float, jitter: float, seed: int) -> Any:
    """A simulator answering ~20 % of requests with a fault. 5xx gets the largest share because
    half of them strike before the task exists (tests/test_engine_faults.py has the same matrix
    on the engine alone)."""
    from refstudio.simulator import SimulatorConfig

    return SimulatorConfig(latency=latency, jitter=jitter, key=KEY, seed=seed, retry_after=0.05,
                           fail_rate=0.04, rate_429=0.04, rate_5xx=0.08, drop_rate=0.04)


def make_project(root: Path, name: str) -> Path:
    """A project with one reference (so submits carry an upload) and a test-sized default."""
    from PIL import Image, ImageDraw

    from refstudio import Studio

    project = root / name
    source = root / f"{name}-mara.png"
    img = Image.linear_gradient("L").resize((768, 960)).convert("RGB")
    ImageDraw.Draw(img).ellipse((200, 200, 560, 700), fill=(180, 30, 30))
    img.save(source)
    with Studio.init(project) as studio:
        studio.add_reference("mara", [source], kind="character")
    toml = project / "refstudio.toml"
    toml.write_text(toml.read_text("utf-8").replace('"16:9"', '"1:1"')
                    .replace('"1080p"\n', '"720p"\n', 1), "utf-8")
    return project


def cli_env(home: Path, base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAVESPEED_", "REFSTUDIO_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), WAVESPEED_API_KEY=KEY,
               WAVESPEED_BASE_URL=base_url, REFSTUDIO_NO_PROGRESS="1", COLUMNS="200")
    return env


def cli(project: Path, env: dict[str, str], *args: str,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "refstudio", "--project", str(project), *args],
                          env=env, capture_output=True, text=True, timeout=timeout)


def cli_gen(project: Path, env: dict[str, str], seed: int, n: int) -> list[str]:
    """``refstudio gen`` of ``n`` variants from ``seed``; problems as text (none expected)."""
    done = cli(project, env, "gen", f"@mara walking the harbour, take {seed}", "-n", str(n),
               "--seed", str(seed), "--provider", "wavespeed", "--json")
    if done.returncode not in (0, 11) or "Traceback" in done.stderr:
        return [f"`refstudio gen --seed {seed}` exited {done.returncode}: "
                f"{done.stderr.strip()[-300:]}"]
    return []


async def api_round(project: Path, base_url: str, seeds: list[int]) -> list[str]:
    """Concurrent ``generate`` calls in one process (one per seed), like a notebook would."""
    from refstudio import AsyncStudio
    from refstudio.errors import RefstudioError

    studio = AsyncStudio.open(project)
    studio.provider_options = {"wavespeed": {"api_key": KEY, "base_url": base_url}}
    problems: list[str] = []

    async def one(seed: int) -> None:
        try:
            await studio.generate(f"@mara on the quay at dusk, take {seed}", n=PER_CALL,
                                  seed=seed, provider="wavespeed")
        except RefstudioError as exc:
            problems.append(f"generate(seed={seed}) raised {type(exc).__name__}: {exc}")

    try:
        await asyncio.gather(*(one(s) for s in seeds))
    finally:
        studio.close()
    return problems


# -------------------------------------------------------------------------------- accounting


def library_rows(project: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{project / 'library.db'}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        gens = [dict(r) for r in conn.execute("SELECT * FROM generation ORDER BY id")]
        outputs = collections.defaultdict(list)
        for row in conn.execute("SELECT output.generation_id, asset.path, asset.sha256 "
                                "FROM output JOIN asset ON asset.id = output.asset_id"):
            outputs[row["generation_id"]].append(dict(row))
    finally:
        conn.close()
    for gen in gens:
        gen["params"] = json.loads(gen["params_json"])
        gen["outputs"] = outputs.get(gen["id"], [])
    return gens


def seed_of(gen: dict[str, Any]) -> int | None:
    seed = gen["params"].get("seed")
    return None if seed is None else int(seed)


def account(project: Path, stats: dict[str, Any], seeds: set[int]) -> Tally:
    """Match the server's tasks (by seed) with the library's generations (by seed)."""
    tally = Tally()
    tasks: dict[int, list[tuple[str, dict[str, Any]]]] = collections.defaultdict(list)
    for task_id, task in stats["tasks"].items():
        if int(task["seed"]) in seeds:
            tasks[int(task["seed"])].append((task_id, task))
    gens = {seed_of(g): g for g in library_rows(project) if seed_of(g) in seeds}
    tally.generations = len(gens)
    media = project / "media"
    for seed, gen in gens.items():
        assert seed is not None
        where = f"generation #{gen['id']} (seed {seed})"
        status = gen["status"]
        tally.states[status] += 1
        accepted = tasks.get(seed, [])
        if len(accepted) > 1:
            tally.duplicates.append(f"{where} was accepted {len(accepted)} times")
        task_id, task = accepted[0] if accepted else (None, None)
        if status in ("pending", "submitting", "submitted"):
            tally.lost.append(f"{where} is still {status} after everything finished")
        elif status == "completed":
            if task_id is None or gen["request_id"] != task_id:
                tally.lost.append(f"{where} is completed with task {gen['request_id']}, but "
                                  f"the server's task for its seed is {task_id}")
            if not gen["outputs"]:
                tally.lost.append(f"{where} is completed without an output")
            for out in gen["outputs"]:
                path = media / out["path"]
                if not path.is_file():
                    tally.lost.append(f"{where}: output {path} is missing")
                elif hashlib.sha256(path.read_bytes()).hexdigest() != out["sha256"]:
                    tally.lost.append(f"{where}: output {path} does not match its hash")
        elif status == "failed" and task is not None and task["status"] == "completed":
            tally.lost.append(f"{where} is failed, but the server completed (and billed) "
                              f"task {task_id}")
        elif status == "unknown" and task is not None:
            tally.unknown_accepted += 1
    for seed in tasks.keys() - gens.keys():
        tally.lost.append(f"the server accepted a task with seed {seed} that no generation "
                          "claims")
    return tally


def reconcile(project: Path, env: dict[str, str]) -> str:
    """Run ``refstudio reconcile`` if it exists; return what it did, or ``n/a``."""
    if cli(project, env, "reconcile", "--help", timeout=60).returncode != 0:
        return "n/a"
    before = collections.Counter(g["status"] for g in library_rows(project))
    done = cli(project, env, "reconcile")
    after = collections.Counter(g["status"] for g in library_rows(project))
    if "Traceback" in done.stderr:
        return f"reconcile crashed: {done.stderr.strip()[-300:]}"
    resolved = before["unknown"] - after["unknown"]
    return (f"{resolved} of {before['unknown']} unknown resolved (exit {done.returncode}; "
            f"completed {before['completed']} -> {after['completed']})")


# -------------------------------------------------------------------------------- the parts


def fault_part(root: Path, n: int, seed: int) -> tuple[Tally, dict[str, Any], str]:
    from refstudio.simulator import Simulator

    project = make_project(root, "faults")
    problems: list[str] = []
    with Simulator(faulty(0.12, 0.07, seed)) as sim:
        env = cli_env(root / "home", sim.base_url)
        calls = n // PER_CALL
        first = 100_000
        cli_seeds = [first + i * PER_CALL for i in range(calls // 2)]
        api_seeds = [first + i * PER_CALL for i in range(calls // 2, calls)]
        for s in cli_seeds:
            problems += cli_gen(project, env, s, PER_CALL)
        for start in range(0, len(api_seeds), 4):
            problems += asyncio.run(api_round(project, sim.base_url, api_seeds[start:start + 4]))
        seeds = {s + i for s in cli_seeds + api_seeds for i in range(PER_CALL)}
        tally = account(project, sim.stats(), seeds)
        tally.problems += problems
        reconciled = reconcile(project, env)
        after = account(project, sim.stats(), seeds)
        tally.duplicates += [d for d in after.duplicates if d not in tally.duplicates]
        tally.lost += [x for x in after.lost if x not in tally.lost]
        return tally, sim.stats(), reconciled


def _statuses(project: Path, seeds: set[int]) -> dict[int, str]:
    try:
        return {seed_of(g): g["status"] for g in library_rows(project)  # type: ignore[misc]
                if seed_of(g) in seeds}
    except sqlite3.Error:
        return {}


def kill_part(root: Path, trials: int, seed: int) -> tuple[Tally, collections.Counter[str], str]:
    from refstudio.simulator import Simulator

    rng = random.Random(seed)
    project = make_project(root, "kills")
    at_kill: collections.Counter[str] = collections.Counter()
    problems: list[str] = []
    all_seeds: set[int] = set()
    with Simulator(faulty(0.8, 0.4, seed + 1)) as sim:
        env = cli_env(root / "home", sim.base_url)
        for trial in range(trials):
            first = 500_000 + trial * 100
            seeds = {first + i for i in range(KILL_BATCH)}
            all_seeds |= seeds
            proc = subprocess.Popen(
                [sys.executable, "-m", "refstudio", "--project", str(project), "gen",
                 f"@mara at the lighthouse, trial {trial}", "-n", str(KILL_BATCH), "--seed",
                 str(first), "--provider", "wavespeed", "--json"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                if _statuses(project, seeds):
                    break
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 1.2))  # anywhere from "rows written" to "mostly done"
            statuses = _statuses(project, seeds)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                at_kill.update(statuses.values())
            else:
                at_kill["(finished before the kill)"] += 1
            proc.communicate(timeout=30)
            time.sleep(0.1)
            done = cli(project, env, "resume")
            if done.returncode not in (0, 11) or "Traceback" in done.stderr:
                problems.append(f"trial {trial}: `refstudio resume` exited {done.returncode}: "
                                f"{done.stderr.strip()[-300:]}")
        tally = account(project, sim.stats(), all_seeds)
        tally.problems += problems
        reconciled = reconcile(project, env)
        after = account(project, sim.stats(), all_seeds)
        tally.duplicates += [d for d in after.duplicates if d not in tally.duplicates]
        tally.lost += [x for x in after.lost if x not in tally.lost]
    return tally, at_kill, reconciled


# ---------------------------------------------------------------------------------- report


def show(title: str, tally: Tally, reconciled: str) -> None:
    states = ", ".join(f"{k} {v}" for k, v in sorted(tally.states.items()))
    print(f"  generations: {tally.generations}   states: {states}")
    print(f"  duplicate paid submits: {len(tally.duplicates)}")
    print(f"  lost outputs: {len(tally.lost)}")
    print(f"  unknown: {tally.unknown} ({tally.unknown_accepted} of them accepted by the "
          f"server, so maybe paid)   reconciled: {reconciled}")
    for line in tally.duplicates + tally.lost + tally.problems:
        print(f"    ! {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true",
                        help="40 generations and 3 kill trials (for CI)")
    parser.add_argument("--seed", type=int, default=2024, help="seeds the faults and kills")
    args = parser.parse_args()
    n, trials = (40, 3) if args.short else (200, 20)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="refstudio-faults-") as tmp:
        root = Path(tmp)
        (root / "home").mkdir()
        faults, stats, fault_rec = fault_part(root, n, args.seed)
        print(f"faults: {n} generations ({n // 2} by `refstudio gen`, {n // 2} by "
              f"AsyncStudio.generate, 4 calls at once), ~20 % of requests faulted")
        print(f"  server: {stats['submits_received']} submits received, "
              f"{stats['submits_accepted']} accepted ({stats['submits_5xx_accepted']} answered "
              f"5xx and {stats['submits_dropped_accepted']} dropped after acceptance), "
              f"{stats['submits_rejected_429']} answered 429, "
              f"{stats['submits_5xx_not_accepted']} 5xx before acceptance, "
              f"{stats['polls_faulted']} polls faulted")
        show("faults", faults, fault_rec)
        kills, at_kill, kill_rec = kill_part(root, trials, args.seed)
        print(f"kill -9: {trials} trials of `refstudio gen -n {KILL_BATCH}` killed mid-batch, "
              "then `refstudio resume`")
        print("  at the kill: " + ", ".join(f"{k} {v}" for k, v in sorted(at_kill.items())))
        show("kills", kills, kill_rec)
    bad = (faults.duplicates or faults.lost or faults.problems or kills.duplicates
           or kills.lost or kills.problems)
    print(f"{'FAILED' if bad else 'ok'} in {time.monotonic() - started:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
