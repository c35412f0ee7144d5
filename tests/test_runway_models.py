"""The three Runway models as specs: sizes onto ``ratio``, tagged bodies, limits, no seed for
Gemini; every body the specs build is one the simulator's strict checks accept."""

from __future__ import annotations

from typing import Any

import pytest

from refstudio.errors import ImageError, ParameterError, TooFewReferencesError
from refstudio.models import catalog
from refstudio.models.request import BoundImage
from refstudio.models.sizes import Size
from refstudio.simulator.runway.validate import validate_create

URI = "runway://sim/a.png"


def _images(*tags: str) -> list[BoundImage]:
    return [BoundImage(tag=t, url=URI) for t in tags]


@pytest.mark.parametrize(("alias", "size", "ratio"), [
    ("runway-gen4", Size.of("16:9", "1080p"), "1920:1080"),
    ("runway-gen4", Size.of("3:4", "720p"), "720:960"),
    ("runway-gen4", Size(), "1920:1080"),
    ("runway-gen4-turbo", Size.of("1:1"), "1080:1080"),
    ("runway-gemini-flash", Size.of("9:16"), "768:1344"),
    ("runway-gemini-flash", Size(), "1344:768"),
])
def test_common_sizes_become_runway_ratios(alias: str, size: Size, ratio: str) -> None:
    spec = catalog.get(alias)
    options = spec.options_for(size)
    assert spec.params(options)["ratio"] == ratio
    w, h = (int(x) for x in ratio.split(":"))
    assert spec.output_size(options) == (w, h)


@pytest.mark.parametrize(("alias", "size"), [
    ("runway-gemini-flash", Size.of("16:9", "720p")), ("runway-gen4", Size.of("21:9")),
    ("runway-gen4", Size.of("1:1", "4k")),
])
def test_a_ratio_the_model_lacks_is_one_error(alias: str, size: Size) -> None:
    with pytest.raises(ParameterError, match="cannot make size"):
        catalog.get(alias).options_for(size)


def test_bodies_carry_tags_and_pass_the_simulators_checks() -> None:
    known = lambda uri: uri == URI  # noqa: E731
    gen4 = catalog.get("runway:gen4_image")
    body = gen4.build_body("@mara at @tavern", _images("mara", "tavern"),
                           gen4.options_for(Size.of("4:3", "720p"), seed=4_000_000_000))
    assert body == {"model": "gen4_image", "promptText": "@mara at @tavern", "ratio": "960:720",
                    "referenceImages": [{"uri": URI, "tag": "mara"},
                                        {"uri": URI, "tag": "tavern"}],
                    "seed": 4_000_000_000}
    bodies: list[dict[str, Any]] = [body]
    turbo = catalog.get("runway-gen4-turbo")
    bodies.append(turbo.build_body("@mara", _images("mara"), turbo.parse_options(
        {"public_figure_threshold": "low"})))
    assert bodies[-1]["contentModeration"] == {"publicFigureThreshold": "low"}
    gemini = catalog.get("runway-gemini-flash")
    bodies.append(gemini.build_body("a lantern", [], gemini.options_for(Size.of("1:1"))))
    assert "seed" not in bodies[-1]
    for sent in bodies:
        validate_create(sent, known_upload=known)


def test_bad_input_is_refused_before_a_body_exists() -> None:
    turbo = catalog.get("runway-gen4-turbo")
    with pytest.raises(TooFewReferencesError):
        turbo.build_body("a fox", [], turbo.parse_options())
    gen4 = catalog.get("runway-gen4")
    with pytest.raises(ParameterError, match="cannot be a Runway tag"):
        gen4.build_body("@x", _images("two-words"), gen4.parse_options())
    with pytest.raises(ImageError, match="at most 5 MB"):
        gen4.build_body("@mara", [BoundImage("mara", "data:image/png;base64," + "A" * 5_000_001)],
                        gen4.parse_options())
    with pytest.raises(ParameterError, match="takes no seed"):
        catalog.get("runway-gemini-flash").options_for(seed=3)
