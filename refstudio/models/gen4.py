"""Facts about Runway's Gen-4 Image model as served by WaveSpeedAI (see shared/protocol/).

Kept in one place so validation, the simulator, the offline provider and the engine agree.
"""

from __future__ import annotations

import re

MODEL_ID = "runwayml/gen4-image"

ASPECT_RATIOS: tuple[str, ...] = ("1:1", "16:9", "9:16", "4:3", "3:4")
RESOLUTIONS: tuple[str, ...] = ("1080p", "720p")
DEFAULT_ASPECT_RATIO = "16:9"
DEFAULT_RESOLUTION = "1080p"

#: (aspect_ratio, resolution) -> (width, height) of the image the model returns.
OUTPUT_SIZES: dict[tuple[str, str], tuple[int, int]] = {
    ("16:9", "1080p"): (1920, 1080),
    ("4:3", "1080p"): (1440, 1080),
    ("1:1", "1080p"): (1080, 1080),
    ("3:4", "1080p"): (1080, 1440),
    ("9:16", "1080p"): (1080, 1920),
    ("16:9", "720p"): (1280, 720),
    ("4:3", "720p"): (960, 720),
    ("1:1", "720p"): (720, 720),
    ("3:4", "720p"): (720, 960),
    ("9:16", "720p"): (720, 1280),
}

SEED_MIN = 1
SEED_MAX = 2_147_483_647
MAX_REFERENCES = 3
#: Runway counts UTF-16 code units; WaveSpeed documents no limit, so the stricter one applies.
PROMPT_MAX_UTF16 = 1000

#: Reference names follow the model's tag rule so they stay portable to every provider.
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{2,15}$")


def output_size(aspect_ratio: str, resolution: str) -> tuple[int, int]:
    """Return the (width, height) the model produces for this aspect ratio and resolution."""
    return OUTPUT_SIZES[(aspect_ratio, resolution)]


def utf16_length(text: str) -> int:
    """Length of ``text`` in UTF-16 code units, the unit Runway's prompt limit is counted in."""
    return len(text.encode("utf-16-le")) // 2
