"""The two faces of the API stay in step: Studio (blocking) and AsyncStudio (coroutines).

Same public method names; the provider verbs are coroutine functions on AsyncStudio and plain
functions on Studio with identical signatures; AsyncStudio works under concurrency.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import gen4_facts as gen4
import pytest
from conftest import ImageMaker

from refstudio import AsyncStudio, Studio

PROVIDER_VERBS = ("generate", "resume", "reconcile", "retry", "run_workflow", "compare",
                  "sync_models", "account", "cancel", "accounts")


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def test_same_public_names() -> None:
    assert _public(Studio) == _public(AsyncStudio)
    for verb in (
        *PROVIDER_VERBS,
        "render",
        "promote",
        "lineage",
        "history",
        "generation",
        "price",
        "check_budget",
        "add_reference",
        "references",
        "close",
    ):
        assert verb in _public(Studio), verb


@pytest.mark.parametrize("verb", PROVIDER_VERBS)
def test_provider_verbs_async_on_one_face_only(verb: str) -> None:
    sync_fn = getattr(Studio, verb)
    async_fn = getattr(AsyncStudio, verb)
    assert inspect.iscoroutinefunction(async_fn)
    assert not inspect.iscoroutinefunction(sync_fn)
    assert inspect.signature(sync_fn) == inspect.signature(async_fn)
    assert sync_fn.__doc__ == async_fn.__doc__


def test_local_verbs_are_plain_and_shared() -> None:
    for name in _public(Studio) - set(PROVIDER_VERBS):
        sync_attr = inspect.getattr_static(Studio, name)
        async_attr = inspect.getattr_static(AsyncStudio, name)
        assert sync_attr is async_attr, name
        fn = getattr(Studio, name)
        if callable(fn):
            assert not inspect.iscoroutinefunction(fn), name


def test_async_generate_concurrently(
    tmp_path: Path, make_image: ImageMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFSTUDIO_OFFLINE_DIR", str(tmp_path / "offline-cache"))
    studio = AsyncStudio.init(tmp_path / "proj")
    try:
        studio.add_reference("mara", [make_image(tmp_path / "mara.png", size=(600, 800))])

        async def main() -> list[list[object]]:
            return await asyncio.gather(
                *(
                    studio.generate(
                        "@mara in the rain", seed=10 + i, resolution="720p", aspect_ratio="1:1"
                    )
                    for i in range(5)
                )
            )

        results = asyncio.run(main())
        gens = [g for batch in results for g in batch]
        assert len(gens) == 5
        assert all(g.status == "completed" for g in gens), [g.error for g in gens]
        assert len({g.id for g in gens}) == 5
        assert sorted(g.seed for g in gens) == [10, 11, 12, 13, 14]
        for g in gens:
            assert g.outputs[0].path.is_file()
            assert g.outputs[0].image().size == gen4.output_size("1:1", "720p")
        history = studio.history()
        assert sorted(g.id for g in history) == sorted(g.id for g in gens)
        assert {g.status for g in history} == {"completed"}
    finally:
        studio.close()


def test_sync_face_inside_context_manager(
    tmp_path: Path, make_image: ImageMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFSTUDIO_OFFLINE_DIR", str(tmp_path / "offline-cache"))
    with Studio.init(tmp_path / "proj") as studio:
        studio.add_reference("mara", [make_image(tmp_path / "mara.png", size=(600, 800))])
        [g] = studio.generate("@mara", resolution="720p", seed=1)
        assert g.status == "completed"
        assert studio.resume() == []


def test_sync_face_works_inside_a_running_event_loop(
    tmp_path: Path, make_image: ImageMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jupyter runs cells inside an event loop: the blocking face must still work there."""
    monkeypatch.setenv("REFSTUDIO_OFFLINE_DIR", str(tmp_path / "offline-cache"))
    with Studio.init(tmp_path / "proj") as studio:
        studio.add_reference("mara", [make_image(tmp_path / "mara.png", size=(600, 800))])

        async def cell() -> list[object]:
            return studio.generate("@mara", resolution="720p", seed=2)

        [g] = asyncio.run(cell())
        assert g.status == "completed"
        assert g._repr_html_().startswith("<div><b>generation #")
        assert g.outputs[0]._repr_png_().startswith(b"\x89PNG")


def test_async_generate_concurrently_against_simulator(
    tmp_path: Path, make_image: ImageMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from refstudio.simulator import Simulator, SimulatorConfig

    with Simulator(SimulatorConfig(latency=0.05, jitter=0.0, key="k")) as sim:
        monkeypatch.setenv("WAVESPEED_API_KEY", "k")
        monkeypatch.setenv("WAVESPEED_BASE_URL", sim.base_url)
        studio = AsyncStudio.init(tmp_path / "proj")
        try:
            studio.add_reference("mara", [make_image(tmp_path / "mara.png", size=(600, 800))])

            async def main() -> list[list[object]]:
                return await asyncio.gather(
                    *(
                        studio.generate("@mara", n=2, seed=100 * (i + 1), resolution="720p")
                        for i in range(5)
                    )
                )

            gens = [g for batch in asyncio.run(main()) for g in batch]
        finally:
            studio.close()
        assert len(gens) == 10
        assert all(g.status == "completed" for g in gens), [g.error for g in gens]
        assert len({g.id for g in gens}) == 10
        assert sorted(g.seed for g in gens) == sorted(
            s for i in range(5) for s in (100 * (i + 1), 100 * (i + 1) + 1)
        )
        assert sim.stats()["submits_accepted"] == 10
