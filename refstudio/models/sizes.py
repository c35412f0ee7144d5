"""The common size vocabulary, and the forms models take it in.

A user says a size one way for every model: an aspect ratio (``16:9``, also typed ``16x9`` or
``16/9``) and a resolution class (``720p``, ``1080p``, ``2k``, ``4k``; ``720`` means ``720p``).
Each model's :class:`SizeForm` maps that onto its own fields:

* :class:`RatioResolution` - a ratio enum and a resolution enum (Gen-4: ``aspect_ratio`` +
  ``resolution``), with a table of the pixel sizes that come back;
* :class:`PixelSize` - one ``"W*H"`` field (Seedream), computed from the ratio and class and kept
  within the model's side limits;
* :class:`RatioOnly` - a ratio enum alone (FLUX Kontext: about one megapixel whatever the ratio);
* :class:`NoSize` - no size field: the output follows the input images (Nano Banana edit).

A size a model cannot make is a :class:`~refstudio.errors.ParameterError` naming what it can.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ParameterError

if TYPE_CHECKING:
    from .spec import ModelOptions, ModelSpec

__all__ = ["RESOLUTION_CLASSES", "NoSize", "PixelSize", "RatioOnly", "RatioResolution", "Size",
           "SizeForm", "normalize_ratio", "normalize_resolution"]

#: Resolution classes of the common vocabulary, smallest first.
RESOLUTION_CLASSES: tuple[str, ...] = ("720p", "1080p", "2k", "4k")

_RATIO = re.compile(r"^\s*(\d{1,2})\s*[xX/:]\s*(\d{1,2})\s*$")


def normalize_ratio(value: str) -> str:
    """``"16x9"``/``"16/9"``/``" 16:9 "`` -> ``"16:9"``; ParameterError if it is no ratio."""
    match = _RATIO.match(str(value))
    if not match or "0" in (match[1], match[2]):
        raise ParameterError(f"aspect ratio {value!r} is not W:H (e.g. 16:9)")
    return f"{int(match[1])}:{int(match[2])}"


def normalize_resolution(value: str) -> str:
    """``"720"``/``"720P"`` -> ``"720p"``, ``"2K"`` -> ``"2k"``; ParameterError otherwise."""
    res = str(value).strip().lower()
    if res.isdigit():
        res += "p"
    if res not in RESOLUTION_CLASSES:
        raise ParameterError(f"resolution {value!r} is not one of "
                             f"{', '.join(RESOLUTION_CLASSES)}")
    return res


@dataclass(frozen=True)
class Size:
    """A size in the common vocabulary; None parts take the model's default."""

    aspect_ratio: str | None = None
    resolution: str | None = None

    @classmethod
    def of(cls, aspect_ratio: str | None = None, resolution: str | None = None) -> Size:
        """Normalised spellings (raises ParameterError on a malformed one)."""
        return cls(None if aspect_ratio is None else normalize_ratio(aspect_ratio),
                   None if resolution is None else normalize_resolution(resolution))

    def __str__(self) -> str:
        """In words, naming each part: ``aspect ratio 2:1 at resolution 4k``."""
        parts = []
        if self.aspect_ratio is not None:
            parts.append(f"aspect ratio {self.aspect_ratio}")
        if self.resolution is not None:
            parts.append(f"resolution {self.resolution}")
        return " at ".join(parts) or "the default size"


class SizeForm(Protocol):
    """How one model takes a size."""

    def options_for(self, size: Size, spec: ModelSpec) -> dict[str, Any]:
        """The option values for ``size``; ParameterError naming the sizes the model makes."""
        ...

    def output_size(self, options: ModelOptions) -> tuple[int, int] | None:
        """(width, height) returned for these options; None when it follows the inputs."""
        ...

    def describe(self) -> str:
        """The sizes it makes, in the common vocabulary, for ``refstudio models``."""
        ...

    @property
    def fields(self) -> tuple[str, ...]:
        """The model's option fields that carry the size (``-o size=W*H`` sets one)."""
        ...


def _refuse(spec: ModelSpec, size: Size, form: SizeForm, why: str = "") -> ParameterError:
    return ParameterError(
        f"{spec.alias} ({spec.id}) cannot make {size}{why}; it makes: {form.describe()}",
    )


