"""refstudio's Runway provider vs the official ``runwayml`` SDK, same simulator, same run.

    python benchmarks/bench_runway.py [--quick]

Prints figures; asserts nothing about timing. 20 generations started at once; the simulated
Runway organisation runs 5 tasks at a time (later ones wait as THROTTLED); a task takes
8 s ± 2 s of server time. Each client runs in its own child process and the simulator in
another, so neither competes with the other for the GIL. Detection lag and request counts come
from the simulator's own stats (``GET /_sim/stats``).

Clients (median of three batches, alternating):

* refstudio: ``Studio.generate(n=20, provider="runway")``, the public path as users run it
  (one organisation read sizes the concurrency from the tier and checks credits and today's
  limit; the project keeps its history, so later batches poll on a learned schedule);
* runwayml SDK: 20 threads, each ``text_to_image.create(...).wait_for_task_output()`` with the
  SDK's defaults (a poll every 6 s ± 1.5 s), then downloading the output (the same work).

Figures, per client:

* wall / floor: client wall time over the server's own makespan (first accepted create to the
  last task's end): what a client that noticed everything at once would wait;
* slowest: the longest task (server time, queueing excluded);
* mean / max detection lag: how long after a task finished the client first saw it finished;
* requests / generation: every API request (creates, polls, organisation reads) over n;
  downloads (one per generation for both) are left out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from _remote_sim import RemoteSim, run_json_child

KEY = "key_bench_runway"
N = 20
LATENCY, JITTER, CONCURRENCY = 8.0, 2.0, 5
TARGETS = {"mean_lag": 0.5}
PROMPT = "a harbour at dawn, take {i}"


# ----------------------------------------------------------------------------- child processes


def child_refstudio(args: argparse.Namespace) -> dict[str, Any]:
    import os

    os.environ["RUNWAYML_API_SECRET"] = KEY
    os.environ["RUNWAYML_BASE_URL"] = args.base_url
    from refstudio import Studio

    studio = Studio.open(args.project)
    t0, started = time.perf_counter(), time.time()
    try:
        infos = studio.generate(PROMPT.format(i=args.seed), n=args.n, provider="runway",
                                resolution="720p", seed=args.seed)
    finally:
        studio.close()
    return {"wall": time.perf_counter() - t0, "started": started,
            "statuses": [i.status for i in infos]}


def child_sdk(args: argparse.Namespace) -> dict[str, Any]:
    import runwayml

    statuses = ["?"] * args.n
    client = runwayml.RunwayML(api_key=KEY, base_url=args.base_url)  # SDK defaults otherwise

    def one(i: int) -> None:
        try:
            task = client.text_to_image.create(model="gen4_image", ratio="1280:720",
                                               prompt_text=PROMPT.format(i=i),
                                               seed=args.seed + i)
            done = task.wait_for_task_output()
            for url in done.output:  # refstudio downloads too: same work
                httpx.get(url, timeout=60).raise_for_status()
            statuses[i] = "completed"
        except Exception as exc:  # a benchmark reports failures, it does not stop on them
            statuses[i] = f"failed: {exc}"

    t0, started = time.perf_counter(), time.time()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"wall": time.perf_counter() - t0, "started": started, "statuses": statuses}


# ----------------------------------------------------------------------------- orchestration


def run_child(kind: str, base_url: str, n: int, seed: int, project: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, "--base-url", base_url, "--n", str(n),
           "--seed", str(seed), "--project", str(project)]
    return run_json_child(cmd, kind, timeout=600)


def figures(result: dict[str, Any], stats: dict[str, Any], n: int) -> dict[str, Any]:
    tasks = list(stats["tasks"].values())
    makespan = max(t["completed_at"] for t in tasks) - min(t["created_at"] for t in tasks)
    api_requests = stats["requests"] - stats["downloads"] - 1  # the stats read itself
    return {
        "wall": result["wall"],
        "wall_ratio": result["wall"] / makespan,
        "slowest": max(t["server_time"] for t in tasks),
        "mean_lag": stats["mean_detection_lag"],
        "max_lag": stats["max_detection_lag"],
        "req_per_gen": api_requests / n,
        "throttled": sum(t["started_at"] > t["created_at"] + 1e-6 for t in tasks),
        "completed": f"{sum(s == 'completed' for s in result['statuses'])}/{n}",
    }


def main(quick: bool = False) -> None:
    repeats = 1 if quick else 3
    sim = RemoteSim(latency=LATENCY, jitter=JITTER, key=KEY, seed=7,
                    runway_concurrency=CONCURRENCY, runway_daily_limit=100000)
    rows: dict[str, list[dict[str, Any]]] = {"refstudio": [], "runwayml SDK": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            project = Path(tmp) / "proj"
            subprocess.run([sys.executable, "-m", "refstudio", "init", str(project)],
                           check=True, capture_output=True)
            for round_ in range(repeats):
                for name, kind in (("refstudio", "refstudio"), ("runwayml SDK", "sdk")):
                    sim.reset()
                    result = run_child(kind, sim.base_url, N, 1000 * (round_ + 1), project)
                    rows[name].append(figures(result, sim.stats(), N))
    finally:
        sim.stop()

    print(f"{N} generations at once; server time {LATENCY:g} s ± {JITTER:g} s; THROTTLED beyond "
          f"{CONCURRENCY} at once; median of {repeats} batch(es)\n")
    head = (f"{'client':<14} {'wall s':>7} {'wall/floor':>10} {'slowest s':>9} "
            f"{'mean lag s':>10} {'max lag s':>9} {'req/gen':>8} {'throttled':>9}  done")
    print(head)
    print("-" * len(head))
    medians: dict[str, dict[str, float]] = {}
    for name, batches in rows.items():
        med = {k: statistics.median(b[k] for b in batches)
               for k in ("wall", "wall_ratio", "slowest", "mean_lag", "max_lag", "req_per_gen",
                         "throttled")}
        medians[name] = med
        print(f"{name:<14} {med['wall']:>7.1f} {med['wall_ratio']:>10.3f} {med['slowest']:>9.1f} "
              f"{med['mean_lag']:>10.2f} {med['max_lag']:>9.2f} {med['req_per_gen']:>8.2f} "
              f"{med['throttled']:>9.0f}  {' '.join(b['completed'] for b in batches)}")
    ours, sdk = medians["refstudio"], medians["runwayml SDK"]
    print(f"\ntargets: mean lag < {TARGETS['mean_lag']} s (refstudio {ours['mean_lag']:.2f} s, "
          f"SDK {sdk['mean_lag']:.2f} s); requests/gen <= SDK's "
          f"(refstudio {ours['req_per_gen']:.2f}, SDK {sdk['req_per_gen']:.2f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one batch per client")
    parser.add_argument("--child", choices=("refstudio", "sdk"))
    parser.add_argument("--base-url")
    parser.add_argument("--n", type=int, default=N)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--project")
    ns = parser.parse_args()
    if ns.child == "refstudio":
        print(json.dumps(child_refstudio(ns)))
    elif ns.child == "sdk":
        print(json.dumps(child_sdk(ns)))
    else:
        main(quick=ns.quick)
