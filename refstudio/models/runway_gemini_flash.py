"""Gemini 2.5 Flash Image on Runway's own API (``model: gemini_2.5_flash``).

Body: ``promptText``, ``ratio`` (its own ten ratios, about one megapixel each), ``referenceImages``
(0-3 ``{uri, tag}``). No seed and no content-moderation setting. Binding ``tag``, as Runway
documents tagged references for it. Price: 5 credits.
"""

from __future__ import annotations

from typing import Literal

from . import runway_api
from .spec import ModelOptions, Price

MODEL = runway_api.MODELS["gemini_2.5_flash"]


class RunwayGeminiOptions(ModelOptions):
    ratio: Literal["1344:768", "768:1344", "1024:1024", "1184:864", "864:1184", "1536:672",
                   "832:1248", "1248:832", "896:1152", "1152:896"] = "1344:768"


SPEC = runway_api.runway_spec(
    MODEL,
    alias="runway-gemini-flash",
    display_name="Gemini 2.5 Flash Image (Runway API)",
    options=RunwayGeminiOptions,
    price=Price(0.05),
    # One size class: the aspect ratio alone picks the ratio.
    size=runway_api.RunwayRatio(runway_api.ratio_table(MODEL), default_resolution=None),
    notes="no seed (variants differ by chance); its own ratios at about 1 megapixel",
)
