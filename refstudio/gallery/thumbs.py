"""Gallery thumbnails: small JPEGs made with Pillow, cached by the image's content hash.

A thumbnail is named after the sha256 of the stored image (``thumbs/<sha>.jpg``), so the same
content is never thumbnailed twice and a rebuild only makes thumbnails for images that are new.
Stored images are immutable (content-addressed), so a cached thumbnail can never be stale.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..storage.fsutil import atomic_file

#: Long side of a thumbnail in pixels: sharp on a 2x screen at the 192 px the CSS shows.
THUMB_SIZE = 384
JPEG_QUALITY = 82
#: Behind letterboxed transparent pixels: the gallery's card colour, so alpha looks intended.
BACKGROUND = (238, 240, 243)


@dataclass
class ThumbResult:
    """What one pass over the wanted thumbnails did."""

    made: int = 0
    reused: int = 0
    #: sha256 of images whose thumbnail could not be made (file gone or unreadable).
    missing: set[str] = field(default_factory=set)


def thumb_name(sha256: str) -> str:
    """The file name of an image's thumbnail inside ``thumbs/``."""
    return f"{sha256}.jpg"


def make_thumbnail(source: Path, dest: Path, size: int = THUMB_SIZE) -> None:
    """Write a JPEG thumbnail of ``source`` (long side ``size``) to ``dest`` atomically.

    Raises OSError (or a Pillow error) when the source cannot be read or decoded.
    """
    from PIL import Image, ImageOps

    with Image.open(source) as opened:
        # JPEG sources decode straight at a reduced scale: far cheaper than a full decode.
        opened.draft("RGB", (size, size))
        img = ImageOps.exif_transpose(opened)
        img.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
        if img.mode in ("RGBA", "LA", "P", "PA"):
            rgba = img.convert("RGBA")
            flat = Image.new("RGB", rgba.size, BACKGROUND)
            flat.paste(rgba, mask=rgba.getchannel("A"))
            img = flat
        elif img.mode != "RGB":
            img = img.convert("RGB")
        # Write to a temporary file and rename it, so a concurrent build (or a crash midway)
        # never leaves a half-written thumbnail that a later build would reuse.
        with atomic_file(dest) as fh:
            img.save(fh, "JPEG", quality=JPEG_QUALITY)


def ensure_thumbnails(
    sources: dict[str, Path], thumbs_dir: Path, wanted: Iterable[str], workers: int | None = None
) -> ThumbResult:
    """Make the thumbnails in ``wanted`` (sha256 values) that ``thumbs_dir`` lacks.

    ``sources`` maps sha256 to the stored image file. Unknown or unreadable images are listed in
    ``missing`` rather than failing the build: one damaged file must not hide a whole gallery.
    """
    thumbs_dir.mkdir(parents=True, exist_ok=True)
    result = ThumbResult()
    todo: list[str] = []
    for sha in sorted(set(wanted)):
        if (thumbs_dir / thumb_name(sha)).is_file():
            result.reused += 1
        elif sha in sources and sources[sha].is_file():
            todo.append(sha)
        else:
            result.missing.add(sha)
    if not todo:
        return result

    def one(sha: str) -> bool:
        try:
            make_thumbnail(sources[sha], thumbs_dir / thumb_name(sha))
        except Exception:  # any decode failure: show a placeholder, keep building
            return False
        return True

    # Pillow releases the GIL while decoding, resizing and encoding, so threads use every core.
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for sha, ok in zip(todo, pool.map(one, todo), strict=True):
            if ok:
                result.made += 1
            else:
                result.missing.add(sha)
    return result
