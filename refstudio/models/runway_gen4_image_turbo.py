"""Runway Gen-4 Image Turbo on Runway's own API (``model: gen4_image_turbo``).

Gen-4 Image's body, sizes and tag binding, but Runway requires 1-3 references (a text-only
request is refused before sending). Price: 2 credits at every ratio.
"""

from __future__ import annotations

from . import runway_api
from .runway_gen4_image import SEED, RunwayGen4Options
from .spec import Price

MODEL = runway_api.MODELS["gen4_image_turbo"]

SPEC = runway_api.runway_spec(
    MODEL,
    alias="runway-gen4-turbo",
    display_name="Runway Gen-4 Image Turbo (Runway API)",
    options=RunwayGen4Options,
    price=Price(0.02),
    seed=SEED,
    notes="needs at least one reference; a quarter of Gen-4's price",
)
