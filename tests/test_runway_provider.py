"""The Runway provider through the real client against the simulator: uploads and tags, every
model, THROTTLED, failure codes, cancel, ambiguous 5xx, the daily 429; bad input refused with
nothing sent. Nothing of refstudio is patched: keys and URLs come from the environment."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ImageMaker, encode_image, run_cli
from project_support import add_references

from refstudio import Studio
from refstudio.errors import (
    AuthenticationError,
    ImageError,
    ParameterError,
    TooFewReferencesError,
    TooManyReferencesError,
)
from refstudio.models import catalog
from refstudio.models.request import BoundImage
from refstudio.models.sizes import Size
from refstudio.providers.runway.client import RunwayProvider
from refstudio.simulator import Simulator

KEY = "key_runway_test_secret"
SIM_DEFAULTS = {"latency": 0.2, "key": KEY, "seed": 3}


@pytest.fixture
def runway_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("RUNWAYML_API_SECRET", raising=False)
    monkeypatch.delenv("RUNWAYML_BASE_URL", raising=False)

    def point(sim: Simulator) -> Simulator:
        monkeypatch.setenv("RUNWAYML_API_SECRET", KEY)
        monkeypatch.setenv("RUNWAYML_BASE_URL", sim.base_url)
        return sim

    yield point


def _studio(project: Studio, concurrency: int = 2) -> Studio:
    toml = project.root / "refstudio.toml"
    toml.write_text("\n".join(f"concurrency = {concurrency}" if line.startswith("concurrency")
                              else line for line in toml.read_text().splitlines()) + "\n")
    root = project.root
    project.close()
    return Studio.open(root)


def _refs(studio: Studio, make_image: ImageMaker, tmp_path: Path, *names: str) -> None:
    add_references(studio, make_image, tmp_path, names, size=(320, 400))


def test_gen4_image_with_tagged_uploads_end_to_end(
    make_sim: Any, runway_env: Any, project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    sim = runway_env(make_sim())
    studio = _studio(project)
    try:
        _refs(studio, make_image, tmp_path, "mara", "tavern")
        first = studio.generate("@mara in @tavern at dusk", provider="runway", seed=9)[0]
        again = studio.generate("@mara by @tavern's door", provider="runway",
                                aspect_ratio="9:16", resolution="720p")[0]
    finally:
        studio.close()
    assert first.status == "completed", first.error
    assert again.status == "completed", again.error
    assert (first.outputs[0].width, first.outputs[0].height) == (1920, 1080)
    assert (again.outputs[0].width, again.outputs[0].height) == (720, 1280)
    stats = sim.stats()
    assert stats["uploads"] == 2  # each image once: the second generation reused the URIs
    refs = next(iter(stats["tasks"].values()))["reference_images"]
    assert all(uri.startswith("runway://") for uri in refs)
    body = first.payload
    assert body["model"] == "gen4_image" and body["ratio"] == "1920:1080"
    assert [r["tag"] for r in body["referenceImages"]] == ["mara", "tavern"]
    assert body["promptText"] == "@mara in @tavern at dusk" and body["seed"] == 9
    assert stats["submits_received"] == 2 and stats["submits_accepted"] == 2


@pytest.mark.parametrize(("model", "prompt", "size", "pixels"), [
    ("runway-gen4", "a lantern on a table", ("1:1", "720p"), (720, 720)),
    ("runway-gen4-turbo", "@mara smiles", ("3:4", "1080p"), (1080, 1440)),
    ("runway-gemini-flash", "@mara with a lantern", ("9:16", None), (768, 1344)),
])
def test_every_model_through_the_client(
    make_sim: Any, runway_env: Any, project: Studio, make_image: ImageMaker, tmp_path: Path,
    model: str, prompt: str, size: tuple[str, str | None], pixels: tuple[int, int],
) -> None:
    """Each Runway model end to end: body checked by the simulator, output of its size."""
    sim = runway_env(make_sim())
    try:
        _refs(project, make_image, tmp_path, "mara")
        info = project.generate(prompt, model=model, aspect_ratio=size[0], resolution=size[1])[0]
    finally:
        project.close()
    assert info.status == "completed", info.error
    assert info.provider == "runway"
    assert (info.outputs[0].width, info.outputs[0].height) == pixels
    assert info.payload["model"] == catalog.get(model).model
    assert "seed" in info.payload if model != "runway-gemini-flash" else "seed" not in info.payload
    assert ("referenceImages" in info.payload) == ("@mara" in prompt)
    assert sim.stats()["submits_rejected_400"] == 0


def test_throttled_tasks_queue_and_finish(
    make_sim: Any, runway_env: Any, project: Studio
) -> None:
    """Another client of the organisation holds the tier's one slot: refstudio's task is
    accepted and waits as THROTTLED (shown as queued, not an error), then runs with progress."""
    import httpx

    sim = runway_env(make_sim(latency=2.5, runway_concurrency=1))
    other = httpx.post(f"{sim.base_url}/v1/text_to_image", json={
        "model": "gen4_image", "promptText": "someone else's", "ratio": "1280:720"},
        headers={"Authorization": f"Bearer {KEY}", "X-Runway-Version": "2024-11-06"})
    assert other.status_code == 200
    events: list[tuple[str, str]] = []
    try:
        infos = project.generate("a lighthouse", provider="runway",
                                 on_event=lambda e: events.append((e.state, e.detail)))
    finally:
        project.close()
    assert [i.status for i in infos] == ["completed"]
    assert ("queued", "queued (THROTTLED)") in events
    assert any(state == "running" and detail.endswith("%") for state, detail in events)
    tasks = sorted(sim.stats()["tasks"].values(), key=lambda t: t["created_at"])
    assert tasks[1]["started_at"] >= tasks[0]["completed_at"] - 1e-6  # it waited its turn


def test_safety_failure_is_recorded_explained_and_not_retried(
    make_sim: Any, runway_env: Any, project: Studio
) -> None:
    sim = runway_env(make_sim(runway_task_faults=["SAFETY.INPUT.TEXT"]))
    try:
        info = project.generate("something flagged", provider="runway")[0]
    finally:
        project.close()
    assert info.status == "failed"
    assert "SAFETY.INPUT.TEXT" in info.error and "moderation" in info.error
    assert "not retried" in info.error
    assert sim.stats()["submits_received"] == 1


def test_ambiguous_5xx_is_unknown_with_exactly_one_task(
    make_sim: Any, runway_env: Any, project: Studio
) -> None:
    sim = runway_env(make_sim(submit_faults=["500_after"]))
    try:
        info = project.generate("a bridge", provider="runway")[0]
        [settled] = project.reconcile()
        project.resume()  # never resends an unknown
        assert project.generation(info.id).status == "unknown"
    finally:
        project.close()
    assert info.status == "unknown"
    assert "keeps no task list" in info.error and "not resent" in info.error
    assert settled.verdict == "unknown" and "no task history" in settled.reason
    stats = sim.stats()
    assert stats["submits_received"] == 1 and stats["submits_accepted"] == 1


def test_daily_limit_stops_the_batch_and_keeps_the_rest_unsent(
    make_sim: Any, runway_env: Any, project: Studio
) -> None:
    """The preflight saw room, but another client of the organisation spent the day's limit
    meanwhile: the third create is answered 429."""
    sim = runway_env(make_sim(submit_faults=["ok", "ok", "429"], runway_concurrency=1))
    studio = _studio(project, concurrency=1)
    try:
        infos = studio.generate("a harbour", n=5, provider="runway")
    finally:
        studio.close()
    assert [i.status for i in infos] == ["completed", "completed", "pending", "pending",
                                         "pending"]
    assert "daily limit" in infos[2].error
    assert "UTC" in infos[2].error  # when the window frees
    stats = sim.stats()
    assert stats["submits_received"] == 3  # the 429, then nothing more was sent
    assert stats["submits_rejected_daily_limit"] == 1


def test_cancel_a_running_task(make_sim: Any) -> None:
    sim = make_sim(latency=5.0)

    async def run() -> str:
        async with RunwayProvider(KEY, sim.base_url) as provider:
            spec = catalog.get("runway-gen4")
            body = spec.build_body("a fox", [], spec.parse_options())
            task = await provider.submit(body, model=spec)
            await provider.cancel(task.task_id)
            status = await provider.fetch_status(task.task_id)
            assert status.state == "failed"
            return status.error

    assert "cancelled" in asyncio.run(run())
    assert sim.stats()["cancels"] == 1


# ---- bad input: one line each, nothing sent --------------------------------------------------

def _body(model: str, tags: list[str], **params: Any) -> dict[str, Any]:
    spec = catalog.get(model)
    images = [BoundImage(tag=t, url="runway://x/y.png") for t in tags]
    options = spec.options_for(Size.of(params.get("aspect_ratio", "16:9"),
                                       params.get("resolution", "1080p")),
                               seed=params.get("seed"))
    return spec.build_body("@x", images, options)


@pytest.mark.parametrize(
    ("model", "tags", "params", "error", "words"),
    [
        ("runway-gen4", ["mara-2"], {}, ParameterError, "cannot be a Runway tag"),
        ("runway-gen4", ["ab"], {}, ParameterError, "cannot be a Runway tag"),
        ("runway-gen4", ["mara", "MARA"], {}, ParameterError, "differ only in case"),
        ("runway-gen4-turbo", [], {}, TooFewReferencesError, "needs at least 1"),
        ("runway-gemini-flash", [], {"resolution": "720p"}, ParameterError, "cannot make size"),
        ("runway-gemini-flash", [], {"seed": 4, "resolution": None}, ParameterError,
         "takes no seed"),
        ("runway-gen4", ["aaa", "bbb", "ccc", "ddd"], {}, TooManyReferencesError, "at most 3"),
    ],
)
def test_bad_requests_are_refused_before_sending(
    model: str, tags: list[str], params: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as caught:
        _body(model, tags, **params)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_data_uri_over_5_mb_is_refused(make_sim: Any) -> None:
    sim = make_sim()
    big = encode_image((2000, 1600), "PNG", compress_level=0)
    assert len(big) > 3_800_000  # base64 makes it past 5 MB

    async def run() -> None:
        async with RunwayProvider(KEY, sim.base_url, uploads="data") as provider:
            await provider.upload(big, filename="mara", content_type="image/png")

    with pytest.raises(ImageError, match="at most 5 MB"):
        asyncio.run(run())
    assert sim.stats()["requests"] == 0


def test_a_wavespeed_key_is_not_sent_to_runway(
    make_sim: Any, runway_env: Any, project: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = runway_env(make_sim())
    monkeypatch.setenv("WAVESPEED_API_KEY", KEY)  # the same key set for both
    try:
        with pytest.raises(AuthenticationError, match="is the WaveSpeed key"):
            project.generate("a hill", provider="runway")
    finally:
        project.close()
    assert sim.stats()["requests"] == 0


def _cli(root: Path, *args: str) -> Any:
    return run_cli("--project", str(root), *args)


def test_refstudio_cancel_stops_a_running_generation(
    make_sim: Any, runway_env: Any, project: Studio
) -> None:
    """`refstudio cancel GEN` while another thread waits on it: Runway's task is cancelled,
    the generation fails as cancelled; a finished one cannot be cancelled (one line)."""
    import threading
    import time as _time

    sim = runway_env(make_sim(latency=40.0))
    root = project.root
    got: list[Any] = []
    worker = threading.Thread(
        target=lambda: got.extend(project.generate("a slow fox", provider="runway")))
    worker.start()
    try:
        for _ in range(200):
            if sim.stats()["submits_accepted"] and project.history()[0].status == "submitted":
                break
            _time.sleep(0.05)
        gen_id = project.history()[0].id
        done = _cli(root, "cancel", str(gen_id))
        assert done.returncode == 0, done.stderr
        assert "cancelled" in done.stdout
    finally:
        worker.join(timeout=60)
        project.close()
    assert got[0].status == "failed" and "cancelled" in got[0].error
    assert sim.stats()["cancels"] == 1
    again = _cli(root, "cancel", str(gen_id))
    assert again.returncode == 11
    assert again.stderr.count("error:") == 1 and "only submitted" in again.stderr
    assert "Traceback" not in again.stderr
    assert sim.stats()["cancels"] == 1


# ---- the account ---------------------------------------------------------------------------

def test_account_shows_credits_limits_and_todays_use(
    make_sim: Any, runway_env: Any, project: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`refstudio account` shows each configured provider: WaveSpeed's balance and Runway's
    organisation."""
    sim = runway_env(make_sim(runway_concurrency=3, runway_daily_limit=10, key=None))
    monkeypatch.setenv("WAVESPEED_API_KEY", "ws-another-key")
    monkeypatch.setenv("WAVESPEED_BASE_URL", sim.base_url)
    try:
        project.generate("a kite", provider="runway", resolution="720p")
        wavespeed, entry = project.accounts()
    finally:
        project.close()
    assert wavespeed["provider"] == "wavespeed" and wavespeed["balance"] == 10.0
    assert entry["provider"] == "runway" and entry["credit_balance"] == 100_000 - 5
    assert entry["models"]["gen4_image"] == {"max_concurrent": 3, "max_daily": 10,
                                             "used_today": 1, "remaining_today": 9}
    out = _cli(project.root, "account")
    assert out.returncode == 0, out.stderr
    assert "Runway credits: 99,995" in out.stdout and "gen4_image" in out.stdout
    assert "WaveSpeed balance: $" in out.stdout
    assert KEY not in out.stdout + out.stderr and "ws-another-key" not in out.stdout
    assert sim.stats()["submits_received"] == 1


