"""ByteDance Seedream v4 edit on WaveSpeedAI: ``POST /api/v3/bytedance/seedream-v4/edit``.

Body (shared/protocol/wavespeed-models.md): ``prompt``, ``images`` (1-10 URLs, required),
``size`` ``"W*H"`` (default ``2048*2048``), ``seed`` (-1 random, else 0..2147483647). The pages
disagree on the side limits (at most 4096, or 64..16384): 1024..4096 fits both.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, field_validator

from .sizes import PixelSize
from .spec import ModelOptions, ModelSpec, Price, SeedRange

SIZE = PixelSize(field_name="size", min_side=1024, max_side=4096)
SEED = SeedRange(-1, 2_147_483_647, random=-1)
_WH = re.compile(r"^(\d{1,5})\*(\d{1,5})$")


class SeedreamOptions(ModelOptions):
    seed_field: ClassVar[str | None] = "seed"

    size: str = Field(default="2048*2048", pattern=_WH.pattern,
                      json_schema_extra={"x-side-min": SIZE.min_side,
                                         "x-side-max": SIZE.max_side})
    seed: int | None = Field(default=None, ge=SEED.low, le=SEED.high)

    @field_validator("size")
    @classmethod
    def _size(cls, value: str) -> str:
        match = _WH.match(value)
        if not match or not all(SIZE.min_side <= int(s) <= SIZE.max_side
                                for s in (match[1], match[2])):
            raise ValueError(f"size must be W*H with each side {SIZE.min_side} to "
                             f"{SIZE.max_side}, e.g. 2048*2048")
        return value


SPEC = ModelSpec(
    id="wavespeed:bytedance/seedream-v4/edit",
    alias="seedream-v4",
    display_name="ByteDance Seedream v4 edit",
    options=SeedreamOptions,
    price=Price(0.027),
    reference_field="images",
    min_references=1,
    max_references=10,
    binding="order",
    size=SIZE,
    seed=SEED,
    notes="needs at least one reference; sizes up to 4096 a side at one price",
)
