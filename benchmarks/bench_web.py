"""The web studio: library page time at 10,000 references, and simulator-to-page latency.

    python benchmarks/bench_web.py [--references 10000] [--requests 200] [--generations 10]

1. **Library page, 10,000 references.** A project with that many references (one shared
   256x256 image, so building it takes seconds, not minutes) served by ``refstudio serve``'s
   app under uvicorn on 127.0.0.1. Timed from the client over one keep-alive connection, so each
   figure is server time plus ~0.2 ms of loopback; p50/p95 of ``--requests`` requests each:
   the first page (60 cards), a search (``?q=ref_01``), a deep page (``?page=150``). Beside them,
   in the same run: the floor of this stack (``/static/studio.css``, a file), and the API part
   alone (``Studio.find_references``, one page) and ``Studio.references()`` (all 10,000, what
   ``refstudio ref list`` loads).
2. **Task completed at the simulator → its image shown in the page.** Headless Chromium
   (Playwright, Debian's ``/usr/bin/chromium``) opens the generations page of a batch made
   through the Compose form on the simulator (3 s ± 1 s); a MutationObserver notes the wall
   time each output ``<img>`` finishes loading. Against the simulator's own clock for when each
   task completed (same machine, same clock): mean / max of the whole path, split into its
   stages in the same run: the engine's detection lag (the simulator's stats: the first poll
   that saw it completed), the output stored (the generation's ``completed_at``), the card with
   its ``<img>`` in the page (the event stream), the image loaded (the thumbnail made).

Prints figures; asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import timezone
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from PIL import Image

from refstudio import Studio
from refstudio.app.studio import AsyncStudio
from refstudio.simulator import Simulator, SimulatorConfig
from refstudio.web import AccessPolicy, create_app


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(values: list[float]) -> str:
    return (f"p50 {statistics.median(values) * 1000:7.2f} ms   "
            f"p95 {_pct(values, 0.95) * 1000:7.2f} ms")


class Server:
    def __init__(self, root: Path, provider_options: dict[str, Any] | None = None) -> None:
        self.studio = AsyncStudio.open(root)
        self.studio.provider_options.update(provider_options or {})
        self.policy = AccessPolicy.for_host("127.0.0.1", 0)
        config = uvicorn.Config(create_app(self.studio, self.policy), host="127.0.0.1", port=0,
                                log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.policy.port = port
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def make_library(root: Path, count: int) -> None:
    image = root.parent / "ref.png"
    Image.linear_gradient("L").resize((256, 256)).convert("RGB").save(image)
    with Studio.init(root) as studio:
        for start in range(0, count, 1000):
            studio.add_references([
                {"name": f"ref_{i:05d}", "images": [image],
                 "kind": ("character", "location", "style", "object")[i % 4],
                 "tags": [f"set{i % 10}"], "description": f"reference number {i}"}
                for i in range(start, min(count, start + 1000))])


def bench_library(root: Path, requests: int) -> None:
    with Studio.open(root) as studio:
        api, every = [], []
        for _ in range(max(10, requests // 10)):
            t = time.perf_counter()
            studio.find_references("", limit=60)
            api.append(time.perf_counter() - t)
        for _ in range(3):
            t = time.perf_counter()
            studio.references()
            every.append(time.perf_counter() - t)
    with Server(root) as url, httpx.Client(base_url=url, timeout=30) as client:
        client.get("/")  # the session cookie; warm caches
        rows = {}
        for label, path in (("floor: /static/studio.css", "/static/studio.css"),
                            ("library page 1 (60 cards)", "/"),
                            ("search ?q=ref_01", "/?q=ref_01"),
                            ("deep page ?page=150", "/?page=150")):
            times = []
            for _ in range(requests):
                t = time.perf_counter()
                answer = client.get(path)
                times.append(time.perf_counter() - t)
                assert answer.status_code == 200
            rows[label] = times
        page = client.get("/").text
    count = page.count('class="card"')
    print(f"\nlibrary page, {root.name}: {count} cards per page, {requests} requests each")
    for label, times in rows.items():
        print(f"  {label:30s} {_ms(times)}")
    print(f"  {'API: find_references (1 page)':30s} {_ms(api)}")
    print(f"  {'API: references() (all)':30s} p50 {statistics.median(every) * 1000:7.1f} ms")


def bench_latency(tmp: Path, generations: int) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        print("\nsimulator → page: skipped (no chromium)")
        return
    root = tmp / "latency"
    image = tmp / "mara.png"
    Image.linear_gradient("L").resize((800, 1000)).convert("RGB").save(image)
    with Studio.init(root) as studio:
        studio.add_reference("mara", [image])
    root.joinpath("refstudio.toml").write_text(
        root.joinpath("refstudio.toml").read_text().replace("concurrency = 2",
                                                            f"concurrency = {generations}"))
    sim = Simulator(SimulatorConfig(latency=3.0, jitter=1.0)).start()
    options = {"wavespeed": {"api_key": "bench", "base_url": sim.base_url, "simulated": True}}
    try:
        with Server(root, options) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            # Tall enough that no output image is below the fold (they load lazily).
            page = browser.new_page(viewport={"width": 1280, "height": 900 * generations})
            # DevTools injects this (CSP does not apply to it): note when output images load.
            page.add_init_script("""
                window.__shown = {}; window.__inserted = {};
                new MutationObserver(() => {
                  for (const img of document.querySelectorAll('article.gen .output img')) {
                    if (img.dataset.timed) continue;
                    img.dataset.timed = '1';
                    const id = img.closest('article').dataset.gen;
                    window.__inserted[id] = window.__inserted[id] || Date.now() / 1000;
                    const note = () => { window.__shown[id] = Date.now() / 1000; };
                    if (img.complete && img.naturalWidth) note();
                    else img.addEventListener('load', note);
                  }
                }).observe(document, {childList: true, subtree: true});
            """)
            page.goto(f"{url}/compose?provider=wavespeed&n={generations}&prompt=%40mara+bench")
            page.get_by_role("button", name="Generate").click()
            page.wait_for_url("**/generations?watch=*")
            deadline = time.monotonic() + 60
            while True:
                shown = page.evaluate("() => window.__shown")
                if len(shown) >= generations or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            inserted = page.evaluate("() => window.__inserted")
            cards = page.evaluate("""() => [...document.querySelectorAll('article.gen')]
                .map(a => a.dataset.gen + ':' + a.querySelector('.status').textContent)""")
            browser.close()
            stats = sim.state.stats()
        if len(shown) < generations:
            print("  cards at the end:", cards)
        with Studio.open(root) as studio:
            gens = {str(g.id): g for g in studio.history(limit=None)}
        lags, stored, carded = [], [], []
        for gen_id, seen in shown.items():
            gen = gens[gen_id]
            task = sim.state.get_task(gen.request_id or "")
            assert task is not None and gen.completed_at is not None
            lags.append(seen - task.completed_at)
            done = gen.completed_at.replace(tzinfo=timezone.utc).timestamp()
            stored.append(done - task.completed_at)
            carded.append(inserted[gen_id] - task.completed_at)
    finally:
        sim.stop()
    print(f"\nsimulator → page, {len(lags)} of {generations} generations (3 s ± 1 s tasks)")
    print(f"  task completed → image shown in the page   mean {statistics.mean(lags):.3f} s   "
          f"max {max(lags):.3f} s")
    print(f"  task completed → engine saw it (sim stats) mean "
          f"{stats['mean_detection_lag']:.3f} s   max {stats['max_detection_lag']:.3f} s")
    print(f"  task completed → output stored, completed  mean {statistics.mean(stored):.3f} s   "
          f"max {max(stored):.3f} s")
    print(f"  task completed → card with <img> in page   mean {statistics.mean(carded):.3f} s   "
          f"max {max(carded):.3f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--references", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--generations", type=int, default=4)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        root = Path(tmp) / f"lib{args.references}"
        started = time.perf_counter()
        make_library(root, args.references)
        print(f"made {args.references} references in {time.perf_counter() - started:.1f} s")
        bench_library(root, args.requests)
        bench_latency(Path(tmp), args.generations)


if __name__ == "__main__":
    sys.exit(main())
