"""Runway Gen-4 Image on Runway's own API: ``POST /v1/text_to_image`` with ``model:
gen4_image``.

Body (shared/protocol/runway.md): ``promptText`` (1-1000 UTF-16 units), ``ratio`` (the output's
pixel size, one of 16), ``referenceImages`` (0-3 ``{uri, tag}``), ``seed`` (0..4294967295, only
when set), ``contentModeration`` (only when set). Binding ``tag``: ``@mara`` in the text points
at the image tagged ``mara`` (a reference's name already follows Runway's tag rule).
Price: 5 credits at 720p-class ratios, 8 otherwise ($0.01 a credit).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from . import runway_api
from .spec import ModelOptions, Price, SeedRange

SEED = SeedRange(0, runway_api.SEED_MAX)
MODEL = runway_api.MODELS["gen4_image"]

Gen4Ratio = Literal["1024:1024", "1080:1080", "1168:880", "1360:768", "1440:1080", "1080:1440",
                    "1808:768", "1920:1080", "1080:1920", "2112:912", "1280:720", "720:1280",
                    "720:720", "960:720", "720:960", "1680:720"]


class RunwayGen4Options(ModelOptions):
    """Options of both Gen-4 Image models on Runway's API."""

    seed_field: ClassVar[str | None] = "seed"

    ratio: Gen4Ratio = "1920:1080"
    seed: int | None = Field(default=None, ge=SEED.low, le=SEED.high)
    #: ``low``: moderation is less strict about recognisable public figures.
    public_figure_threshold: Literal["auto", "low"] | None = None


SPEC = runway_api.runway_spec(
    MODEL,
    alias="runway-gen4",
    display_name="Runway Gen-4 Image (Runway API)",
    options=RunwayGen4Options,
    price=Price(0.08, ("ratio", {r: 0.05 for r in MODEL.ratios
                                 if runway_api.credits_for(MODEL, r) == 5})),
    seed=SEED,
    notes="Runway's own API: tagged @references, runway:// uploads, credits and daily limits",
)
