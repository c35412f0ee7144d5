"""The model layer: each built-in spec, the size vocabulary, options and the registry."""

from __future__ import annotations

import pytest

from refstudio.errors import (
    ParameterError,
    TooFewReferencesError,
    TooManyReferencesError,
    UnknownModelError,
)
from refstudio.models import catalog
from refstudio.models.request import BoundImage
from refstudio.models.sizes import Size
from refstudio.models.spec import ModelOptions, ModelSpec, Price

ALIASES = ["gen4", "gen4-turbo", "nano-banana", "seedream-v4", "kontext-multi", "runway-gen4",
           "runway-gen4-turbo", "runway-gemini-flash"]


def test_every_builtin_model_is_registered_with_its_limits() -> None:
    found = {s.alias: (s.id, s.binding, s.min_references, s.max_references)
             for s in catalog.all_models()}
    assert found == {
        "gen4": ("wavespeed:runwayml/gen4-image", "tag", 0, 3),
        "gen4-turbo": ("wavespeed:runwayml/gen4-image-turbo", "tag", 0, 3),
        "nano-banana": ("wavespeed:google/nano-banana/edit", "order", 1, 10),
        "seedream-v4": ("wavespeed:bytedance/seedream-v4/edit", "order", 1, 10),
        "kontext-multi": ("wavespeed:wavespeed-ai/flux-kontext-pro/multi", "order", 1, 5),
        "runway-gen4": ("runway:gen4_image", "tag", 0, 3),
        "runway-gen4-turbo": ("runway:gen4_image_turbo", "tag", 1, 3),
        "runway-gemini-flash": ("runway:gemini_2.5_flash", "tag", 0, 3),
    }
    assert catalog.default_model().alias == "gen4"


@pytest.mark.parametrize("name", ["gen4", "GEN4", "wavespeed:runwayml/gen4-image",
                                  "runwayml/gen4-image", None])
def test_lookup_by_id_alias_or_provider_model_name(name: str | None) -> None:
    assert catalog.get(name).id == "wavespeed:runwayml/gen4-image"


@pytest.mark.parametrize(("name", "suggested"), [("gen5", "gen4"), ("nano", "nano-banana"),
                                                 ("seedream", "seedream-v4")])
def test_unknown_model_suggests_the_closest(name: str, suggested: str) -> None:
    with pytest.raises(UnknownModelError) as info:
        catalog.get(name)
    assert info.value.exit_code == 6
    assert suggested in (info.value.hint or "")


def test_a_plugin_registers_a_model_and_names_cannot_be_taken_twice() -> None:
    class Opts(ModelOptions):
        pass

    spec = ModelSpec(id="testprov:tiny", alias="tiny-test", display_name="Tiny",
                     options=Opts, price=Price(0.0))
    catalog.register(spec)
    try:
        assert catalog.get("TINY-TEST") is spec
        with pytest.raises(ValueError, match="taken"):
            catalog.register(ModelSpec(id="testprov:other", alias="tiny-test", display_name="x",
                                       options=Opts, price=Price(0.0)))
    finally:
        catalog.unregister(spec.id)
    with pytest.raises(UnknownModelError):
        catalog.get("tiny-test")


def test_gen4_body_is_todays_body() -> None:
    spec = catalog.get("gen4")
    options = spec.options_for(Size.of("9x16", "720"), seed=7)
    assert spec.build_body("@mara in @tavern",
                           [BoundImage("mara", "u1"), BoundImage("tavern", "u2")], options) == {
        "prompt": "@mara in @tavern", "aspect_ratio": "9:16", "resolution": "720p",
        "reference_images": ["u1", "u2"], "seed": 7,
    }
    assert spec.params(spec.parse_options()) == {
        "aspect_ratio": "16:9", "resolution": "1080p", "seed": None}
    assert spec.output_size(options) == (720, 1280)
    assert spec.price_of(options) == 0.05


@pytest.mark.parametrize(("alias", "size", "expected", "pixels"), [
    ("seedream-v4", Size.of("16:9", "1080p"), {"size": "1920*1080"}, (1920, 1080)),
    ("seedream-v4", Size.of("1:1", "4k"), {"size": "4096*4096"}, (4096, 4096)),
    ("seedream-v4", Size(), {"size": "2048*2048"}, (2048, 2048)),
    ("kontext-multi", Size.of("21:9"), {"aspect_ratio": "21:9"}, (1568, 672)),
    ("nano-banana", Size(), {"output_format": "jpeg"}, None),
])
def test_common_sizes_map_onto_each_models_form(
    alias: str, size: Size, expected: dict[str, str], pixels: tuple[int, int] | None
) -> None:
    spec = catalog.get(alias)
    options = spec.options_for(size)
    assert expected.items() <= spec.params(options).items()
    assert spec.output_size(options) == pixels


@pytest.mark.parametrize(("alias", "size"), [
    ("gen4", Size.of("21:9")), ("gen4", Size.of("1:1", "4k")),
    ("nano-banana", Size.of("1:1")), ("seedream-v4", Size.of("16:9", "720p")),
    ("kontext-multi", Size.of("1:1", "1080p")), ("kontext-multi", Size.of("5:1")),
])
def test_a_size_without_a_mapping_is_one_clear_error(alias: str, size: Size) -> None:
    with pytest.raises(ParameterError, match=f"{alias} .* cannot make (aspect ratio|resolution)"):
        catalog.get(alias).options_for(size)


@pytest.mark.parametrize(("alias", "options", "words"), [
    ("gen4", {"guidance_scale": 2}, "has no option 'guidance_scale'; it takes: aspect_ratio, "
                                    "resolution, seed"),
    ("gen4", {"seed": 0}, "out of range; must be from 1 to 2147483647"),
    ("seedream-v4", {"seed": -2}, "out of range; must be from -1 to 2147483647"),
    ("kontext-multi", {"guidance_scale": 21}, "out of range; must be from 1 to 20"),
    ("nano-banana", {"output_format": "webp"}, "not allowed; allowed: 'jpeg' or 'png'"),
    ("seedream-v4", {"size": "512*512"}, "each side 1024 to 4096"),
])
def test_options_are_checked_against_the_model(
    alias: str, options: dict[str, object], words: str
) -> None:
    with pytest.raises(ParameterError) as info:
        catalog.get(alias).parse_options(options)
    assert words in str(info.value)
    assert info.value.exit_code == 4


@pytest.mark.parametrize("alias", ALIASES)
def test_reference_limits_name_the_model(alias: str) -> None:
    spec = catalog.get(alias)
    spec.check_references(spec.max_references)
    with pytest.raises(TooManyReferencesError, match=f"takes at most {spec.max_references}"):
        spec.check_references(spec.max_references + 1)
    if spec.min_references:
        with pytest.raises(TooFewReferencesError, match="needs at least 1"):
            spec.check_references(0)
    else:
        spec.check_references(0)


def test_seed_only_where_the_model_takes_one() -> None:
    with pytest.raises(ParameterError, match="takes no seed"):
        catalog.get("nano-banana").options_for(seed=3)
    assert catalog.get("kontext-multi").options_for(seed=-1).seed == -1  # type: ignore[attr-defined]