def test_a_batch_past_credits_or_todays_limit_is_refused_whole(
    make_sim: Any, runway_env: Any, project: Studio
) -> None:
    from refstudio.errors import BudgetExceededError, LimitReachedError

    sim = runway_env(make_sim(runway_daily_limit=3, runway_credits=20))
    try:
        with pytest.raises(BudgetExceededError, match="needs 24 Runway credits"):
            project.generate("a kite", n=3, provider="runway")  # 3 x 8 credits at 1080p
        with pytest.raises(LimitReachedError, match="allows 3 more today"):
            project.generate("a kite", n=4, provider="runway", resolution="720p")
        assert project.history() == []  # nothing recorded
    finally:
        project.close()
    assert sim.stats()["submits_received"] == 0


def test_concurrency_comes_from_the_tier(make_sim: Any, runway_env: Any, project: Studio) -> None:
    """Tier 3 at once, project setting 2 (the WaveSpeed default): 3 in flight, none THROTTLED."""
    sim = runway_env(make_sim(latency=0.5, runway_concurrency=3))
    try:
        infos = project.generate("a kite", n=6, provider="runway")
    finally:
        project.close()
    assert [i.status for i in infos] == ["completed"] * 6
    stats = sim.stats()
    assert stats["max_tasks_in_flight"] == 3
    assert all(t["started_at"] == t["created_at"] for t in stats["tasks"].values())


