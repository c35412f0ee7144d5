"""Setups: small functions that plant a bad input in a case's project or scratch folder.

Each builder returns a ``Setup`` (``ctx -> None``); :func:`steps` chains several. Paths are
relative to the scratch folder unless ``where="proj"``; text may use ``%PROJ%``/``%TMP%``.
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import encode_image, write_bad_image

from .harness import Ctx, Setup


def _root(ctx: Ctx, where: str) -> Path:
    return ctx.proj if where == "proj" else ctx.tmp


def steps(*setups: Setup) -> Setup:
    def setup(ctx: Ctx) -> None:
        for one in setups:
            one(ctx)

    return setup


def write(rel: str, data: bytes | str, where: str = "tmp") -> Setup:
    def setup(ctx: Ctx) -> None:
        path = _root(ctx, where) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            path.write_text(ctx.sub(data), "utf-8")
        else:
            path.write_bytes(data)

    return setup


def image(rel: str, size: tuple[int, int] = (720, 720), fmt: str = "PNG", seed: int = 21,
          where: str = "tmp") -> Setup:
    return write(rel, encode_image(size, fmt, seed), where)


def bad_image(kind: str, rel: str, where: str = "tmp") -> Setup:
    def setup(ctx: Ctx) -> None:
        write_bad_image(kind, _root(ctx, where) / rel)

    return setup


def sparse(rel: str, size: int, where: str = "tmp") -> Setup:
    """A file that claims ``size`` bytes without using the disk."""

    def setup(ctx: Ctx) -> None:
        path = _root(ctx, where) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            fh.truncate(size)

    return setup


def fifo(rel: str, where: str = "tmp") -> Setup:
    def setup(ctx: Ctx) -> None:
        path = _root(ctx, where) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)

    return setup


def folder(rel: str, where: str = "tmp") -> Setup:
    def setup(ctx: Ctx) -> None:
        (_root(ctx, where) / rel).mkdir(parents=True, exist_ok=True)

    return setup


def symlink(rel: str, target: str, where: str = "tmp") -> Setup:
    def setup(ctx: Ctx) -> None:
        path = _root(ctx, where) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(ctx.sub(target), path)

    return setup


def link_loop(rel: str, where: str = "tmp") -> Setup:
    """``rel`` -> ``rel.loop`` -> ``rel``."""

    def setup(ctx: Ctx) -> None:
        path = _root(ctx, where) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path.name + ".loop", path)
        os.symlink(path.name, path.parent / (path.name + ".loop"))

    return setup


def chmod(rel: str, mode: int, where: str = "tmp") -> Setup:
    def setup(ctx: Ctx) -> None:
        (_root(ctx, where) / rel).chmod(mode)

    return setup


def remove(rel: str, where: str = "proj") -> Setup:
    def setup(ctx: Ctx) -> None:
        (_root(ctx, where) / rel).unlink()

    return setup


def value(key: str, compute: Callable[[Ctx], str]) -> Setup:
    """Make ``%KEY%`` usable in the case's arguments."""

    def setup(ctx: Ctx) -> None:
        ctx.values[key] = compute(ctx)

    return setup


def env(**values: str) -> Setup:
    def setup(ctx: Ctx) -> None:
        ctx.env.update({k: ctx.sub(v) for k, v in values.items()})

    return setup


def media(index: int) -> Setup:
    """``%MEDIA%``: the project-relative path of the base project's media file ``index``."""
    return value("MEDIA", lambda ctx: ctx.base.media[index])


def corrupt_media(index: int | None = None) -> Setup:
    """Change bytes of a stored image (all of them when ``index`` is None), keeping its size."""

    def setup(ctx: Ctx) -> None:
        chosen = ctx.base.media if index is None else (ctx.base.media[index],)
        for rel in chosen:
            path = ctx.proj / rel
            data = bytearray(path.read_bytes())
            middle = len(data) // 2
            data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
            path.write_bytes(bytes(data))

    return setup


