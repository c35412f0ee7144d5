"""The API key appears nowhere: not in the project folder (database, WAL, media, toml), not in
stored error messages, not in logs or a CLI run's output, including after 401s and ambiguous 5xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ImageMaker, run_cli

from refstudio import Studio
from refstudio.engine import Engine, EngineSettings, PreparedRequest
from refstudio.engine.retry import Backoff
from refstudio.providers.wavespeed.client import WaveSpeedProvider
from refstudio.simulator import Simulator, SimulatorConfig

KEY = "sk-test-SECRET-abc123"
NEEDLES = (KEY.encode(), b"SECRET-abc123")

#: Runs the CLI with every logger (httpx, httpcore, refstudio) at DEBUG on stderr.
DEBUG_CLI = (
    "import logging, runpy, sys; logging.basicConfig(level=logging.DEBUG); "
    "sys.argv = ['refstudio', *sys.argv[1:]]; runpy.run_module('refstudio', run_name='__main__')"
)


@pytest.fixture
def sims(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Simulator]]:
    configs = {
        "ok": SimulatorConfig(latency=0.1, jitter=0.02, key=KEY, seed=1),
        "wrong_key": SimulatorConfig(latency=0.1, key="sk-some-other-key", seed=2),
        "ambiguous": SimulatorConfig(latency=0.1, key=KEY, seed=3, rate_5xx=1.0),
        "task_fails": SimulatorConfig(latency=0.1, key=KEY, seed=4, fail_rate=1.0),
    }
    started = {name: Simulator(cfg).start() for name, cfg in configs.items()}
    monkeypatch.setenv("WAVESPEED_API_KEY", KEY)
    try:
        yield started
    finally:
        for sim in started.values():
            sim.stop()


def _cli(root: Path, base_url: str, *args: str, debug: bool = False) -> tuple[int, str]:
    env = {**os.environ, "WAVESPEED_API_KEY": KEY, "WAVESPEED_BASE_URL": base_url,
           "COLUMNS": "200", "REFSTUDIO_NO_PROGRESS": "1"}
    head = [sys.executable, "-c", DEBUG_CLI] if debug else [sys.executable, "-m", "refstudio"]
    done = subprocess.run([*head, "-p", str(root), *args], env=env, capture_output=True,
                          text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


def _leaks(text: str | bytes) -> bool:
    data = text.encode() if isinstance(text, str) else text
    return any(needle in data for needle in NEEDLES)


def test_api_key_is_never_written_or_shown(
    sims: dict[str, Simulator],
    project: Studio,
    make_image: ImageMaker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    root = project.root
    project.add_reference("mara", [make_image(tmp_path / "mara.png", seed=2)])

    # 1. Success through the Studio, with a reference upload.
    monkeypatch.setenv("WAVESPEED_BASE_URL", sims["ok"].base_url)
    ok = project.generate("@mara at the harbour", n=2, seed=10, resolution="720p")
    assert [g.status for g in ok] == ["completed", "completed"]

    # 2. 401: the server does not know this key (submit or upload refused).
    monkeypatch.setenv("WAVESPEED_BASE_URL", sims["wrong_key"].base_url)
    denied = project.generate("@mara in the rain", n=1, seed=20, resolution="720p")
    assert denied[0].status == "failed"
    assert "401" in denied[0].error

    # 3. A task that fails on the server.
    monkeypatch.setenv("WAVESPEED_BASE_URL", sims["task_fails"].base_url)
    failed = project.generate("a storm", n=1, seed=30, resolution="720p")
    assert failed[0].status == "failed" and failed[0].error

    # 4. Ambiguous 500/502/504 after the task was created: `unknown`, never resent.
    async def ambiguous() -> str:
        provider = WaveSpeedProvider(base_url=sims["ambiguous"].base_url)
        settings = EngineSettings(submit_backoff=Backoff(base=0.01, cap=0.02, max_attempts=40))
        try:
            async with Engine(project.db, project.store, provider, settings=settings) as engine:
                gen_id = engine.record(PreparedRequest(prompt="a lighthouse", aspect_ratio="1:1",
                                                       resolution="720p", seed=40), 0.05)
                (outcome,) = await engine.run([gen_id])
                return outcome.status
        finally:
            await provider.aclose()

    assert asyncio.run(ambiguous()) == "unknown"
    assert sims["ambiguous"].stats()["submits_5xx_accepted"] == 1

    # 5. The CLI: a success, a 401, `history`, `show` and `resume`, once with DEBUG logging on.
    runs = [
        _cli(root, sims["ok"].base_url, "gen", "@mara on a hill", "-n", "1", "--resolution",
             "720p", debug=True),
        _cli(root, sims["ok"].base_url, "gen", "@mara on a boat", "-n", "1", "--resolution",
             "720p"),
        _cli(root, sims["wrong_key"].base_url, "gen", "@mara at night", "--resolution", "720p",
             debug=True),
        _cli(root, sims["ok"].base_url, "history"),
        _cli(root, sims["ok"].base_url, "show", str(denied[0].id)),
        _cli(root, sims["ok"].base_url, "resume", debug=True),
    ]
    assert runs[0][0] == 0 and runs[1][0] == 0, runs[:2]
    assert runs[2][0] != 0
    assert "401" in runs[2][1]
    assert "DEBUG" in runs[0][1]  # the logging really was on
    for _code, output in runs:
        assert not _leaks(output), output

    # Nothing stored mentions the key.
    for info in project.history(limit=None):
        assert not _leaks(info.error), info.error
        assert not _leaks(repr(info.payload))
    assert {g.status for g in project.history(limit=None)} >= {"completed", "failed", "unknown"}

    project.close()  # checkpoint the WAL too; then read every byte under the project folder
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "library.db" for p in files)
    assert any("media" in p.parts for p in files)
    for path in files:
        assert not _leaks(path.read_bytes()), f"the API key is in {path}"

    # And nothing this process logged or printed.
    assert caplog.records  # httpx logged requests; none of them carry the key
    assert not _leaks(caplog.text)
    captured = capfd.readouterr()
    assert not _leaks(captured.out + captured.err)


def test_saved_key_is_used_and_never_written(
    project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    """`config set-key` then `gen`/`render` with no key in the environment: the saved key picks
    wavespeed (what `config` says), reaches the server, and lands nowhere in the project."""
    root = project.root
    project.add_reference("mara", [make_image(tmp_path / "mara.png", seed=2)])
    project.close()
    env = {k: v for k, v in os.environ.items() if k != "WAVESPEED_API_KEY"}
    env |= {"COLUMNS": "200", "REFSTUDIO_NO_PROGRESS": "1"}

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=env, input=stdin)

    saved = cli("config", "set-key", stdin=KEY + "\n")
    assert saved.returncode == 0, saved.stderr
    outputs = [saved.stdout + saved.stderr]
    with Simulator(SimulatorConfig(latency=0.05, jitter=0.0, key=KEY, seed=5)) as sim:
        env["WAVESPEED_BASE_URL"] = sim.base_url
        shown = cli("config", "--json")
        assert json.loads(shown.stdout)["default_provider"] == "wavespeed"
        rendered = cli("-p", str(root), "render", "@mara on a pier", "--json")
        assert rendered.returncode == 0, rendered.stderr
        assert json.loads(rendered.stdout)["provider"] == "wavespeed"
        made = cli("-p", str(root), "gen", "@mara on a pier", "--resolution", "720p", "--json")
        assert made.returncode == 0, made.stderr
        [gen] = json.loads(made.stdout)
        assert (gen["provider"], gen["status"]) == ("wavespeed", "completed")
        assert sim.stats()["submits_accepted"] == 1
        outputs += [shown.stdout + shown.stderr, rendered.stdout + rendered.stderr,
                    made.stdout + made.stderr]
    for output in outputs:
        assert not _leaks(output), output
    for path in (p for p in root.rglob("*") if p.is_file()):
        assert not _leaks(path.read_bytes()), f"the API key is in {path}"


def test_set_key_without_terminal_or_input_refuses_with_usage_code() -> None:
    """Before: click's prompt hit the end of input and exited 1 ("Aborted!"), undocumented.
    Now: exit 2 with a hint, like `retry` without a terminal; nothing is written."""
    from refstudio.providers.config import config_path

    result = run_cli("config", "set-key")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: no key saved") and "WAVESPEED_API_KEY" in lines[1]
    assert len(lines) == 2
    assert not config_path().exists()