@dataclass(frozen=True)
class RatioResolution:
    """A ratio enum plus a resolution enum, with the pixel size of each pair."""

    pixels: Mapping[tuple[str, str], tuple[int, int]]
    ratio_field: str = "aspect_ratio"
    resolution_field: str = "resolution"

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.ratio_field, self.resolution_field)

    @property
    def ratios(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r for r, _ in self.pixels))

    @property
    def resolutions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r for _, r in self.pixels))

    def options_for(self, size: Size, spec: ModelSpec) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if size.aspect_ratio is not None:
            if size.aspect_ratio not in self.ratios:
                raise _refuse(spec, Size(size.aspect_ratio), self)
            values[self.ratio_field] = size.aspect_ratio
        if size.resolution is not None:
            if size.resolution not in self.resolutions:
                raise _refuse(spec, Size(None, size.resolution), self)
            values[self.resolution_field] = size.resolution
        return values

    def output_size(self, options: ModelOptions) -> tuple[int, int] | None:
        key = (getattr(options, self.ratio_field), getattr(options, self.resolution_field))
        return self.pixels.get(key)

    def describe(self) -> str:
        return f"{' '.join(self.ratios)} at {' '.join(self.resolutions)}"


@dataclass(frozen=True)
class RatioOnly:
    """A ratio enum alone; the pixel count is the model's (``pixels`` gives each ratio's)."""

    pixels: Mapping[str, tuple[int, int]]
    ratio_field: str = "aspect_ratio"

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.ratio_field,)

    def options_for(self, size: Size, spec: ModelSpec) -> dict[str, Any]:
        if size.resolution is not None:
            raise _refuse(spec, Size(None, size.resolution), self,
                          " (it has no resolution choice)")
        if size.aspect_ratio is None:
            return {}
        if size.aspect_ratio not in self.pixels:
            raise _refuse(spec, size, self)
        return {self.ratio_field: size.aspect_ratio}

    def output_size(self, options: ModelOptions) -> tuple[int, int] | None:
        ratio = getattr(options, self.ratio_field)
        return None if ratio is None else self.pixels.get(ratio)

    def describe(self) -> str:
        return f"{' '.join(self.pixels)} (about 1 megapixel)"


@dataclass(frozen=True)
class PixelSize:
    """One ``"W*H"`` field. A class sets the short side (``4k``: the long side at the most the
    model makes); the ratio the other. Sides must stay within ``min_side..max_side``."""

    field_name: str = "size"
    min_side: int = 1024
    max_side: int = 4096
    default_ratio: str = "1:1"
    default_class: str = "2k"
    short_side: Mapping[str, int] = field(
        default_factory=lambda: {"720p": 720, "1080p": 1080, "2k": 2048})

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.field_name,)

    def pixels_for(self, ratio: str, res: str) -> tuple[int, int] | None:
        a, b = (int(x) for x in ratio.split(":"))
        if res in self.short_side:
            short = self.short_side[res]
            w, h = (round(short * a / b), short) if a >= b else (short, round(short * b / a))
        else:  # the largest: long side at the maximum
            long = self.max_side
            w, h = (long, round(long * b / a)) if a >= b else (round(long * a / b), long)
        if not all(self.min_side <= s <= self.max_side for s in (w, h)):
            return None
        return w, h

    def options_for(self, size: Size, spec: ModelSpec) -> dict[str, Any]:
        if size.aspect_ratio is None and size.resolution is None:
            return {}
        ratio = size.aspect_ratio or self.default_ratio
        pixels = self.pixels_for(ratio, size.resolution or self.default_class)
        if pixels is None:
            raise _refuse(spec, size, self,
                          f" (each side must be {self.min_side} to {self.max_side} pixels)")
        return {self.field_name: f"{pixels[0]}*{pixels[1]}"}

    def output_size(self, options: ModelOptions) -> tuple[int, int] | None:
        value = getattr(options, self.field_name)
        w, _, h = str(value).partition("*")
        return int(w), int(h)

    def describe(self) -> str:
        return (f"any ratio at 1080p, 2k or 4k with each side {self.min_side} to "
                f"{self.max_side} pixels (or {self.field_name}=W*H)")


@dataclass(frozen=True)
class NoSize:
    """No size field: the output follows the input images."""

    @property
    def fields(self) -> tuple[str, ...]:
        return ()

    def options_for(self, size: Size, spec: ModelSpec) -> dict[str, Any]:
        if size.aspect_ratio is None and size.resolution is None:
            return {}
        raise ParameterError(
            f"{spec.alias} ({spec.id}) cannot make {size}: it has no size choice, the "
            "output follows the input images",
            hint="leave out --aspect-ratio and --resolution for this model",
        )

    def output_size(self, options: ModelOptions) -> tuple[int, int] | None:
        return None

    def describe(self) -> str:
        return "no choice (follows the input images)"
