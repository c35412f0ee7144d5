"""Gen-4 Image's facts as tests use them, read from its spec (the one place that names them)."""

from __future__ import annotations

from refstudio.models import wavespeed_gen4
from refstudio.models.spec import utf16_length

SPEC = wavespeed_gen4.SPEC
MODEL_ID = SPEC.model
OUTPUT_SIZES = dict(wavespeed_gen4.PIXELS)
ASPECT_RATIOS: tuple[str, ...] = tuple(dict.fromkeys(r for r, _ in OUTPUT_SIZES))
RESOLUTIONS: tuple[str, ...] = tuple(dict.fromkeys(r for _, r in OUTPUT_SIZES))
_DEFAULTS = SPEC.parse_options()
DEFAULT_ASPECT_RATIO: str = _DEFAULTS.aspect_ratio  # type: ignore[attr-defined]
DEFAULT_RESOLUTION: str = _DEFAULTS.resolution  # type: ignore[attr-defined]
SEED_MIN = wavespeed_gen4.SEED.low
SEED_MAX = wavespeed_gen4.SEED.high
MAX_REFERENCES = SPEC.max_references
PROMPT_MAX_UTF16 = SPEC.prompt_max


def output_size(aspect_ratio: str, resolution: str) -> tuple[int, int]:
    return OUTPUT_SIZES[(aspect_ratio, resolution)]


__all__ = ["ASPECT_RATIOS", "DEFAULT_ASPECT_RATIO", "DEFAULT_RESOLUTION", "MAX_REFERENCES",
           "MODEL_ID", "OUTPUT_SIZES", "PROMPT_MAX_UTF16", "RESOLUTIONS", "SEED_MAX", "SEED_MIN",
           "SPEC", "output_size", "utf16_length"]
