"""Deterministic placeholder images: what the simulator and the offline provider "generate".

The picture is not art; it is evidence. A person looking at it can tell which prompt, seed and
reference images went into a request: a gradient derived from (prompt, seed), the references
pasted as numbered tiles, the prompt text, and a banner that says it is a preview. The same
inputs always give the same pixels, so a cached PNG can be dropped and rendered again.

Pillow only, and fast: a 1920×1080 preview renders in a few tens of milliseconds.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import io
import textwrap
import warnings
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont, ImageOps

__all__ = ["encode_png", "render_preview"]

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

#: Decoding a reference bigger than this is refused (skipped), so a hostile upload cannot make
#: the preview maker allocate gigabytes. Generous: real references are a few megapixels.
_MAX_REFERENCE_PIXELS = 64_000_000


@functools.lru_cache(maxsize=32)
def _font(size: int) -> Font:
    """The default Pillow font at ``size`` px; the fixed bitmap font where FreeType is missing."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError, ImportError):
        # Old Pillow (no size parameter) or no FreeType: the bitmap font still shows the text.
        return ImageFont.load_default()


def _digest(prompt: str, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}\x00{prompt}".encode("utf-8", "surrogatepass")).digest()


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


def _background(width: int, height: int, digest: bytes) -> Image.Image:
    """A two-colour gradient at an angle, all chosen by the digest.

    Built from Pillow's 256×256 gradient, rotated and resized, then used as a mask between two
    flat colours: a few C calls, no per-pixel Python, so it stays cheap at 1080p.
    """
    hue = digest[0] / 255
    c1 = _hsv(hue, 0.55 + digest[1] / 255 * 0.35, 0.35 + digest[2] / 255 * 0.35)
    c2 = _hsv(
        hue + 0.25 + digest[3] / 255 * 0.5,
        0.45 + digest[4] / 255 * 0.4,
        0.55 + digest[5] / 255 * 0.4,
    )
    angle = int.from_bytes(digest[6:8], "big") % 360
    mask = Image.linear_gradient("L").rotate(angle, resample=Image.Resampling.BILINEAR)
    # Rotation leaves black corners; cropping the middle keeps a clean, still-angled ramp.
    mask = mask.crop((48, 48, 208, 208)).resize((width, height), Image.Resampling.BILINEAR)
    return Image.composite(
        Image.new("RGB", (width, height), c2), Image.new("RGB", (width, height), c1), mask
    )


def _decode_reference(data: bytes, box: int) -> Image.Image | None:
    """Decode one reference into an RGB thumbnail fitting ``box``×``box``, or None if unusable."""
    try:
        with warnings.catch_warnings():
            # A decompression-bomb *warning* is turned into an error so the image is skipped
            # instead of decoded (and so tests running with warnings-as-errors stay quiet).
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                if opened.width * opened.height > _MAX_REFERENCE_PIXELS:
                    return None
                # JPEG can decode at 1/2, 1/4, 1/8 scale directly: much faster for big photos.
                opened.draft("RGB", (box, box))
                im = ImageOps.exif_transpose(opened)
                if im.mode in ("RGBA", "LA", "PA") or (
                    im.mode == "P" and "transparency" in im.info
                ):
                    rgba = im.convert("RGBA")
                    flat = Image.new("RGB", rgba.size, (128, 128, 128))
                    flat.paste(rgba, mask=rgba.getchannel("A"))
                    im = flat
                else:
                    im = im.convert("RGB")
                im.thumbnail((box, box), Image.Resampling.BILINEAR)
                return im
    except Exception:  # any decode failure means "skip this one", by contract
        return None


