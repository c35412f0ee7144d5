"""Runway Gen-4 Image Turbo on WaveSpeedAI: ``POST /api/v3/runwayml/gen4-image-turbo``.

The body is Gen-4 Image's (same fields, same sizes, same tag binding). WaveSpeed's page allows
0-3 references; Runway's own API requires 1-3 for turbo, so WaveSpeed's range is the one here.
"""

from __future__ import annotations

import dataclasses

from . import wavespeed_gen4
from .spec import Price

# Gen-4 Image's spec (options, references, sizes, seeds, prompt limit) under its own name
# and price: the two models take one body.
SPEC = dataclasses.replace(
    wavespeed_gen4.SPEC,
    id="wavespeed:runwayml/gen4-image-turbo",
    alias="gen4-turbo",
    display_name="Runway Gen-4 Image Turbo",
    price=Price(0.03),  # the model page's price (Runway: 2 credits)
    notes="Gen-4 at a third of the price, faster, a little less faithful",
)
