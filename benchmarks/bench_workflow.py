"""The storyboard workflow on the simulator: wall time vs the critical path of server task times.

The critical path is the longest dependency chain of the plan, each step weighing its slowest
task's server time (from the simulator's stats); the target is wall time <= 1.15x that. Also
prints the submits per step (new paid requests; the simulator's accepted total must match).

    python benchmarks/bench_workflow.py [--latency 3] [--jitter 1] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from refstudio import Studio
from refstudio.app.demo import draw_sources
from refstudio.simulator import Simulator, SimulatorConfig

PROJECTS = Path(__file__).resolve().parent.parent / "projects"


def critical_path(plan: Any, step_time: dict[str, float]) -> float:
    """Longest chain of step times through the plan's dependencies (steps in plan order)."""
    finish: dict[str, float] = {}
    for step in plan.steps:
        start = max((finish[d] for d in step.depends_on), default=0.0)
        finish[step.id] = start + step_time[step.id]
    return max(finish.values())


def one_run(latency: float, jitter: float, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "storyboard"
        shutil.copytree(PROJECTS / "storyboard", root,
                        ignore=shutil.ignore_patterns("library.db*", "media", "sources"))
        draw_sources(root / "sources")
        config = SimulatorConfig(latency=latency, jitter=jitter, seed=seed)
        with Simulator(config) as sim, Studio.open(root) as studio:
            studio.provider_options["wavespeed"] = {"api_key": "k", "base_url": sim.base_url}
            plan = studio.plan_workflow("storyboard")
            started = time.perf_counter()
            started_epoch = time.time()
            report = studio.run_workflow("storyboard", provider="wavespeed", concurrency=16)
            wall = time.perf_counter() - started
            stats = sim.stats()
            assert report.status == "completed", report
            by_task = stats["tasks"]
            step_time: dict[str, float] = {}
            for step in report.steps:
                ids = [studio.generation(g).request_id for g in step.generation_ids]
                step_time[step.id] = max(by_task[i]["server_time"] for i in ids)
            submits = {s.id: s.submitted for s in report.steps}
            assert sum(submits.values()) == stats["submits_accepted"]
            return {
                "wall": wall,
                "critical": critical_path(plan, step_time),
                "submits": submits,
                "accepted": stats["submits_accepted"],
                "polls_per_task": stats["polls_per_task"],
                "lag": stats["mean_detection_lag"],
                "first_submit": min(t["created_at"] for t in by_task.values()) - started_epoch,
                "levels": plan.levels,
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=3.0)
    parser.add_argument("--jitter", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ratios = []
    for i in range(args.runs):
        result = one_run(args.latency, args.jitter, seed=100 + i)
        ratio = result["wall"] / result["critical"]
        ratios.append(ratio)
        if i == 0:
            print("levels:", " | ".join(", ".join(level) for level in result["levels"]))
            print("submits per step:",
                  ", ".join(f"{k} {v}" for k, v in result["submits"].items()),
                  f"(total {sum(result['submits'].values())}, simulator accepted "
                  f"{result['accepted']})")
        print(f"run {i + 1}: wall {result['wall']:.2f} s, critical path of server times "
              f"{result['critical']:.2f} s, ratio {ratio:.3f}, "
              f"polls/task {result['polls_per_task']:.2f}, "
              f"mean detection lag {result['lag']:.2f} s, "
              f"first submit after {result['first_submit']:.2f} s")
    print(f"median ratio {statistics.median(ratios):.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
