"""Every built-in WaveSpeed model through the real client against the simulator: with one
reference and with its most, the body each receives compared with the documented shape
(shared/protocol/wavespeed-models.md), the output at the model's size, the model recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from refstudio import Studio
from refstudio.models import catalog
from refstudio.simulator import Simulator

KEY = "sim-key-models-0123456789"
#: Reference names: ten distinct ones, the most any built-in model takes.
NAMES = [f"ref{i:02d}" for i in range(1, 11)]
#: The ``library`` fixture's references (tests/conftest.py), drawn at this size.
REFERENCES = NAMES
REFERENCE_SIZE = (640, 800)


def _expected(alias: str, prompt_tag: str, prompt_order: str, seed: int | None) -> dict[str, Any]:
    """The documented body of each model at the project's defaults (16:9, 1080p), images
    left out (their URLs are the simulator's)."""
    return {
        "gen4": {"prompt": prompt_tag, "aspect_ratio": "16:9", "resolution": "1080p",
                 "seed": seed},
        "gen4-turbo": {"prompt": prompt_tag, "aspect_ratio": "16:9", "resolution": "1080p",
                       "seed": seed},
        "nano-banana": {"prompt": prompt_order, "output_format": "jpeg"},
        "seedream-v4": {"prompt": prompt_order, "size": "1920*1080", "seed": seed},
        "kontext-multi": {"prompt": prompt_order, "aspect_ratio": "16:9",
                          "guidance_scale": 3.5, "seed": seed},
    }[alias]


SIZES = {"gen4": (1920, 1080), "gen4-turbo": (1920, 1080), "seedream-v4": (1920, 1080),
         "kontext-multi": (1392, 752), "nano-banana": (640, 800)}
FIELDS = {"gen4": "reference_images", "gen4-turbo": "reference_images",
          "nano-banana": "images", "seedream-v4": "images", "kontext-multi": "images"}


@pytest.mark.parametrize("alias", sorted(SIZES))
@pytest.mark.parametrize("most", [False, True], ids=["one-reference", "most-references"])
def test_each_model_through_the_real_client(
    sim: Simulator, library: Studio, alias: str, most: bool
) -> None:
    spec = catalog.get(alias)
    count = spec.max_references if most else 1
    names = NAMES[:count]
    prompt = " and ".join("@" + n for n in names) + " at dawn"
    order_text = " and ".join(f"{n} (image {i})" for i, n in enumerate(names, 1)) + " at dawn"
    seed = 4242 if spec.seed is not None else None

    [gen] = library.generate(prompt, model=alias, provider="wavespeed", seed=seed)

    assert gen.status == "completed", gen.error
    assert gen.model_id == spec.id and gen.model == spec.model and gen.provider == "wavespeed"
    body = dict(gen.payload)
    urls = body.pop(FIELDS[alias])
    assert len(urls) == count and all(u.startswith(sim.base_url) for u in urls)
    expected = _expected(alias, prompt, order_text, seed)
    assert body == {k: v for k, v in expected.items() if v is not None}
    assert gen.prompt == expected["prompt"]
    # The simulator accepted it under that model's own strict schema, at that model's path.
    task = next(iter(sim.stats()["tasks"].values()))
    assert task["reference_images"] == urls
    [out] = gen.outputs
    # Nano Banana follows the first input image (640x800 -> about one megapixel).
    width, height = SIZES[alias]
    if alias == "nano-banana":
        assert abs(out.width / out.height - width / height) < 0.01
        assert 1_000_000 < out.width * out.height < 1_100_000
    else:
        assert (out.width, out.height) == (width, height)


@pytest.mark.parametrize("alias", sorted(SIZES))
def test_one_more_reference_than_the_model_takes_is_refused_naming_its_limit(
    sim: Simulator, library: Studio, alias: str
) -> None:
    from refstudio.errors import TooManyReferencesError

    spec = catalog.get(alias)
    if spec.max_references >= len(NAMES):
        names = [*NAMES, "extra_ref"]
        library.add_reference("extra_ref", [library.library.get(NAMES[0]).images[0].path])
    else:
        names = NAMES[: spec.max_references + 1]
    with pytest.raises(TooManyReferencesError, match=f"{alias} .* takes at most "
                                                     f"{spec.max_references}"):
        library.generate(" ".join("@" + n for n in names), model=alias, provider="wavespeed")
    assert sim.stats()["submits_received"] == 0
    assert library.history() == []


def test_variants_of_a_model_without_seeds_are_each_sent(sim: Simulator, library: Studio) -> None:
    gens = library.generate("@ref01 smiling", model="nano-banana", provider="wavespeed", n=2)
    assert [g.status for g in gens] == ["completed", "completed"]
    assert all("seed" not in g.payload for g in gens)
    assert sim.stats()["submits_accepted"] == 2


def test_history_and_gallery_filter_by_model(sim: Simulator, library: Studio) -> None:
    library.generate("@ref01 at noon", model="gen4", provider="wavespeed")
    library.generate("@ref01 at noon", model="seedream-v4", provider="wavespeed")
    assert [g.model_id for g in library.history(model="seedream-v4")] == [
        "wavespeed:bytedance/seedream-v4/edit"]
    assert len(library.history(model="wavespeed:runwayml/gen4-image")) == 1
    assert len(library.history()) == 2


def test_poll_schedule_is_learned_per_model(sim: Simulator, library: Studio) -> None:
    from refstudio.engine import records

    library.generate("@ref01 at noon", model="gen4", provider="wavespeed")
    library.generate("@ref01 at noon", model="seedream-v4", provider="wavespeed")
    gen4 = records.past_durations(library.db, "wavespeed",
                                  "wavespeed:runwayml/gen4-image 1080p")
    seedream = records.past_durations(library.db, "wavespeed",
                                      "wavespeed:bytedance/seedream-v4/edit 1920*1080")
    assert len(gen4) == 1 and len(seedream) == 1
    assert records.past_durations(library.db, "wavespeed",
                                  "wavespeed:runwayml/gen4-image 720p") == []


def test_costs_are_per_model(sim: Simulator, library: Studio) -> None:
    sim_free = library.price("wavespeed", "nano-banana")
    assert sim_free == pytest.approx(0.039)
    assert library.price("wavespeed", "gen4", {"resolution": "720p"}) == pytest.approx(0.05)
    assert library.price("wavespeed", "seedream-v4") == pytest.approx(0.027)
    assert library.price("offline", "kontext-multi") == 0.0


@pytest.mark.parametrize(("alias", "size", "pixels"), [
    ("gen4", {"aspect_ratio": "4:3", "resolution": "720p"}, (960, 720)),
    ("gen4-turbo", {"aspect_ratio": "9:16"}, (1080, 1920)),
    ("seedream-v4", {"aspect_ratio": "3:4", "resolution": "2k"}, (2048, 2731)),
    ("kontext-multi", {"aspect_ratio": "21:9"}, (1568, 672)),
    ("nano-banana", {}, None),
])
def test_offline_previews_each_model_at_its_own_size(
    library: Studio, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, alias: str,
    size: dict[str, str], pixels: tuple[int, int] | None,
) -> None:
    monkeypatch.setenv("REFSTUDIO_OFFLINE_DIR", str(tmp_path / "offline"))
    [gen] = library.generate("@ref01 and @ref02", model=alias, provider="offline", **size)
    assert gen.status == "completed" and gen.provider == "offline"
    assert gen.model_id == catalog.get(alias).id and gen.cost_estimate == 0.0
    [out] = gen.outputs
    if pixels is None:  # follows the first input (640x800)
        assert out.width * 800 == out.height * 640 or abs(out.width / out.height - 0.8) < 0.01
    else:
        assert (out.width, out.height) == pixels


def test_the_readme_example_model_is_one_module_that_works(sim: Simulator,
                                                         library: Studio) -> None:
    """The README's "Adding a WaveSpeed model" module, run as written: registered, it goes
    through the real client and the simulator serves it from the spec alone."""
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text("utf-8")
    [code] = re.findall(r"```python\n(# refstudio/models/wavespeed_kontext_max\.py\n.*?)```",
                        readme, re.S)
    namespace: dict[str, Any] = {"__name__": "refstudio.models.wavespeed_kontext_max",
                                 "__package__": "refstudio.models"}
    exec(compile(code, "README.md", "exec"), namespace)
    spec = catalog.register(namespace["SPEC"])
    try:
        [gen] = library.generate("@ref01 in @ref02", model="kontext-max", provider="wavespeed",
                                 seed=9, aspect_ratio="3:2")
        assert gen.status == "completed", gen.error
        assert gen.model == "wavespeed-ai/flux-kontext-max/multi"
        body = dict(gen.payload)
        assert len(body.pop("images")) == 2
        assert body == {"prompt": "ref01 (image 1) in ref02 (image 2)", "aspect_ratio": "3:2",
                        "guidance_scale": 3.5, "seed": 9}
        assert gen.cost_estimate == pytest.approx(0.08)
        assert (gen.outputs[0].width, gen.outputs[0].height) == (1248, 832)
    finally:
        catalog.unregister(spec.id)
