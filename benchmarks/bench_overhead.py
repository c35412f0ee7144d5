"""Client overhead per generation against a zero-latency simulator (issue 5's measure).

The simulator runs in its own process (``refstudio simulator --latency 0``) so this process's CPU
time is the client's alone: database writes, the request/response work, downloading the output,
hashing and storing it. Wall time per generation also includes the simulator rendering the PNG,
which is printed next to it as the floor a client cannot go under.

    python benchmarks/bench_overhead.py [--count 100] [--resolution 720p]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from refstudio import Studio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(base: str) -> None:
    for _ in range(100):
        try:
            httpx.get(f"{base}/_sim/stats", timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("simulator did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--resolution", default="720p")
    parser.add_argument("--aspect-ratio", default="1:1")
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "refstudio", "simulator", "--port", str(port), "--latency", "0",
         "--jitter", "0", "--key", "bench"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_up(base)
        with tempfile.TemporaryDirectory() as tmp:
            studio = Studio.init(Path(tmp) / "p")
            studio.provider_options["wavespeed"] = {"api_key": "bench", "base_url": base}
            opts = {"provider": "wavespeed", "resolution": args.resolution,
                    "aspect_ratio": args.aspect_ratio}
            studio.generate("warm up the connection and the poll history", **opts)
            walls, cpus = [], []
            for i in range(args.count):
                w0, c0 = time.perf_counter(), time.process_time()
                [gen] = studio.generate(f"overhead probe {i}", seed=i + 1, **opts)
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
                assert gen.status == "completed", gen.error
            stats = httpx.get(f"{base}/_sim/stats").json()
            # The same work in batches: one engine (one client, one poll loop) per 16 images,
            # which is how -n and workflows run; per-call setup is then shared.
            batch_cpus, batch_walls = [], []
            for i in range(max(1, args.count // 16)):
                w0, c0 = time.perf_counter(), time.process_time()
                gens = studio.generate(f"batch probe {i}", n=16, seed=1000 + 16 * i, **opts)
                batch_walls.append((time.perf_counter() - w0) / 16)
                batch_cpus.append((time.process_time() - c0) / 16)
                assert all(g.status == "completed" for g in gens)
            studio.close()
        # The simulator's own cost of making one output (render + PNG encode), same size.
        from refstudio.models import catalog
        from refstudio.models.sizes import Size
        from refstudio.providers.offline.previews import encode_png, render_preview

        gen4 = catalog.get("gen4")
        size = gen4.output_size(gen4.options_for(Size.of(args.aspect_ratio, args.resolution)))
        assert size is not None
        w, h = size
        renders = []
        for i in range(10):
            t0 = time.perf_counter()
            encode_png(render_preview(width=w, height=h, prompt=f"p{i}", references=[], seed=i))
            renders.append(time.perf_counter() - t0)
    finally:
        server.terminate()
        server.wait()

    ms = 1000.0
    print(f"{args.count} generations, {args.aspect_ratio} {args.resolution}, one at a time, "
          f"simulator latency 0 in a separate process (pid {os.getpid()} is the client)")
    print(f"{'measure':44} {'median':>9} {'p95':>9}")
    q = statistics.quantiles
    print(f"{'client CPU per generate() call':44} {statistics.median(cpus)*ms:8.1f}ms "
          f"{q(cpus, n=20)[-1]*ms:8.1f}ms   (includes client setup)")
    print(f"{'wall per generation (incl. server render)':44} {statistics.median(walls)*ms:8.1f}ms "
          f"{q(walls, n=20)[-1]*ms:8.1f}ms")
    floor = statistics.median(renders) * ms
    print(f"{'floor: simulator render+encode of 1 output':44} {floor:8.1f}ms")
    print(f"{'wall minus render floor':44} "
          f"{(statistics.median(walls) - statistics.median(renders))*ms:8.1f}ms")
    print(f"{'client CPU per generation, batches of 16':44} "
          f"{statistics.median(batch_cpus)*ms:8.1f}ms   target <= 20 ms")
    print(f"{'wall per generation, batches of 16':44} {statistics.median(batch_walls)*ms:8.1f}ms")
    per = (stats["submits_received"] + stats["polls"]) / (args.count + 1)
    print(f"requests per generation before download: {per:.2f} "
          f"(submits {stats['submits_received']}, polls {stats['polls']})")


if __name__ == "__main__":
    main()
