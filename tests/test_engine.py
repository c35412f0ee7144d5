"""Engine happy path over real HTTP: the simulator, the real WaveSpeed provider, real SQLite.

Nothing of refstudio is patched: the Studio reads WAVESPEED_API_KEY / WAVESPEED_BASE_URL from the
environment, exactly as a user's shell would set them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gen4_facts as gen4
import pytest
from conftest import ImageMaker
from PIL import Image
from project_support import wavespeed_from_env

from refstudio import Studio
from refstudio.engine import Engine, EngineSettings, PreparedRequest
from refstudio.models.request import BoundImage
from refstudio.models.spec import ModelOptions, ModelSpec
from refstudio.providers.wavespeed.client import WaveSpeedProvider
from refstudio.simulator import Simulator, SimulatorConfig

KEY = "sk-happy-path-key"


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    with wavespeed_from_env(monkeypatch, KEY, latency=0.15, jitter=0.05, seed=11) as server:
        yield server


def _set_concurrency(studio: Studio, n: int) -> Studio:
    """Rewrite ``concurrency`` in the project's refstudio.toml and reopen the project."""
    toml = studio.root / "refstudio.toml"
    lines = [f"concurrency = {n}" if line.startswith("concurrency") else line
             for line in toml.read_text().splitlines()]
    toml.write_text("\n".join(lines) + "\n")
    root = studio.root
    studio.close()
    return Studio.open(root)


def _check_completed(studio: Studio, info: Any, aspect: str, resolution: str) -> None:
    assert info.status == "completed", info.error
    assert info.request_id
    assert info.error == ""
    assert len(info.outputs) == 1
    out = info.outputs[0]
    media = (studio.root / "media").resolve()
    path = Path(out.path).resolve()
    assert path.is_file()
    assert media in path.parents
    expected = gen4.output_size(aspect, resolution)
    assert (out.width, out.height) == expected
    with Image.open(path) as img:
        img.load()
        assert img.size == expected


