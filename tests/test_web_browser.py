"""The whole loop in a real browser: Playwright driving Debian's Chromium against a running
``refstudio serve`` app (uvicorn on a free 127.0.0.1 port).

Upload references → compose with ``@`` completion → Generate (the offline provider, then the
project's WaveSpeed simulator) → watch the live cards → Promote with a Name → the new
reference and its lineage. Throughout: no console error, no page error, no dialog, and every
request the browser makes goes to the server under test (all others are aborted and listed).
Controls are found by their accessible names (Prompt, Generate, Promote, Name), as a screen
reader finds them. Screenshots go to ``test-artifacts/web-*.png`` (gitignored).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import encode_image, run_cli
from web_support import WebServer

from refstudio import Studio

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
SIM_DEFAULTS = {"latency": 1.5}

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install chromium; .ci/run tries to install it)",
)


class Watch:
    """Everything the page did wrong: console errors, exceptions, dialogs, foreign requests."""

    def __init__(self, page: Any, base: str) -> None:
        self.problems: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: m.type in ("error", "assert") and self.problems.append(
            f"console.{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))

        def on_dialog(dialog: Any) -> None:
            self.problems.append(f"dialog: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)

        def route(request_route: Any) -> None:
            url = request_route.request.url
            self.requests.append(url)
            if url.startswith(base + "/") or url == base:
                request_route.continue_()
            else:
                self.problems.append(f"request left the server: {url}")
                request_route.abort()

        page.context.route("**/*", route)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def project_root(tmp_path: Path) -> Path:
    Studio.init(tmp_path / "proj").close()
    return tmp_path / "proj"


def _open(browser: Any, server: WebServer) -> tuple[Any, Watch]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page, Watch(page, server.url)


def _upload(page: Any, server: WebServer, tmp_path: Path, name: str, kind: str,
            size: tuple[int, int], seed: int) -> None:
    src = tmp_path / f"{name}.png"
    src.write_bytes(encode_image(size, seed=seed))
    page.goto(server.url + "/")
    page.get_by_text("Add a reference").click()
    page.get_by_label("Reference name").fill(name)
    page.get_by_label("Kind").last.select_option(kind)
    page.get_by_label("Images").set_input_files(str(src))
    page.get_by_role("button", name="Add reference").click()
    page.wait_for_url(re.compile(rf".*/refs/{name}\b.*"))
    page.get_by_text(f"Added @{name} with 1 image(s)").wait_for()


def _complete(page: Any, typed: str, option: str) -> None:
    """Type into Prompt, wait for the completion, take it with Enter."""
    prompt = page.get_by_label("Prompt")
    prompt.press_sequentially(typed, delay=30)
    page.get_by_role("option", name=option).wait_for()
    prompt.press("Enter")


def _images_loaded(page: Any, selector: str) -> int:
    return int(page.evaluate(
        """(sel) => [...document.querySelectorAll(sel)]
              .filter(img => img.complete && img.naturalWidth > 0).length""", selector))


def _loaded_images(page: Any, selector: str, timeout: float = 20.0) -> int:
    """How many of ``selector``'s images loaded, once none is still loading: thumbnails are
    made on first request, which on a busy machine can outlast the page's own load event."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(
            "(sel) => [...document.querySelectorAll(sel)].every(img => img.complete)", selector):
        assert time.monotonic() < deadline, f"images of {selector} still loading"
        time.sleep(0.05)
    return _images_loaded(page, selector)


def _until(page: Any, predicate: str, timeout: float = 20.0) -> None:
    """Poll a JavaScript predicate (``page.wait_for_function`` evaluates a string, which the
    studio's CSP rightly forbids; ``evaluate`` runs through DevTools instead)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate):
        assert time.monotonic() < deadline, f"never true: {predicate}"
        time.sleep(0.05)


def _wait_cards(page: Any, count: int, timeout: float = 30.0) -> list[str]:
    """Wait until ``count`` generation cards show ``completed`` with their output image."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        states = page.locator(".watching article.gen .status").all_inner_texts()
        seen.extend(s for s in states if not seen or seen[-1] != s)
        if (len(states) == count and all(s == "completed" for s in states)
                and _images_loaded(page, ".watching .output img") == count):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"cards did not complete; states seen: {seen}")