def _darken(img: Image.Image, box: tuple[int, int, int, int], amount: float = 0.55) -> None:
    """Darken a rectangle in place so text drawn on it is legible on any background."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return
    region = img.crop(box)
    img.paste(Image.blend(region, Image.new("RGB", region.size, (0, 0, 0)), amount), box)


def _wrap(text: str, font: Font, max_width: int, max_lines: int) -> list[str]:
    """Wrap ``text`` to lines no wider than ``max_width`` px; ellipsize past ``max_lines``."""
    avg = max(1.0, font.getlength("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ") / 37)
    chars = max(8, int(max_width / avg))
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        lines.extend(textwrap.wrap(paragraph, chars, break_long_words=True) or [""])
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(0, chars - 1)].rstrip() + "…"
    return lines


def render_preview(
    *,
    width: int,
    height: int,
    prompt: str,
    references: Sequence[bytes],
    seed: int,
    label: str = "PREVIEW",
) -> Image.Image:
    """Draw a deterministic placeholder image of exactly ``width``×``height`` pixels (mode RGB).

    - background: a gradient whose colours and angle come from a hash of (prompt, seed);
    - ``references``: encoded images (any Pillow format), shown as numbered tiles in order;
      bytes that do not decode are skipped (the tile count shows how many made it);
    - the prompt, wrapped, on a darkened panel; a ``label`` banner with seed and size.

    Same arguments → same pixels.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width}×{height}")
    digest = _digest(prompt, seed)
    img = _background(width, height, digest)
    draw = ImageDraw.Draw(img)
    short = min(width, height)
    margin = max(4, short // 40)

    # Banner: the label, big, on a dark band across the top, plus the facts that made the image.
    banner_h = max(16, short // 9)
    _darken(img, (0, 0, width, banner_h), 0.65)
    big = _font(max(10, int(banner_h * 0.62)))
    draw.text((margin, banner_h // 2), label, fill=(255, 214, 64), font=big, anchor="lm")
    small = _font(max(9, short // 45))

    # Reference tiles along the bottom, in request order, each numbered like its list position.
    tile = max(16, min(short // 3, (width - 4 * margin) // 3))
    tiles_top = height - margin - tile
    x = margin
    shown = 0
    for index, data in enumerate(references, start=1):
        thumb = _decode_reference(data, tile)
        if thumb is None:
            continue
        shown += 1
        # Frame the tile so a reference with a background like the gradient is still visible.
        draw.rectangle(
            (x - 3, tiles_top - 3, x + tile + 2, tiles_top + tile + 2), fill=(255, 255, 255)
        )
        draw.rectangle((x, tiles_top, x + tile - 1, tiles_top + tile - 1), fill=(24, 24, 24))
        img.paste(thumb, (x + (tile - thumb.width) // 2, tiles_top + (tile - thumb.height) // 2))
        badge = max(12, tile // 6)
        draw.rectangle((x, tiles_top, x + badge, tiles_top + badge), fill=(255, 214, 64))
        draw.text(
            (x + badge // 2, tiles_top + badge // 2),
            str(index),
            fill=(0, 0, 0),
            font=_font(max(9, int(badge * 0.8))),
            anchor="mm",
        )
        x += tile + margin
    text_bottom = tiles_top - margin if shown else height - margin
    # Drawn after the tiles so it can say how many references decoded ("x": the default font
    # has no "×" glyph).
    facts = f"seed {seed}  ·  {width}x{height}  ·  refs {shown}/{len(references)}"
    draw.text((width - margin, banner_h // 2), facts, fill=(235, 235, 235), font=small, anchor="rm")

    # The prompt, wrapped onto a darkened panel between the banner and the tiles.
    body = _font(max(10, short // 30))
    line_h = int(body.size * 1.3) if isinstance(body, ImageFont.FreeTypeFont) else 12
    top = banner_h + margin
    available = max(0, text_bottom - top - 2 * margin)
    max_lines = max(1, available // line_h)
    lines = _wrap(prompt, body, width - 4 * margin, max_lines)
    if available >= line_h:
        panel_h = len(lines) * line_h + 2 * margin
        _darken(img, (margin, top, width - margin, min(text_bottom, top + panel_h)), 0.5)
        y = top + margin
        for line in lines:
            draw.text((2 * margin, y), line, fill=(255, 255, 255), font=body)
            y += line_h
    return img


def encode_png(img: Image.Image) -> bytes:
    """Encode ``img`` as PNG quickly (zlib level 1: bigger files, far less CPU than the default)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


#: Pixels of a preview whose model's output follows its first input (about Nano Banana's).
_FOLLOW_PIXELS = 1024 * 1024


def following_size(references: list[bytes]) -> tuple[int, int]:
    """The size of a model whose output follows its inputs: the first image's shape at about
    one megapixel (1024x1024 when there is none to read)."""
    if references:
        try:
            with Image.open(io.BytesIO(references[0])) as first:
                w, h = first.size
            scale = (_FOLLOW_PIXELS / (w * h)) ** 0.5
            return max(64, round(w * scale)), max(64, round(h * scale))
        except (OSError, ValueError, Image.DecompressionBombError):
            pass
    return 1024, 1024
