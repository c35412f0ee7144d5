"""Runway Gen-4 Image Turbo on WaveSpeedAI: ``POST /api/v3/runwayml/gen4-image-turbo``.

The body is Gen-4 Image's (same fields, same sizes, same tag binding). WaveSpeed's page allows
0-3 references; Runway's own API requires 1-3 for turbo, so WaveSpeed's range is the one here.
"""

from __future__ import annotations

from .sizes import RatioResolution
from .spec import ModelSpec, Price
from .wavespeed_gen4 import PIXELS, SEED, Gen4Options

SPEC = ModelSpec(
    id="wavespeed:runwayml/gen4-image-turbo",
    alias="gen4-turbo",
    display_name="Runway Gen-4 Image Turbo",
    options=Gen4Options,
    price=Price(0.03),  # the model page's price (Runway: 2 credits)
    reference_field="reference_images",
    min_references=0,
    max_references=3,
    binding="tag",
    size=RatioResolution(PIXELS),
    seed=SEED,
    prompt_max=1000,
    notes="Gen-4 at a third of the price, faster, a little less faithful",
)
