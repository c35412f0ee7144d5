"""Provenance in exported images: PNG text chunks that say where a picture came from.

:func:`png_with_provenance` returns a copy of an image as PNG with ``iTXt`` chunks (UTF-8, so
any prompt fits) named ``refstudio:prompt``, ``refstudio:references`` (JSON list of
``{name, sha256}``), ``refstudio:seed``, ``refstudio:params`` (JSON), ``refstudio:provider``,
``refstudio:model``, ``refstudio:generation_id`` and ``refstudio:provenance`` (all of it as one
JSON object). A stored PNG is copied chunk by chunk, so its pixels stay byte-identical; JPEG and
WebP outputs are converted to PNG. The stored original in ``media/`` is only ever read.

:func:`read_provenance` reads the chunks back without decoding the pixels.
"""

from __future__ import annotations

import json
import struct
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ImageError, InputError, OutputNotFoundError, StorageError
from ..storage.fsutil import (
    ProtectedArea,
    UnreadableFileError,
    atomic_write_bytes,
    check_output_file,
    read_regular,
)

if TYPE_CHECKING:
    from .results import GenerationInfo, GenerationQueries, OutputInfo

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PREFIX = "refstudio:"
COMBINED_KEY = "refstudio:provenance"
#: The single-value keys, in the order they are written.
FIELD_KEYS: tuple[str, ...] = (
    "prompt", "references", "seed", "params", "provider", "model", "generation_id",
)
_JSON_FIELDS = frozenset({"references", "params"})
_TEXT_CHUNKS = frozenset({b"tEXt", b"iTXt", b"zTXt"})
MAX_READ_BYTES = 512_000_000  # a PNG larger than this is not one we wrote
MAX_TEXT_BYTES = 16_000_000  # bound on a compressed text chunk once inflated


def provenance_of(gen: GenerationInfo, output: OutputInfo) -> dict[str, Any]:
    """The provenance record of one output: what made it, from which references."""
    from .. import __version__

    return {
        "generation_id": gen.id,
        "output_index": output.index,
        "prompt": gen.prompt,
        "template_source": gen.template_source,
        "references": [{"name": b.get("name"), "sha256": b.get("sha256")}
                       for b in gen.bindings],
        "seed": gen.seed,
        "params": gen.params,
        "provider": gen.provider,
        "model": gen.model,
        "request_id": gen.request_id,
        "created_at": gen.created_at.isoformat() if gen.created_at else None,
        "completed_at": gen.completed_at.isoformat() if gen.completed_at else None,
        "original_sha256": output.sha256,
        "nsfw": output.nsfw,
        "exported_at": datetime.now(timezone.utc).isoformat(),
        "generator": f"refstudio {__version__}",
    }


def png_with_provenance(data: bytes, provenance: dict[str, Any]) -> bytes:
    """``data`` (PNG, JPEG or WebP) as PNG bytes carrying ``provenance`` in text chunks.

    Text chunks an earlier export left (any ``refstudio:`` keyword) are replaced, never
    duplicated, so reading back gives exactly this record.
    """
    png = data if data.startswith(PNG_SIGNATURE) else _to_png(data)
    chunks = _chunks(png, source="image")
    texts = [_itxt(COMBINED_KEY, json.dumps(provenance, ensure_ascii=False, sort_keys=True))]
    for key in FIELD_KEYS:
        value = provenance.get(key)
        text = json.dumps(value, ensure_ascii=False) if key in _JSON_FIELDS else (
            "" if value is None else str(value))
        texts.append(_itxt(PREFIX + key, text))
    out = [PNG_SIGNATURE]
    for ctype, body in chunks:
        if ctype in _TEXT_CHUNKS and _keyword(body).startswith(PREFIX):
            continue
        out.append(_chunk(ctype, body))
        if ctype == b"IHDR":
            # Before the image data, so readers that stop at IDAT still see them.
            out.extend(texts)
    return b"".join(out)


def read_provenance(path: Path | str) -> dict[str, Any]:
    """The provenance an exported PNG carries, as a dict (see :func:`provenance_of`).

    Raises :class:`ImageError` when the file is not a readable PNG and :class:`InputError`
    when it is a PNG without refstudio provenance.
    """
    path = Path(path)
    try:
        data = read_regular(path, limit=MAX_READ_BYTES)
    except UnreadableFileError as exc:
        if exc.too_large:
            raise ImageError(f"{path}: too large to be an exported image") from exc
        raise InputError(str(exc)) from exc
    return provenance_from_bytes(data, source=str(path))


def provenance_from_bytes(data: bytes, *, source: str = "image") -> dict[str, Any]:
    """Like :func:`read_provenance`, on bytes already in memory."""
    if not data.startswith(PNG_SIGNATURE):
        raise ImageError(f"{source}: not a PNG file; refstudio writes provenance into PNGs",
                         hint="export one with `refstudio export-image GEN_ID --out FILE.png`")
    found: dict[str, str] = {}
    for ctype, body in _chunks(data, source=source):
        if ctype in _TEXT_CHUNKS:
            parsed = _parse_text(ctype, body)
            if parsed is not None and parsed[0].startswith(PREFIX):
                found.setdefault(parsed[0], parsed[1])
    if not found:
        raise InputError(f"{source} carries no refstudio provenance",
                         hint="only images written by `refstudio export-image` carry it")
    if COMBINED_KEY in found:
        try:
            record = json.loads(found[COMBINED_KEY])
        except (json.JSONDecodeError, RecursionError):
            record = None
        if isinstance(record, dict):
            return record
    # No (readable) combined record: rebuild what the single fields hold.
    record = {}
    for key in FIELD_KEYS:
        if PREFIX + key not in found:
            continue
        text = found[PREFIX + key]
        if key in _JSON_FIELDS:
            try:
                record[key] = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                record[key] = text
        elif key in ("seed", "generation_id"):
            record[key] = int(text) if text.lstrip("-").isdigit() else (text or None)
        else:
            record[key] = text
    return record