def test_the_loop_in_a_browser_on_the_offline_provider(browser: Any, project_root: Path,
                                                       tmp_path: Path) -> None:
    with WebServer(project_root) as server:
        page, watch = _open(browser, server)
        _upload(page, server, tmp_path, "mara", "character", (800, 1000), seed=1)
        _upload(page, server, tmp_path, "tavern", "location", (1200, 800), seed=2)
        page.goto(server.url + "/")
        assert page.locator(".grid .card").count() == 2
        assert _loaded_images(page, ".grid img") == 2

        # Compose: @ completion as you type, the bound thumbnails and the estimate follow.
        page.goto(server.url + "/compose")
        page.get_by_label("Provider").select_option("offline")
        _complete(page, "@ma", "@mara (character)")
        page.get_by_label("Prompt").press_sequentially("sitting in @tav", delay=30)
        page.get_by_role("option", name="@tavern (location)").wait_for()
        page.get_by_label("Prompt").press("Tab")
        assert page.get_by_label("Prompt").input_value() == "@mara sitting in @tavern "
        page.get_by_label("Count").fill("2")
        _until(page, """() => document.querySelectorAll('#bound img').length === 2 &&
                           document.querySelector('#estimate').textContent.startsWith('2 ×')""")
        assert "estimated $0.00" in page.locator("#estimate").inner_text()
        assert _loaded_images(page, "#bound img") == 2
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web-compose.png"))

        page.get_by_role("button", name="Generate").click()
        page.wait_for_url(re.compile(r".*/generations\?watch=1,2$"))
        _wait_cards(page, 2)
        page.screenshot(path=str(ARTIFACTS / "web-generations.png"), full_page=True)

        # Promote the second output: the button asks for a Name first.
        second = page.locator("#gen-2 form.promote")
        second.get_by_role("button", name="Promote").click()
        second.get_by_label("Name").fill("mara_v2")
        second.get_by_label("Kind").select_option("character")
        second.get_by_label("Label").fill("hearth")
        second.get_by_role("button", name="Promote").click()
        page.wait_for_url(re.compile(r".*/refs/mara_v2\b.*"))
        page.get_by_text("Promoted output 2:0 to @mara_v2").wait_for()
        lineage = page.locator(".lineage")
        assert "generation 2:0" in lineage.inner_text()
        # The chain: output 2:0 ← its inputs @mara and @tavern ← their uploaded files.
        assert lineage.locator(".input > a").all_inner_texts() == ["@mara", "@tavern"]
        assert "file mara.png" in lineage.inner_text()
        assert _loaded_images(page, ".lineage img") == 3  # the output, and both inputs
        page.screenshot(path=str(ARTIFACTS / "web-lineage.png"), full_page=True)

        # The new reference is in the library and completes in Compose.
        page.goto(server.url + "/?q=mara")
        assert page.locator(".grid .card .name").all_inner_texts() == ["@mara", "@mara_v2"]
        page.goto(server.url + "/compose")
        _complete(page, "@mara_", "@mara_v2 (character)")
        assert page.get_by_label("Prompt").input_value() == "@mara_v2 "

        # History: search by text, by reference, by state.
        page.goto(server.url + "/generations?q=sitting&ref=tavern&status=completed")
        assert page.locator(".history article.gen").count() == 2
        page.goto(server.url + "/generations?q=no+such+words")
        assert page.locator(".history article.gen").count() == 0
        assert watch.problems == []
        assert all(u.startswith(server.url) for u in watch.requests)
        assert len(watch.requests) > 20
        page.context.close()


def test_a_prompt_with_script_shows_as_text(browser: Any, project_root: Path,
                                            tmp_path: Path) -> None:
    hostile = "@mara at night <script>alert(1)</script><img src=x onerror=alert(2)>"
    with Studio.open(project_root) as studio:
        src = tmp_path / "mara.png"
        src.write_bytes(encode_image((800, 1000), seed=1))
        studio.add_reference("mara", [src])
    with WebServer(project_root) as server:
        page, watch = _open(browser, server)
        page.goto(server.url + "/compose")
        page.get_by_label("Provider").select_option("offline")
        page.get_by_label("Prompt").fill(hostile)
        page.get_by_role("button", name="Generate").click()
        page.wait_for_url(re.compile(r".*/generations\?watch=1$"))
        _wait_cards(page, 1)
        prompt = page.locator("#gen-1 .prompt").inner_text()
        assert "<script>alert(1)</script><img src=x onerror=alert(2)>" in prompt
        assert page.locator("#gen-1 script, #gen-1 img[src='x']").count() == 0
        assert watch.problems == []
        page.context.close()


