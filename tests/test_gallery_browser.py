"""The gallery in a real browser: headless Chromium loads every page from ``file://``.

How: Chromium from the system packages (``apt-get install chromium``; ``.ci/run`` installs it),
driven over the DevTools protocol with ``--remote-debugging-pipe``: JSON messages separated by
NUL bytes on file descriptors 3 (to the browser) and 4 (from it). That needs no websocket
client and no Python dependency beyond the standard library, and unlike ``--dump-dom`` /
``--screenshot`` runs it sees console messages, JavaScript exceptions, failed resource loads and
each image's decoded state directly.

Checked on every page: no console errors, no JavaScript exceptions, no failed loads, no alert
dialogs, every ``<img>`` decodes, the stylesheet applies, and no ``<script>`` element exists. The
prompt holding ``<script>alert(1)</script>`` must read as that text. Screenshots go to
``test-artifacts/gallery*.png`` at the repository root (gitignored) for people to look at.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_gallery import XSS_PROMPT, make_gallery_project

from refstudio import Studio
from refstudio.gallery import build_gallery

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TIMEOUT = 30.0

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install chromium; .ci/run tries to install it)",
)

# Runs in the page after load. Lazy images below the fold would never load in a fixed viewport,
# so each image's URL is also decoded through a fresh Image: a broken file rejects.
CHECK_IMAGES = """
(async () => {
  const imgs = [...document.images];
  const broken = [];
  await Promise.all(imgs.map(async (img) => {
    const probe = new Image();
    probe.src = img.src;
    try { await probe.decode(); } catch (e) { broken.push(img.getAttribute('src')); return; }
    if (probe.naturalWidth === 0) broken.push(img.getAttribute('src'));
  }));
  return JSON.stringify({count: imgs.length, broken: broken});
})()
"""

PAGE_FACTS = """
JSON.stringify({
  scripts: document.querySelectorAll('script').length,
  styled: getComputedStyle(document.querySelector('header.top')).position === 'sticky',
  title: document.title,
  prompts: [...document.querySelectorAll('article.gen p.prompt')].map(p => p.textContent),
  html: document.documentElement.outerHTML,
})
"""


class DevTools:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, binary: str, profile: Path, log: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Chromium expects the pipe on fds 3 and 4 exactly; a tiny exec shim puts it there
        # (a shell cannot redirect to descriptors above 9, which pytest's may well be).
        shim = (
            "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
            "os.execv(sys.argv[3], sys.argv[3:])"
        )
        flags = [
            "--headless",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--mute-audio",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", shim, str(to_browser_r), str(from_browser_w), binary, *flags],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.log_path = log
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._cond = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                break
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    with self._cond:
                        self._replies[message["id"]] = message
                        self._cond.notify_all()
                else:
                    self._events.put(message)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _log_tail(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-2000:]

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = TIMEOUT,
    ) -> dict[str, Any]:
        """Send one command and return its result; raise on a protocol error or timeout."""
        self._next_id += 1
        msg_id = self._next_id
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while msg_id not in self._replies:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise RuntimeError(f"no answer to {method}; chromium said:\n{self._log_tail()}")
                self._cond.wait(left)
            reply = self._replies.pop(msg_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def events_until(self, method: str, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """Every event up to and including the first ``method`` event."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(
                    f"no {method} event; chromium said:\n{self._log_tail()}"
                ) from None
            seen.append(event)
            if event.get("method") == method:
                return seen

    def drain(self) -> list[dict[str, Any]]:
        """Events that arrived and were not read yet."""
        seen = []
        while True:
            try:
                seen.append(self._events.get_nowait())
            except queue.Empty:
                return seen

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # it may have died already: still reap it
            self.send("Browser.close", timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        self._reader.join(timeout=5)
        os.close(self._from_browser)
        self._log.close()


def _problems(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, exceptions, failed loads and dialogs among DevTools events."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            found.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            found.append(f"log: {entry.get('text')} {entry.get('url', '')}")
        elif method == "Page.javascriptDialogOpening":
            found.append(f"dialog: {params.get('message')}")
    return found


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("browser")
    root = make_gallery_project(base / "proj", base / "offline")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REFSTUDIO_OFFLINE_DIR", str(base / "offline"))
        with Studio.open(root) as studio:
            # One prompt on two models, so the compare page has columns to lay out.
            studio.compare(XSS_PROMPT, ["gen4", "nano-banana"], seed=3, provider="offline")
            return build_gallery(studio).out_dir


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevTools, str]]:
    assert CHROMIUM is not None
    base = tmp_path_factory.mktemp("chromium")
    tools = DevTools(CHROMIUM, base / "profile", base / "chromium.log")
    try:
        target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            tools.send(domain, session=session)
        tools.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 1100, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        yield tools, session
    finally:
        tools.close()


def _visit(tools: DevTools, session: str, page: Path) -> tuple[dict[str, Any], list[str]]:
    tools.drain()
    tools.send("Page.navigate", {"url": page.as_uri()}, session=session)
    events = tools.events_until("Page.loadEventFired")
    images = tools.send(
        "Runtime.evaluate",
        {"expression": CHECK_IMAGES, "awaitPromise": True, "returnByValue": True},
        session=session,
    )
    facts = tools.send(
        "Runtime.evaluate", {"expression": PAGE_FACTS, "returnByValue": True}, session=session
    )
    time.sleep(0.2)  # let late console/log events (a failed lazy load) arrive
    events += tools.drain()
    problems = _problems(events)
    result = json.loads(images["result"]["value"])
    problems += [f"broken image: {src}" for src in result["broken"]]
    data = json.loads(facts["result"]["value"])
    data["images"] = result["count"]
    return data, problems


def _screenshot(tools: DevTools, session: str, path: Path) -> None:
    shot = tools.send("Page.captureScreenshot", {"format": "png"}, session=session)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def test_every_page_loads_cleanly(browser: tuple[DevTools, str], gallery: Path) -> None:
    tools, session = browser
    pages = sorted(gallery.glob("*.html"))
    assert len(pages) == 6  # with compare.html
    for page in pages:
        facts, problems = _visit(tools, session, page)
        assert problems == [], f"{page.name}: {problems}"
        assert facts["scripts"] == 0, page.name
        assert facts["styled"], f"{page.name}: gallery.css did not apply"
        assert facts["images"] >= 2, page.name
        shot = {
            "index.html": "gallery.png",
            "generations.html": "gallery-generations.png",
            "lineage-mara_v2.html": "gallery-lineage.png",
            "compare.html": "gallery-compare.png",
        }.get(page.name)
        if shot:
            _screenshot(tools, session, ARTIFACTS / shot)
    assert (ARTIFACTS / "gallery.png").stat().st_size > 10_000


def test_script_in_a_prompt_renders_as_text(browser: tuple[DevTools, str], gallery: Path) -> None:
    tools, session = browser
    facts, problems = _visit(tools, session, gallery / "generations.html")
    assert problems == []
    assert facts["scripts"] == 0
    # The prompt reads exactly as written, tags and all, with @mara_v2 as a link.
    assert XSS_PROMPT in facts["prompts"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in facts["html"]
    assert '<a class="mention" href="index.html#ref-mara_v2">@mara_v2</a>' in facts["html"]
