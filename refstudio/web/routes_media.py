"""Images by content hash: ``/media/<sha256>`` (the stored file) and ``/thumbs/<sha256>``.

The hash is the only thing a request says; the library maps a hash it knows to its stored file
(:meth:`Studio.image_file`), so no request can name a path, inside the project or out.
Thumbnails are the static gallery's (same size, same cache folder ``gallery/thumbs``), made on
first request. Content never changes under a hash, so both are cached by the browser for good.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from ..errors import ImageNotFoundError
from ..gallery.thumbs import make_thumbnail, thumb_name
from .pages import call, web

IMMUTABLE = {"cache-control": "private, max-age=31536000, immutable"}


async def media(request: Request) -> Response:
    path = await call(web(request).studio.image_file, request.path_params["sha"])
    return FileResponse(path, headers=IMMUTABLE)


def _thumbnail(studio: Any, sha: str) -> Path:
    source: Path = studio.image_file(sha)  # validates the hash: 64 hex digits the library knows
    dest: Path = studio.root / "gallery" / "thumbs" / thumb_name(sha.lower())
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            make_thumbnail(source, dest)
        except Exception as exc:  # a damaged or missing media file: no thumbnail, no crash
            raise ImageNotFoundError(f"image {sha[:12]} cannot be read") from exc
    return dest


async def thumb(request: Request) -> Response:
    path = await call(_thumbnail, web(request).studio, request.path_params["sha"])
    return FileResponse(path, media_type="image/jpeg", headers=IMMUTABLE)


def routes() -> list[Any]:
    return [Route("/media/{sha}", media), Route("/thumbs/{sha}", thumb)]
