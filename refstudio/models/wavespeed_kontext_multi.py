"""FLUX Kontext Pro multi on WaveSpeedAI: ``POST /api/v3/wavespeed-ai/flux-kontext-pro/multi``.

Body (shared/protocol/wavespeed-models.md): ``prompt``, ``images`` (1-5 URLs, required),
``aspect_ratio`` (a ratio enum; left out, the output follows the first image), ``guidance_scale``
1-20 (3.5), ``seed`` (-1 random, else 0..2147483647). ``safety_tolerance`` is fal's, not on
WaveSpeed's page, so it is not offered (``refstudio models sync`` would show it if it appears).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .sizes import RatioOnly
from .spec import ModelOptions, ModelSpec, Price, SeedRange

SEED = SeedRange(-1, 2_147_483_647, random=-1)

#: About one megapixel at each ratio (FLUX Kontext's output sizes, multiples of 16).
PIXELS: dict[str, tuple[int, int]] = {
    "21:9": (1568, 672), "16:9": (1392, 752), "4:3": (1184, 880), "3:2": (1248, 832),
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:4": (880, 1184), "9:16": (752, 1392),
    "9:21": (672, 1568),
}


class KontextOptions(ModelOptions):
    seed_field: ClassVar[str | None] = "seed"

    aspect_ratio: Literal["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16",
                          "9:21"] | None = None
    guidance_scale: float = Field(default=3.5, ge=1, le=20)
    seed: int | None = Field(default=None, ge=SEED.low, le=SEED.high)


SPEC = ModelSpec(
    id="wavespeed:wavespeed-ai/flux-kontext-pro/multi",
    alias="kontext-multi",
    display_name="FLUX.1 Kontext Pro multi",
    options=KontextOptions,
    price=Price(0.04),
    reference_field="images",
    min_references=1,
    max_references=5,
    binding="order",
    size=RatioOnly(PIXELS),
    seed=SEED,
    notes="needs at least one reference; about 1 megapixel at any of nine ratios",
)
