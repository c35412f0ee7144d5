"""Facts about the image models of Runway's own API (``POST /v1/text_to_image``).

From the official ``runwayml`` SDK 5.24.0 (``types/text_to_image_create_params.py``) and
``shared/protocol/runway.md``. Kept in one place so the provider's body builder, its checks and
the simulator agree; nothing outside this module names these constants.

The common size vocabulary (aspect ratio × resolution class, :mod:`refstudio.models.gen4`) maps
onto each model's ``ratio`` (its output size in pixels, ``"1920:1080"``). Prices are credits
(1 credit = $0.01) from the protocol notes; decisions about spending read them through
:func:`credits_for`, and a project's configured prices still win for budgets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import gen4

__all__ = ["API_VERSION", "MODELS", "TAG_PATTERN", "RunwayModel", "credits_for", "get"]

#: The ``X-Runway-Version`` every request carries (the SDK's pinned version).
API_VERSION = "2024-11-06"
#: Runway's tag rule; refstudio's reference names follow the same rule.
TAG_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{2,15}$")
#: Largest ``data:`` URI Runway takes for an image (the SDK says "up to 5MB"; read as 5,000,000
#: characters of URI, the stricter reading).
DATA_URI_MAX = 5_000_000
#: Seeds Runway accepts (its API reference: 0 to 4294967295).
SEED_MAX = 4_294_967_295

_GEN4_RATIOS = (
    "1024:1024", "1080:1080", "1168:880", "1360:768", "1440:1080", "1080:1440", "1808:768",
    "1920:1080", "1080:1920", "2112:912", "1280:720", "720:1280", "720:720", "960:720",
    "720:960", "1680:720",
)
_GEMINI_RATIOS = (
    "1344:768", "768:1344", "1024:1024", "1184:864", "864:1184", "1536:672", "832:1248",
    "1248:832", "896:1152", "1152:896",
)
#: Gemini 2.5 Flash makes one size class (about a megapixel): the common aspect ratios land
#: on its nearest ratio; a resolution class is not its to choose.
_GEMINI_SIZES = {
    "1:1": "1024:1024", "16:9": "1344:768", "9:16": "768:1344", "4:3": "1184:864",
    "3:4": "864:1184",
}
_GEN4_720P = frozenset({"1280:720", "720:1280", "720:720", "960:720", "720:960", "1680:720"})


@dataclass(frozen=True)
class RunwayModel:
    """What one Runway image model takes."""

    #: The ``model`` field on the wire.
    api_name: str
    ratios: tuple[str, ...]
    min_references: int
    max_references: int
    takes_seed: bool
    #: Credits per image: (720p-class ratios, every other ratio).
    credits: tuple[int, int]
    #: Concurrency and daily generations of a tier-1 organisation (the simulator's default).
    tier1: tuple[int, int] = (1, 50)

    @property
    def id(self) -> str:
        """The model's refstudio id, ``runway:<api name>``."""
        return f"runway:{self.api_name}"

    def ratio_for(self, aspect_ratio: str, resolution: str) -> str | None:
        """The ``ratio`` for a common size, or None when the model has no such size."""
        if self.api_name == "gemini_2.5_flash":
            return _GEMINI_SIZES.get(aspect_ratio) if resolution == "1080p" else None
        try:
            width, height = gen4.output_size(aspect_ratio, resolution)
        except KeyError:
            return None
        ratio = f"{width}:{height}"
        return ratio if ratio in self.ratios else None


MODELS: dict[str, RunwayModel] = {
    m.api_name: m
    for m in (
        RunwayModel("gen4_image", _GEN4_RATIOS, 0, 3, True, (5, 8), tier1=(2, 200)),
        RunwayModel("gen4_image_turbo", _GEN4_RATIOS, 1, 3, True, (2, 2), tier1=(2, 200)),
        RunwayModel("gemini_2.5_flash", _GEMINI_RATIOS, 0, 3, False, (5, 5), tier1=(2, 200)),
    )
}


def get(api_name: str) -> RunwayModel | None:
    """The model of that wire name, or None."""
    return MODELS.get(api_name)


def credits_for(model: RunwayModel, ratio: str) -> int:
    """Credits Runway charges for one image of ``model`` at ``ratio``."""
    low, high = model.credits
    return low if ratio in _GEN4_720P else high


def ratio_size(ratio: str) -> tuple[int, int]:
    """``"1920:1080"`` -> ``(1920, 1080)``."""
    width, _, height = ratio.partition(":")
    return int(width), int(height)
