"""Pillow at the edge: decode and check images before anything is stored.

Every image entering the library is fully decoded (not just its header), so a truncated or
corrupt file is refused at import instead of failing a paid request later. PNG, JPEG and WebP
are kept byte for byte; GIF (first frame), BMP and TIFF are converted to PNG losslessly because
the model's providers only promise the first three.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError

KEPT_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
CONVERTED_FORMATS = frozenset({"GIF", "BMP", "TIFF", "MPO"})
DEFAULT_MAX_PIXELS = 64_000_000  # far above any camera the model benefits from


@dataclass(frozen=True)
class ProbedImage:
    """A decoded, accepted image: the bytes to store and what they are."""

    data: bytes
    format: str  # PNG, JPEG or WEBP
    width: int  # after EXIF orientation
    height: int
    converted_from: str | None = None
    #: What ``inspect`` returned for the decoded image (e.g. quality warnings).
    inspection: Any = field(default=None, compare=False)


def probe_image(
    data: bytes,
    *,
    source: str,
    max_bytes: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    inspect: Callable[[Image.Image], Any] | None = None,
) -> ProbedImage:
    """Check that ``data`` is a whole, supported image and return what to store.

    Raises :class:`ImageError` naming ``source`` for: too many bytes, not an image, a truncated
    or corrupt file, a decompression bomb, an unsupported format. ``inspect`` is called on the
    decoded, upright image so callers can examine it without decoding it a second time.
    """
    if len(data) > max_bytes:
        raise ImageError(
            f"{source}: {len(data) / 1e6:.1f} MB is over the {max_bytes / 1e6:.0f} MB limit",
            hint="shrink the image, or raise max_image_mb in refstudio.toml",
        )
    if not data:
        raise ImageError(f"{source}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = (img.format or "").upper()
                if img.width * img.height > max_pixels:
                    raise ImageError(
                        f"{source}: {img.width}x{img.height} pixels is over the limit of "
                        f"{max_pixels:,} (a decompression bomb or a far larger image than needed)"
                    )
                img.load()  # full decode: catches truncated and corrupt files
                oriented = ImageOps.exif_transpose(img) if _has_rotation(img) else img
                width, height = oriented.size
                inspection = inspect(oriented) if inspect else None
                converted = None
                if fmt in KEPT_FORMATS:
                    out = data
                elif fmt in CONVERTED_FORMATS:
                    if fmt == "MPO":  # multi-picture JPEG from cameras: keep the first picture
                        fmt_out, converted = "JPEG", "MPO"
                        out = _encode(img, "JPEG")
                    else:
                        fmt_out, converted = "PNG", fmt
                        out = _encode(img, "PNG")
                    fmt = fmt_out
                else:
                    raise ImageError(
                        f"{source}: {fmt or 'this'} images are not supported",
                        hint="use PNG, JPEG or WebP (GIF, BMP and TIFF are converted to PNG)",
                    )
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{source}: refused as a decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{source}: not an image Pillow can read") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{source}: the image is truncated or corrupt ({exc})") from exc
    return ProbedImage(out, fmt, width, height, converted, inspection)


def _has_rotation(img: Image.Image) -> bool:
    try:
        return img.getexif().get(0x0112, 1) not in (1, None)
    except Exception:  # a broken EXIF block is not worth refusing the image for
        return False


def _encode(img: Image.Image, fmt: str) -> bytes:
    frame = img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB")
    if fmt == "JPEG":
        frame = frame.convert("RGB")
    buf = io.BytesIO()
    frame.save(buf, fmt)
    return buf.getvalue()


def open_image(data: bytes) -> Image.Image:
    """Decode stored bytes (already checked at import) into a loaded Pillow image."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        return img
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"stored image cannot be decoded: {exc}") from exc
