"""Library pages: the grid (search, kind filter, pages), adding a reference by upload, one
reference's images and lineage, choosing its primary image."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import InputError, RefstudioError
from ..storage.tables import REFERENCE_KINDS
from . import views
from .pages import call, message_of, redirect, render, status_for, web
from .security import form_route

PAGE_SIZE = 60
#: Files one upload may carry; each is also held to the project's ``max_image_mb``.
MAX_UPLOAD_FILES = 16
_CHUNK = 1 << 20


async def library(request: Request) -> Response:
    studio = web(request).studio
    q = request.query_params.get("q", "")[:200]
    kind = request.query_params.get("kind") or None
    if kind not in (None, *REFERENCE_KINDS):
        kind = None
    page = _int(request.query_params.get("page"), 1)
    refs, total = await call(studio.find_references, q, kind=kind,
                             offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    count = max(1, -(-total // PAGE_SIZE))
    pages = [{"number": n, "current": n == page,
              "url": "/?" + urlencode({"q": q, "kind": kind or "", "page": n})}
             for n in range(max(1, page - 5), min(count, page + 5) + 1)]
    return render(request, "library.html.j2", page="library", refs=[
        views.reference_card(r) for r in refs], total=total, q=q, kind=kind or "",
        kinds=REFERENCE_KINDS, pages=pages, form=_blank_form(), form_error=False)


def _blank_form() -> dict[str, str]:
    return {"name": "", "kind": "character", "description": "", "tags": ""}


@form_route(max_files=MAX_UPLOAD_FILES, max_fields=20, max_part_size=64 * 1024)
async def add_reference(request: Request, form: FormData) -> Response:
    """Store uploads in a private temporary folder, then add them exactly as ``ref add``
    adds files: the same checks (type, size, decoding, pixel bombs) and quality warnings."""
    state = web(request)
    fields = {k: str(form.get(k) or "") for k in ("name", "kind", "description", "tags")}
    uploads = [f for f in form.getlist("images") if isinstance(f, UploadFile)]
    limit = state.studio.project.config.max_image_bytes
    try:
        if not uploads or all(not (u.filename or "") for u in uploads):
            raise InputError("choose at least one image to upload")
        with tempfile.TemporaryDirectory(prefix="refstudio-upload-") as tmp:
            paths = [await _save_upload(upload, Path(tmp), i, limit)
                     for i, upload in enumerate(uploads)]
            tags = [t for t in fields["tags"].replace(",", " ").split() if t]
            info, added = await call(
                state.studio.add_reference, fields["name"], paths,
                kind=fields["kind"] or "character", description=fields["description"],
                tags=tags)
    except RefstudioError as exc:
        refs, total = await call(state.studio.find_references, "", limit=PAGE_SIZE)
        return render(request, "library.html.j2", status_code=status_for(exc), page="library",
                      refs=[views.reference_card(r) for r in refs], total=total, q="",
                      kind="", kinds=REFERENCE_KINDS, pages=[], form=fields, form_error=True,
                      error=message_of(exc))
    warnings = [f"{a.image.label or '#' + str(a.image.id)}: {w}" for a in added
                for w in a.warnings]
    return redirect(views.ref_url(info.name),
                    [f"Added @{info.name} with {len(added)} image(s)", *warnings], state=state)


async def _save_upload(upload: UploadFile, folder: Path, index: int, limit: int) -> Path:
    """Copy one upload to ``folder`` under a name of ours (never the browser's), refusing it
    past ``limit`` bytes. The browser's file name is kept only as a readable suffix."""
    original = Path(upload.filename or "upload").name
    safe = "".join(c for c in original if c.isalnum() or c in "._-").lstrip(".")[-64:]
    # A folder per file keeps the name as uploaded (lineage shows "file mara.png").
    (folder / f"{index:02d}").mkdir()
    path = folder / f"{index:02d}" / (safe or "upload")
    size = 0
    with path.open("wb") as out:
        while chunk := await upload.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise InputError(
                    f"{original}: larger than {limit / 1_000_000:g} MB",
                    hint="shrink the image, or raise max_image_mb in refstudio.toml")
            out.write(chunk)
    return path


async def reference(request: Request) -> Response:
    studio = web(request).studio
    name = request.path_params["name"]
    info = await call(studio.reference, name)
    lineage = await call(studio.lineage, info.name)
    warnings = [w for img in info.images for w in img.warnings]
    return render(request, "reference.html.j2", page="library",
                  ref=views.reference_page(info, lineage), warnings=sorted(set(warnings)))


@form_route(max_files=0, max_fields=5)
async def set_primary(request: Request, form: FormData) -> Response:
    state = web(request)
    name = request.path_params["name"]
    image = _int(str(form.get("image") or ""), 0)
    info = await call(state.studio.set_primary, name, f"#{image}")
    return redirect(views.ref_url(info.name), [f"Image #{image} is now the primary of "
                                               f"@{info.name}"], state=state)


def _int(value: str | None, default: int) -> int:
    try:
        return max(1, int(value or ""))
    except ValueError:
        return default


def routes(max_upload: int) -> list[Any]:
    return [
        Route("/", library),
        Route("/refs", add_reference, methods=["POST"], max_body_size=max_upload),
        Route("/refs/{name}", reference),
        Route("/refs/{name}/primary", set_primary, methods=["POST"], max_body_size=64 * 1024),
    ]