def test_the_simulator_progress_and_the_cli_sees_work_the_browser_left(
        browser: Any, project_root: Path, tmp_path: Path, make_sim: Any) -> None:
    sim = make_sim()
    with Studio.open(project_root) as studio:
        src = tmp_path / "mara.png"
        src.write_bytes(encode_image((800, 1000), seed=1))
        studio.add_reference("mara", [src])
    options = {"wavespeed": {"api_key": "sim-key", "base_url": sim.base_url,
                             "simulated": True}}
    with WebServer(project_root, provider_options=options) as server:
        page, watch = _open(browser, server)
        page.goto(server.url + "/compose")
        page.get_by_label("Provider").select_option("wavespeed")
        _complete(page, "@ma", "@mara (character)")
        page.get_by_label("Prompt").press_sequentially("in the rain", delay=10)
        page.get_by_label("Count").fill("2")
        page.get_by_role("button", name="Generate").click()
        page.wait_for_url(re.compile(r".*/generations\?watch=1,2$"))
        states = _wait_cards(page, 2)
        # Live progress came over the event stream: states before completed were shown.
        assert {"submitted", "uploading", "submitting", "downloading", "pending"} & set(states)
        assert watch.problems == []
        assert all(u.startswith(server.url) for u in watch.requests)

        # Start another and close the browser at once: the server keeps it going.
        page.goto(server.url + "/compose?provider=wavespeed&prompt=%40mara+at+dawn")
        page.get_by_role("button", name="Generate").click()
        page.wait_for_url(re.compile(r".*/generations\?watch=3$"))
        page.context.close()
        deadline = time.monotonic() + 30
        while True:
            shown = run_cli("-p", str(project_root), "history", "--json")
            assert shown.returncode == 0, shown.stderr
            gens = {g["id"]: g for g in json.loads(shown.stdout)}
            if gens.get(3, {}).get("status") == "completed":
                break
            assert time.monotonic() < deadline, gens.get(3)
            time.sleep(0.3)
        assert gens[3]["provider"] == "wavespeed" and gens[3]["outputs"]


WORKFLOW = """
[[step]]
id = "scene"
prompt = "@mara by the hearth"
variants = 2
promote = { name = "mara_hearth", kind = "character", pick = "manual" }

[[step]]
id = "refine"
prompt = "@mara_hearth walking out at dawn"
"""


def test_a_workflow_plans_runs_pauses_for_a_pick_and_continues(
        browser: Any, project_root: Path, tmp_path: Path) -> None:
    with Studio.open(project_root) as studio:
        src = tmp_path / "mara.png"
        src.write_bytes(encode_image((800, 1000), seed=1))
        studio.add_reference("mara", [src])
    (project_root / "workflows" / "hearth.toml").write_text(WORKFLOW)
    with WebServer(project_root) as server:
        page, watch = _open(browser, server)
        page.goto(server.url + "/workflows")
        page.get_by_role("link", name="hearth").click()
        # The dry run: the order and the plan, nothing sent.
        assert page.locator("table.plan tbody tr td:first-child").all_inner_texts() == [
            "scene", "refine"]
        assert "Nothing was sent" in page.locator("main").inner_text()
        with Studio.open(project_root) as studio:
            assert studio.history(limit=None) == []
        page.get_by_label("Provider").select_option("offline")
        page.get_by_role("button", name="Run").click()
        page.wait_for_url(re.compile(r".*/workflows/runs/1$"))
        # Per-step progress arrives over the event stream until the manual pick pauses it.
        page.locator("#run-1 .status", has_text="paused").wait_for(timeout=30_000)
        assert page.locator("tr.step-paused td:first-child").all_inner_texts() == ["scene"]
        page.locator(".candidates a").first.click()
        form = page.locator("form.promote").first
        form.get_by_role("button", name="Promote").click()
        form.get_by_label("Name").fill("mara_hearth")
        form.get_by_role("button", name="Promote").click()
        page.wait_for_url(re.compile(r".*/refs/mara_hearth\b.*"))
        page.goto(server.url + "/workflows/runs/1")
        page.get_by_role("button", name="Run again").click()
        page.wait_for_url(re.compile(r".*/workflows/runs/2$"))
        page.locator("#run-2 .status", has_text="completed").wait_for(timeout=30_000)
        states = dict(zip(page.locator("#run-2 td:first-child").all_inner_texts(),
                          page.locator("#run-2 td:nth-child(2)").all_inner_texts(), strict=True))
        assert states == {"scene": "reused", "refine": "completed"}
        assert watch.problems == []
        page.context.close()