def test_every_aspect_ratio_and_resolution_with_one_and_three_references(
    sim: Simulator, project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    studio = _set_concurrency(project, 10)
    try:
        for i, name in enumerate(("mara", "tavern", "lantern")):
            studio.add_reference(name, [make_image(tmp_path / f"{name}.png", size=(640, 800),
                                                   seed=i + 1)])
        combos = [(a, r) for a in gen4.ASPECT_RATIOS for r in gen4.RESOLUTIONS]
        seen_requests: set[str] = set()
        for index, (aspect, resolution) in enumerate(combos):
            prompt = ("@mara in @tavern holding @lantern" if index % 2 else "@mara by the sea")
            infos = studio.generate(prompt, n=1, seed=1000 + index, aspect_ratio=aspect,
                                    resolution=resolution, provider="wavespeed")
            assert len(infos) == 1
            info = infos[0]
            _check_completed(studio, info, aspect, resolution)
            assert info.request_id not in seen_requests
            seen_requests.add(info.request_id)
            assert len(info.payload.get("reference_images", [])) == (3 if index % 2 else 1)
            assert info.params["aspect_ratio"] == aspect
            assert info.params["resolution"] == resolution
        stats = sim.stats()
        # Three distinct images, each uploaded exactly once across ten generations.
        assert stats["uploads"] == 3
        assert stats["submits_accepted"] == len(combos)
        assert stats["external_references"] == 0
        # Every stored generation row ended `completed` with its request id.
        rows = studio.history(limit=None)
        assert len(rows) == len(combos)
        assert all(r.status == "completed" and r.request_id for r in rows)
        assert {r.request_id for r in rows} == set(stats["tasks"])
    finally:
        studio.close()


def test_second_generation_reuses_the_upload(
    sim: Simulator, project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    project.add_reference("mara", [make_image(tmp_path / "m.png", seed=5)])
    first = project.generate("@mara walking", n=2, seed=1, resolution="720p", aspect_ratio="1:1")
    assert [g.status for g in first] == ["completed", "completed"]
    uploads = sim.stats()["uploads"]
    assert uploads == 1  # two concurrent generations shared one upload
    second = project.generate("@mara sitting", n=1, seed=9, resolution="720p", aspect_ratio="1:1")
    assert second[0].status == "completed"
    assert sim.stats()["uploads"] == uploads
    urls = {g.payload["reference_images"][0] for g in [*first, *second]}
    assert len(urls) == 1


class Base64Provider(WaveSpeedProvider):
    """The real provider, asking for outputs inline as base64."""

    @classmethod
    def build_body(
        cls, model: ModelSpec, prompt: str, images: Sequence[BoundImage],
        options: ModelOptions,
    ) -> dict[str, Any]:
        return {**super().build_body(model, prompt, images, options),
                "enable_base64_output": True}


@pytest.mark.parametrize(("aspect", "resolution"), [("16:9", "1080p"), ("3:4", "720p")])
def test_base64_outputs_are_decoded_into_media(
    sim: Simulator, project: Studio, aspect: str, resolution: str
) -> None:
    async def main() -> list[Any]:
        provider = Base64Provider(api_key=KEY, base_url=sim.base_url)
        settings = EngineSettings(concurrency=4, default_expected=0.2)
        try:
            async with Engine(project.db, project.store, provider, settings=settings) as engine:
                ids = [engine.record(PreparedRequest(prompt=f"a lighthouse, take {i}",
                                                     aspect_ratio=aspect, resolution=resolution,
                                                     seed=50 + i), 0.05) for i in range(3)]
                return await engine.run(ids)
        finally:
            await provider.aclose()

    outcomes = asyncio.run(main())
    assert [o.status for o in outcomes] == ["completed"] * 3
    stats = sim.stats()
    assert stats["downloads"] == 0  # nothing fetched by URL: the bytes came inline
    for outcome in outcomes:
        info = project.generation(outcome.generation_id)
        assert info.payload["enable_base64_output"] is True
        _check_completed(project, info, aspect, resolution)
    assert all(json.loads(json.dumps(t))["status"] == "completed"
               for t in stats["tasks"].values())


def test_a_resumed_task_long_past_its_plan_is_polled_gently(project: Studio) -> None:
    """A task picked up a minute after submit is past every planned offset: it must go
    straight to the straggler backoff, not rush through the offsets it has already passed."""
    from datetime import timedelta

    from refstudio.engine import records

    config = SimulatorConfig(latency=1.0, jitter=0.0, key=KEY, seed=5)
    with Simulator(config) as server:
        # Past tasks took 0.5-1.45 s, so the plan has several offsets within 1.5 s of submit.
        past = records.create_pending_many(
            project.db,
            [PreparedRequest(prompt=f"past {i}", aspect_ratio="1:1", resolution="720p",
                             seed=i + 1) for i in range(20)],
            provider="wavespeed", costs=[0.0] * 20,
        )
        for i, gen_id in enumerate(past):
            records.update(project.db, gen_id, status="completed", inference_ms=500 + 50 * i)

        async def submit_one() -> str:
            provider = WaveSpeedProvider(api_key=KEY, base_url=server.base_url)
            try:
                spec = gen4.SPEC
                body = provider.build_body(spec, "resumed", [], spec.parse_options(
                    {"aspect_ratio": "1:1", "resolution": "720p", "seed": 99}))
                return (await provider.submit(body)).task_id
            finally:
                await provider.aclose()

        task_id = asyncio.run(submit_one())
        [gen_id] = records.create_pending_many(
            project.db,
            [PreparedRequest(prompt="resumed", aspect_ratio="1:1", resolution="720p", seed=99)],
            provider="wavespeed", costs=[0.0],
        )
        records.update(project.db, gen_id, status="submitted", request_id=task_id, owner=None,
                       submitted_at=records.now_utc() - timedelta(seconds=60))

        async def resume() -> list[Any]:
            provider = WaveSpeedProvider(api_key=KEY, base_url=server.base_url)
            try:
                async with Engine(project.db, project.store, provider) as engine:
                    return await engine.resume()
            finally:
                await provider.aclose()

        [outcome] = asyncio.run(resume())
        assert outcome.status == "completed", outcome.error
        polls = server.stats()["tasks"][task_id]["polls"]
        # Backoff from 50-100 ms growing x1.5 covers the remaining ~1 s in about 6 polls;
        # rushing through the plan's offsets and tail first took over 20.
        assert 2 <= polls <= 10, polls