def _one_error_line(done: Any, code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.count("error:") == 1
    return str(done.stderr)


def test_cli_bad_input_is_one_line_and_sends_nothing(
    make_sim: Any, runway_env: Any, project: Studio, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through `refstudio gen`: a data URI over 5 MB (the fallback upload mode) and a Runway
    key that is the WaveSpeed key; each one `error:` line, nothing recorded or created."""
    sim = runway_env(make_sim())
    big = tmp_path / "big.png"
    big.write_bytes(encode_image((2000, 1600), "PNG", compress_level=0))
    project.add_reference("mara", [big])
    root = project.root
    project.close()
    monkeypatch.setenv("REFSTUDIO_RUNWAY_UPLOADS", "data")
    err = _one_error_line(_cli(root, "gen", "@mara at sea", "--provider", "runway"), 5)
    assert "at most 5 MB" in err
    monkeypatch.delenv("REFSTUDIO_RUNWAY_UPLOADS")
    monkeypatch.setenv("WAVESPEED_API_KEY", KEY)
    err = _one_error_line(_cli(root, "gen", "a hill", "--provider", "runway"), 10)
    assert "WaveSpeed key" in err and KEY not in err
    with Studio.open(root) as studio:
        assert studio.history() == []
    assert sim.stats()["submits_received"] == 0