# -- PNG chunks -----------------------------------------------------------------------------


def _chunks(data: bytes, *, source: str) -> list[tuple[bytes, bytes]]:
    """Split a PNG into (type, body) chunks up to IEND, checking lengths and CRCs."""
    chunks: list[tuple[bytes, bytes]] = []
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise ImageError(f"{source}: the PNG is truncated")
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 8 + length
        if end + 4 > len(data):
            raise ImageError(f"{source}: the PNG is truncated")
        body = data[pos + 8:end]
        (crc,) = struct.unpack(">I", data[end:end + 4])
        if zlib.crc32(ctype + body) != crc:
            raise ImageError(f"{source}: the PNG is corrupt (bad {ctype!r} checksum)")
        chunks.append((ctype, body))
        pos = end + 4
        if ctype == b"IEND":
            return chunks


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _itxt(keyword: str, text: str) -> bytes:
    # keyword \0, compression flag 0, method 0, empty language \0, empty translation \0, text
    body = keyword.encode("latin-1") + b"\0\0\0" + b"\0" + b"\0" + text.encode("utf-8")
    return _chunk(b"iTXt", body)


def _keyword(body: bytes) -> str:
    return body.split(b"\0", 1)[0].decode("latin-1")


def _parse_text(ctype: bytes, body: bytes) -> tuple[str, str] | None:
    """(keyword, text) of a tEXt, zTXt or iTXt chunk; None when it is malformed."""
    try:
        keyword, rest = body.split(b"\0", 1)
        key = keyword.decode("latin-1")
        if ctype == b"tEXt":
            return key, rest.decode("latin-1")
        if ctype == b"zTXt":
            return key, _inflate(rest[1:]).decode("latin-1")
        flag, _method = rest[0], rest[1]
        _lang, rest = rest[2:].split(b"\0", 1)
        _translated, text = rest.split(b"\0", 1)
        return key, (_inflate(text) if flag else text).decode("utf-8")
    except (ValueError, IndexError, UnicodeDecodeError, zlib.error):
        return None


def _inflate(data: bytes) -> bytes:
    # Bounded, so a hostile file cannot make a small chunk expand without limit.
    out = zlib.decompressobj().decompress(data, MAX_TEXT_BYTES)
    if len(out) >= MAX_TEXT_BYTES:
        raise ValueError("text chunk too large")
    return out


def _to_png(data: bytes) -> bytes:
    """Re-encode a JPEG/WebP output as PNG (lossless from the decoded pixels)."""
    import io

    from .imaging import open_image

    img = open_image(data)
    try:
        if img.mode not in ("RGB", "RGBA", "L", "LA"):
            img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
        buf = io.BytesIO()
        img.save(buf, "PNG")
        return buf.getvalue()
    finally:
        img.close()


# -- the Studio face ----------------------------------------------------------------------------


def export_image(
    queries: GenerationQueries,
    generation_id: int,
    index: int,
    path: Path | str,
    *,
    protected: ProtectedArea,
    overwrite: bool = False,
) -> Path:
    """Write output ``index`` of a generation to ``path`` as a PNG carrying its provenance.

    An existing ``path`` is replaced only with ``overwrite``; a file of the project (see
    :func:`refstudio.storage.fsutil.check_output_file`) never is. The stored bytes are checked
    against their hash first, so a damaged media file is refused rather than exported.
    """
    given = Path(path).expanduser()
    if given.suffix.lower() != ".png":
        raise InputError(f"{given}: exported images are PNG files; name it *.png")
    if given.is_dir():
        raise InputError(f"{given} is a folder; give the file name to write, e.g. out.png")
    gen = queries.get(generation_id)
    output = next((o for o in gen.outputs if o.index == index), None)
    if output is None:
        have = ", ".join(o.ref for o in gen.outputs) or "none"
        raise OutputNotFoundError(f"generation #{generation_id} has no output {index} "
                                  f"(status {gen.status}; outputs: {have})")
    # The stored file, or (remote store) its cached copy: both are the original.
    if given.resolve() in (Path(output.location).resolve(), output.path.resolve()):
        raise InputError(f"{given} is the stored original; choose another file")
    target = check_output_file(given, protected=protected, overwrite=overwrite)
    try:
        data = output.data()  # through the media store, checked against the recorded hash
    except StorageError as exc:
        raise StorageError(f"{exc.message}; nothing was exported", hint=exc.hint) from exc
    png = png_with_provenance(data, provenance_of(gen, output))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, png)
    except OSError as exc:
        raise StorageError(f"cannot write {given}: {exc.strerror or exc}") from exc
    return target


__all__ = [
    "export_image",
    "png_with_provenance",
    "provenance_from_bytes",
    "provenance_of",
    "read_provenance",
]