def edit_toml(old: str, new: str) -> Setup:
    """Replace text in the project's refstudio.toml (``old`` must be there)."""

    def setup(ctx: Ctx) -> None:
        path = ctx.proj / "refstudio.toml"
        text = path.read_text("utf-8")
        assert old in text, old
        path.write_text(text.replace(old, new, 1), "utf-8")

    return setup


def add_toml(line: str) -> Setup:
    """Add a top-level line to refstudio.toml (before its first table)."""

    def setup(ctx: Ctx) -> None:
        path = ctx.proj / "refstudio.toml"
        text = path.read_text("utf-8")
        head, sep, tail = text.partition("\n[")
        path.write_text(f"{head}\n{line}\n{sep}{tail}", "utf-8")

    return setup


def workflow(name: str, text: str) -> Setup:
    return write(f"workflows/{name}", text, where="proj")


def template(name: str, text: str) -> Setup:
    return write(f"templates/{name}", text, where="proj")


# -- packs --------------------------------------------------------------------------------------


def pack_entries(ctx: Ctx) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(ctx.base.pack) as zf:
        return [(info, zf.read(info)) for info in zf.infolist()]


def zip_file(rel: str, build: Callable[[Ctx, zipfile.ZipFile], None]) -> Setup:
    """Write a zip in the scratch folder, built by ``build(ctx, zf)``."""

    def setup(ctx: Ctx) -> None:
        path = ctx.tmp / rel
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            build(ctx, zf)

    return setup


#: Returned by a pack mutation: write no manifest.json at the end.
OMIT = object()


def writestr(zf: zipfile.ZipFile, name: str | zipfile.ZipInfo, data: bytes | str) -> None:
    """``zf.writestr`` that allows a duplicate name (zipfile warns; hostile packs want it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        zf.writestr(name, data)


def pack_with(rel: str, mutate: Callable[[Ctx, zipfile.ZipFile, dict[str, Any]], object]) -> Setup:
    """A copy of the base pack: every media entry as it was, then ``mutate(ctx, zf, manifest)``
    may add entries and change the manifest. The manifest is written last: as JSON, or the
    bytes ``mutate`` returns, or not at all if it returns :data:`OMIT`."""

    def build(ctx: Ctx, zf: zipfile.ZipFile) -> None:
        manifest: dict[str, Any] = {}
        for info, data in pack_entries(ctx):
            if info.filename == "manifest.json":
                manifest = json.loads(data)
            else:
                zf.writestr(info, data)
        result = mutate(ctx, zf, manifest)
        if result is not OMIT:
            writestr(zf, "manifest.json",
                     result if isinstance(result, bytes) else json.dumps(manifest))

    return zip_file(rel, build)


def patch_entry(path: Path, name: str, field: str, value: int) -> None:
    """Rewrite a header field of entry ``name`` in both its local and central headers (zipfile
    writes honest headers; a hostile pack's lie)."""
    offsets = {"flags": (6, 8, 2), "size": (22, 24, 4)}  # local, central, width
    local_at, central_at, width = offsets[field]
    data = bytearray(path.read_bytes())
    raw = name.encode()
    local = data.index(b"PK\x03\x04")
    while data[local + 30:local + 30 + len(raw)] != raw:
        local = data.index(b"PK\x03\x04", local + 4)
    central = data.index(b"PK\x01\x02")
    while data[central + 46:central + 46 + len(raw)] != raw:
        central = data.index(b"PK\x01\x02", central + 4)
    for at in (local + local_at, central + central_at):
        data[at:at + width] = value.to_bytes(width, "little")
    path.write_bytes(bytes(data))


def symlink_entry(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix
    info.external_attr = (0o120777 << 16)
    return info


def png_bytes(seed: int = 31, size: tuple[int, int] = (64, 64)) -> bytes:
    return encode_image(size, "PNG", seed)


def zeros_deflated(size: int) -> bytes:
    """Raw bytes of ``size`` zeros (a zip bomb's payload once deflated)."""
    return bytes(size)


def make_zip_bytes(build: Callable[[zipfile.ZipFile], None]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        build(zf)
    return buf.getvalue()
