"""Facts about the image models of Runway's own API (``POST /v1/text_to_image``).

From the official ``runwayml`` SDK 5.24.0 (``types/text_to_image_create_params.py``) and
``shared/protocol/runway.md``. Kept in one place so the provider's body builder, its checks and
the simulator agree; nothing outside this module names these constants.

The common size vocabulary (aspect ratio × resolution class, :mod:`refstudio.models.sizes`) maps
onto each model's ``ratio`` (its output size in pixels, ``"1920:1080"``). Prices are credits
(1 credit = $0.01) from the protocol notes; decisions about spending read them through
:func:`credits_for`, and a project's configured prices still win for budgets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ImageError, ParameterError

if TYPE_CHECKING:
    from .sizes import Size
    from .spec import ModelOptions, ModelSpec, Price, SeedRange

__all__ = ["API_VERSION", "MODELS", "TAG_PATTERN", "RunwayModel", "RunwayRatio",
           "check_reference_uri", "check_tags", "credits_for", "get", "runway_spec",
           "runway_spec_body"]

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
#: Gen-4's sizes in the common vocabulary: (aspect ratio, resolution class) -> ``ratio``.
_GEN4_SIZES: dict[tuple[str, str], str] = {
    ("16:9", "1080p"): "1920:1080", ("4:3", "1080p"): "1440:1080", ("1:1", "1080p"): "1080:1080",
    ("3:4", "1080p"): "1080:1440", ("9:16", "1080p"): "1080:1920",
    ("16:9", "720p"): "1280:720", ("4:3", "720p"): "960:720", ("1:1", "720p"): "720:720",
    ("3:4", "720p"): "720:960", ("9:16", "720p"): "720:1280",
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
            return _GEMINI_SIZES.get(aspect_ratio) if resolution in (None, "1080p") else None
        ratio = _GEN4_SIZES.get((aspect_ratio, resolution))
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


# ---- the model layer's view: size form, checks and body of every runway: model ---------------

def check_reference_uri(uri: str, tag: str) -> None:
    """Refuse a ``data:`` URI Runway would refuse (over 5 MB), naming the reference."""
    if uri.startswith("data:") and len(uri) > DATA_URI_MAX:
        raise ImageError(
            f"reference @{tag} is {len(uri) / 1e6:.1f} MB as a data URI; Runway takes at most "
            "5 MB that way",
            hint="use Runway uploads (the default) or a smaller image")


def check_tags(tags: Sequence[str]) -> None:
    """Each tag follows Runway's rule and is distinct ignoring case (a template can build a
    name no library reference could have)."""
    seen: dict[str, str] = {}
    for tag in tags:
        if not TAG_PATTERN.fullmatch(tag):
            raise ParameterError(
                f"reference name {tag!r} cannot be a Runway tag: 3-16 characters, a letter "
                "first, then letters, digits or '_'")
        if tag.lower() in seen:
            raise ParameterError(
                f"reference tags {seen[tag.lower()]!r} and {tag!r} differ only in case; "
                "Runway needs distinct tags")
        seen[tag.lower()] = tag


def ratio_table(model: RunwayModel) -> dict[tuple[str, str | None], str]:
    """(aspect ratio, resolution class or None) of the common vocabulary -> ``ratio``."""
    if model.api_name == "gemini_2.5_flash":
        return {(aspect, None): ratio for aspect, ratio in _GEMINI_SIZES.items()}
    return {key: ratio for key, ratio in _GEN4_SIZES.items() if ratio in model.ratios}


@dataclass(frozen=True)
class RunwayRatio:
    """Runway's one ``ratio`` field (the output's pixel size) from the common vocabulary.

    ``table`` maps (aspect ratio, resolution class) to a ratio; a model with one size class
    (Gemini 2.5 Flash) keys it by (aspect ratio, None) and takes no resolution. Any ratio the
    model lists can still be given as the option ``ratio=W:H``.
    """

    table: Mapping[tuple[str, str | None], str]
    default_aspect: str = "16:9"
    default_resolution: str | None = "1080p"

    @property
    def fields(self) -> tuple[str, ...]:
        return ("ratio",)

    def options_for(self, size: Size, spec: ModelSpec) -> dict[str, Any]:
        if size.aspect_ratio is None and size.resolution is None:
            return {}
        aspect = size.aspect_ratio or self.default_aspect
        if self.default_resolution is None:
            if size.resolution is not None:
                raise ParameterError(
                    f"{spec.alias} ({spec.id}) cannot make size {size} (it has no resolution "
                    f"choice); it makes: {self.describe()}")
            ratio = self.table.get((aspect, None))
        else:
            ratio = self.table.get((aspect, size.resolution or self.default_resolution))
        if ratio is None:
            raise ParameterError(
                f"{spec.alias} ({spec.id}) cannot make size {size}; it makes: {self.describe()}")
        return {"ratio": ratio}

    def output_size(self, options: ModelOptions) -> tuple[int, int] | None:
        return ratio_size(str(options.ratio))  # type: ignore[attr-defined]

    def describe(self) -> str:
        aspects = " ".join(dict.fromkeys(a for a, _ in self.table))
        classes = [r for _, r in self.table if r is not None]
        at = f" at {' '.join(dict.fromkeys(classes))}" if classes else " (about 1 megapixel)"
        return f"{aspects}{at} (or ratio=W:H)"


def runway_spec_body(
    spec: ModelSpec, prompt: str, images: Sequence[Any], options: ModelOptions
) -> dict[str, Any]:
    """``POST /v1/text_to_image``: ``model``, ``promptText``, ``ratio``, each image as
    ``{uri, tag}`` so ``@tag`` in the text points at it, ``seed`` and ``contentModeration``
    only when set. ``images`` are bound images (``.url`` and ``.tag``)."""
    tags = [str(getattr(image, "tag", "")) for image in images]
    check_tags(tags)
    refs = []
    for image, tag in zip(images, tags, strict=True):
        uri = str(getattr(image, "url", image))
        check_reference_uri(uri, tag)
        refs.append({"uri": uri, "tag": tag})
    values = spec.params(options)
    body: dict[str, Any] = {"model": spec.model, "promptText": prompt, "ratio": values["ratio"]}
    if refs:
        body["referenceImages"] = refs
    if values.get("seed") is not None:
        body["seed"] = values["seed"]
    threshold = values.get("public_figure_threshold")
    if threshold is not None:
        body["contentModeration"] = {"publicFigureThreshold": threshold}
    return body


def runway_spec(
    model: RunwayModel, *, alias: str, display_name: str, options: type[ModelOptions],
    price: Price, notes: str, seed: SeedRange | None = None, size: RunwayRatio | None = None,
) -> ModelSpec:
    """The spec of one model of Runway's API: what they all share (the body, tagged
    ``referenceImages`` in the model's range, the ratio sizes, 1000-unit prompts) filled in
    from ``model``; each model's module gives the rest. ``size``: the model's own ratios at
    1080p by default."""
    from .spec import ModelSpec

    return ModelSpec(
        id=model.id,
        alias=alias,
        display_name=display_name,
        options=options,
        price=price,
        reference_field="referenceImages",
        min_references=model.min_references,
        max_references=model.max_references,
        binding="tag",
        size=size or RunwayRatio(ratio_table(model)),
        seed=seed,
        prompt_max=1000,
        body_builder=runway_spec_body,
        notes=notes,
    )
