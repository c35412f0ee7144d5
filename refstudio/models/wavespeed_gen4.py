"""Runway Gen-4 Image on WaveSpeedAI: ``POST /api/v3/runwayml/gen4-image``.

Body (shared/protocol/wavespeed.md): ``prompt``, ``aspect_ratio`` (always sent: WaveSpeed's docs
disagree on its default), ``resolution``, ``reference_images`` (0-3 URLs, only when there are
some), ``seed`` (1..2147483647, only when set). ``enable_sync_mode`` is never sent: it hides the
task id until the end, so a dropped connection would lose a paid image.

Binding ``tag``: the ``@name`` text is sent as written, images in order of first mention.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .sizes import RatioResolution
from .spec import ModelOptions, ModelSpec, Price, SeedRange

SEED = SeedRange(1, 2_147_483_647)

#: (aspect_ratio, resolution) -> (width, height) of the image the model returns.
PIXELS: dict[tuple[str, str], tuple[int, int]] = {
    ("16:9", "1080p"): (1920, 1080), ("4:3", "1080p"): (1440, 1080),
    ("1:1", "1080p"): (1080, 1080), ("3:4", "1080p"): (1080, 1440),
    ("9:16", "1080p"): (1080, 1920),
    ("16:9", "720p"): (1280, 720), ("4:3", "720p"): (960, 720), ("1:1", "720p"): (720, 720),
    ("3:4", "720p"): (720, 960), ("9:16", "720p"): (720, 1280),
}


class Gen4Options(ModelOptions):
    """Options of both Gen-4 Image models on WaveSpeed."""

    seed_field: ClassVar[str | None] = "seed"

    aspect_ratio: Literal["1:1", "16:9", "9:16", "4:3", "3:4"] = "16:9"
    resolution: Literal["1080p", "720p"] = "1080p"
    seed: int | None = Field(default=None, ge=SEED.low, le=SEED.high)


SPEC = ModelSpec(
    id="wavespeed:runwayml/gen4-image",
    alias="gen4",
    display_name="Runway Gen-4 Image",
    options=Gen4Options,
    # Runway: 5 credits at 720p, 8 at 1080p, $0.01 a credit.
    price=Price(0.08, ("resolution", {"720p": 0.05, "1080p": 0.08})),
    reference_field="reference_images",
    min_references=0,
    max_references=3,
    binding="tag",
    size=RatioResolution(PIXELS),
    seed=SEED,
    # Runway counts UTF-16 code units; WaveSpeed documents no limit, so the stricter applies.
    prompt_max=1000,
    notes="names references with @tags in the text; 720p costs less",
)
