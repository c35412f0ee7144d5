"""Google Nano Banana edit on WaveSpeedAI: ``POST /api/v3/google/nano-banana/edit``.

Body (shared/protocol/wavespeed-models.md): ``prompt``, ``images`` (1-10 URLs, required),
``output_format`` (``jpeg`` default, or ``png``). No size and no seed: the output follows the
input images. Binding ``order``: the text refers to "image 1", "image 2" in the order sent.
"""

from __future__ import annotations

from typing import Literal

from .sizes import NoSize
from .spec import ModelOptions, ModelSpec, Price


class NanoBananaOptions(ModelOptions):
    output_format: Literal["jpeg", "png"] = "jpeg"


SPEC = ModelSpec(
    id="wavespeed:google/nano-banana/edit",
    alias="nano-banana",
    display_name="Google Nano Banana (Gemini 2.5 Flash Image) edit",
    options=NanoBananaOptions,
    price=Price(0.039),
    reference_field="images",
    min_references=1,
    max_references=10,
    binding="order",
    size=NoSize(),
    also_known_as=("google/gemini-2.5-flash-image/edit",),
    notes="needs at least one reference; no seed, so variants differ by chance only",
)
