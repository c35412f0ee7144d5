"""Provider request bodies: exact keys, order of images, validation before money is spent."""

from __future__ import annotations

import pytest

from refstudio.errors import ParameterError, TooManyReferencesError
from refstudio.models import gen4
from refstudio.providers.base import BoundImage, GenParams
from refstudio.providers.payloads import runway_body, wavespeed_body

IMAGES = [BoundImage("mara", "https://x/1.png"), BoundImage("tavern", "https://x/2.png")]
PARAMS = GenParams("16:9", "1080p")


def test_wavespeed_minimal_body() -> None:
    assert wavespeed_body("a calm sea", [], PARAMS) == {
        "prompt": "a calm sea",
        "aspect_ratio": "16:9",
        "resolution": "1080p",
    }


def test_wavespeed_full_body() -> None:
    body = wavespeed_body(
        "@mara in @tavern", IMAGES, GenParams("9:16", "720p", seed=7), base64_output=True
    )
    assert body == {
        "prompt": "@mara in @tavern",
        "aspect_ratio": "9:16",
        "resolution": "720p",
        "reference_images": ["https://x/1.png", "https://x/2.png"],
        "seed": 7,
        "enable_base64_output": True,
    }
    assert "enable_sync_mode" not in body


def test_runway_body() -> None:
    assert runway_body("@mara in @tavern", IMAGES, GenParams("4:3", "720p", seed=9)) == {
        "model": "gen4_image",
        "promptText": "@mara in @tavern",
        "ratio": "960:720",
        "referenceImages": [
            {"uri": "https://x/1.png", "tag": "mara"},
            {"uri": "https://x/2.png", "tag": "tavern"},
        ],
        "seed": 9,
    }
    assert runway_body("sea", [], PARAMS) == {
        "model": "gen4_image",
        "promptText": "sea",
        "ratio": "1920:1080",
    }


@pytest.mark.parametrize(("ratio", "res"), list(gen4.OUTPUT_SIZES))
def test_runway_ratio_is_output_size(ratio: str, res: str) -> None:
    w, h = gen4.output_size(ratio, res)
    assert runway_body("x", [], GenParams(ratio, res))["ratio"] == f"{w}:{h}"


@pytest.mark.parametrize("build", [wavespeed_body, runway_body])
def test_too_many_images(build: object) -> None:
    images = [BoundImage(f"ref{i}", f"https://x/{i}") for i in range(4)]
    with pytest.raises(TooManyReferencesError, match=r"4 reference images \(@ref0, @ref1"):
        build("x", images, PARAMS)  # type: ignore[operator]


@pytest.mark.parametrize("build", [wavespeed_body, runway_body])
@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([BoundImage("ab", "u")], "tag rule"),
        ([BoundImage("1abc", "u")], "tag rule"),
        ([BoundImage("mara", "u"), BoundImage("MARA", "v")], "same ignoring case"),
        ([BoundImage("mara", "")], "no URL"),
    ],
)
def test_bad_images(build: object, images: list[BoundImage], message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        build("x", images, PARAMS)  # type: ignore[operator]


@pytest.mark.parametrize("build", [wavespeed_body, runway_body])
def test_prompt_and_params_checked(build: object) -> None:
    with pytest.raises(ParameterError, match="empty"):
        build("  ", [], PARAMS)  # type: ignore[operator]
    with pytest.raises(ParameterError, match="1001 UTF-16"):
        build("x" * 1001, [], PARAMS)  # type: ignore[operator]
    with pytest.raises(ParameterError, match="allowed"):
        build("x", [], GenParams("2:1", "1080p"))  # type: ignore[operator]
    with pytest.raises(ParameterError, match="out of range"):
        build("x", [], GenParams("1:1", "1080p", seed=0))  # type: ignore[operator]
