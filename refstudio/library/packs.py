"""Reference packs: share references, their images and their lineage as one zip file.

A pack is a zip with ``manifest.json`` and ``media/<sha256>.<ext>`` (each unique image once).
The manifest (format ``refstudio-pack``, version 1) holds:

- ``references``: the exported references (``dependency: false``) and, marked
  ``dependency: true``, the references whose images were bound into the generations the exported
  images came from (only those bound images). A lineage edge needs a reference image to point
  to, so dependencies travel and are imported as references too.
- ``generations``: the lineage closure. Every generation whose output became an image in the
  pack, with prompt, params, bindings (name, label, sha256, pack image key), provider, model,
  request id and all its outputs (index, sha256, nsfw).
- ``media``: one entry per unique image (sha256, format, file, bytes).

Ids in a pack are pack-local keys (``i1``, ``g1``) so nothing depends on the exporter's database.
Payloads (they hold upload URLs of the exporter's account) and absolute source paths (they name
the exporter's folders) are not exported; the API key is never in the database, so it cannot be.

Importing checks everything before it writes anything: the zip's entries (names, sizes,
compression ratio, symlinks), every image (re-hashed, fully decoded), the manifest (types,
names, cross references) and name clashes. Then media are written and all rows are inserted in
one write transaction; on failure the media files this import added are removed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import stat
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from ..errors import ImageError, InputError, NameTakenError, RefstudioError, StorageError
from ..prompts.names import clean_name, name_key
from ..storage.database import read_session, write_session
from ..storage.fsutil import (
    ProtectedArea,
    UnreadableFileError,
    atomic_file,
    check_output_file,
    open_regular,
)
from ..storage.media import EXTENSIONS, blob_key
from ..storage.migrations import LEGACY_MODEL_ID
from ..storage.tables import (
    Asset,
    Generation,
    Output,
    Reference,
    ReferenceImage,
    ReferenceTag,
    utcnow,
)
from .imaging import KEPT_FORMATS
from .references import check_kind, check_label, check_tag

if TYPE_CHECKING:
    from ..storage.database import Database
    from ..storage.media import MediaStore
    from .references import Library

PACK_FORMAT = "refstudio-pack"
PACK_VERSION = 1
MANIFEST_NAME = "manifest.json"

#: Limits on what an import will read. Per-image entries use the project's ``max_image_mb``.
MAX_MANIFEST_BYTES = 16_000_000  # thousands of generations of JSON fit in a few MB
MAX_TOTAL_BYTES = 2_000_000_000  # uncompressed, all entries together
MAX_ENTRIES = 20_000
#: Uncompressed/compressed ratio above which an entry is treated as a zip bomb. Images are
#: already compressed (ratio ~1) and JSON deflates ~5-20x, so 100 leaves plenty of room.
MAX_RATIO = 100
_RATIO_FLOOR = 1_000_000  # tiny entries may compress well without being a threat

_EXT_FORMAT = {ext: fmt for fmt, ext in EXTENSIONS.items()}
_MEDIA_NAME = re.compile(r"media/([0-9a-f]{64})\.(png|jpg|webp)")
_SHA = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackExportResult:
    """What :meth:`Studio.export_pack` wrote."""

    path: Path
    references: tuple[str, ...]  # as asked for
    dependencies: tuple[str, ...]  # references carried along for lineage
    generations: int
    media: int  # unique image files in the pack
    bytes: int  # size of the zip

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["references"] = list(self.references)
        data["dependencies"] = list(self.dependencies)
        return data


@dataclass(frozen=True)
class PackImportResult:
    """What :meth:`Studio.import_pack` added to the library."""

    references: tuple[str, ...]  # names as created (after renames), pack order
    renamed: dict[str, str]
    generations: int
    images: int
    media_added: int  # image files newly written to media/
    media_reused: int  # images the project already held

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["references"] = list(self.references)
        return data


# -- exporting --------------------------------------------------------------------------------


def export_pack(
    library: Library,
    names: Sequence[str],
    path: Path | str,
    *,
    protected: ProtectedArea,
    overwrite: bool = False,
) -> PackExportResult:
    """Write references ``names`` with their lineage closure to the zip file ``path``.

    An existing ``path`` is replaced only with ``overwrite``; a file of the project (see
    :func:`refstudio.storage.fsutil.check_output_file`) never is.
    """
    if not names:
        raise InputError("name at least one reference to export")
    wanted = [library.get(n) for n in names]  # NotFound with did-you-mean, before any work
    requested_ids = list(dict.fromkeys(r.id for r in wanted))
    given = Path(path).expanduser()
    if given.is_dir():
        raise InputError(f"{given} is a folder; give the pack's file name, e.g. pack.zip")
    target = check_output_file(given, protected=protected, overwrite=overwrite)
    with read_session(library.db) as session:
        manifest, media = _build_manifest(session, requested_ids)
    size = _write_zip(library.store, manifest, media, target)
    refs = manifest["references"]
    return PackExportResult(
        path=target,
        references=tuple(r["name"] for r in refs if not r["dependency"]),
        dependencies=tuple(r["name"] for r in refs if r["dependency"]),
        generations=len(manifest["generations"]),
        media=len(media),
        bytes=size,
    )


def _build_manifest(
    session: Session, requested: list[int]
) -> tuple[dict[str, Any], dict[str, Asset]]:
    """Walk the lineage closure from the requested references; return manifest and media."""
    images: dict[int, ReferenceImage] = {}
    gens: dict[int, Generation] = {}
    outputs: dict[int, list[Output]] = {}
    ref_ids = list(requested)
    todo_images: list[int] = []
    for ref_id in requested:
        todo_images += [
            i.id for i in session.exec(
                select(ReferenceImage).where(ReferenceImage.reference_id == ref_id)
            ).all() if i.id is not None
        ]
    # Fixed point: an image leads to the generation it came from; a generation leads to the
    # images bound into it, which may themselves have come from generations.
    while todo_images:
        image_id = todo_images.pop()
        if image_id in images:
            continue
        image = session.get(ReferenceImage, image_id)
        if image is None:
            continue
        images[image_id] = image
        if image.reference_id not in ref_ids:
            ref_ids.append(image.reference_id)
        if image.source_output_id is None:
            continue
        out = session.get(Output, image.source_output_id)
        if out is None or out.generation_id in gens:
            continue
        gen = session.get(Generation, out.generation_id)
        if gen is None:
            continue
        gens[out.generation_id] = gen
        outputs[out.generation_id] = list(session.exec(
            select(Output).where(Output.generation_id == out.generation_id).order_by(
                col(Output.index))
        ).all())
        for binding in json.loads(gen.bindings_json or "[]"):
            if binding.get("image_id") is not None:
                todo_images.append(int(binding["image_id"]))

    refs = {r.id: r for r in session.exec(
        select(Reference).where(col(Reference.id).in_(ref_ids))).all()}
    requested_set = set(requested)
    deps = sorted((i for i in ref_ids if i not in requested_set), key=lambda i: refs[i].name_key)
    ordered_refs = [refs[i] for i in [*requested, *deps]]
    gen_key = {gid: f"g{n}" for n, gid in enumerate(sorted(gens), start=1)}
    image_key: dict[int, str] = {}
    by_ref: dict[int, list[ReferenceImage]] = {}
    for image in images.values():
        by_ref.setdefault(image.reference_id, []).append(image)
    for ref in ordered_refs:
        by_ref[ref.id] = sorted(  # type: ignore[index]
            by_ref.get(ref.id, []), key=lambda i: (not i.is_primary, i.position, i.id))  # type: ignore[arg-type]
        for image in by_ref[ref.id]:  # type: ignore[index]
            image_key[image.id] = f"i{len(image_key) + 1}"  # type: ignore[index]
    out_by_id = {o.id: o for outs in outputs.values() for o in outs}

    asset_ids = {i.asset_id for i in images.values()} | {
        o.asset_id for outs in outputs.values() for o in outs}
    assets = {a.id: a for a in session.exec(
        select(Asset).where(col(Asset.id).in_(asset_ids))).all()}
    media = {a.sha256: a for a in assets.values()}

    ref_entries = []
    for ref in ordered_refs:
        tags = session.exec(
            select(ReferenceTag.tag).where(ReferenceTag.reference_id == ref.id).order_by(
                col(ReferenceTag.tag))).all()
        ref_images = by_ref[ref.id]  # type: ignore[index]
        has_primary = any(i.is_primary for i in ref_images)
        entries = []
        for n, image in enumerate(ref_images):
            source = None
            if image.source_output_id is not None and image.source_output_id in out_by_id:
                out = out_by_id[image.source_output_id]
                source = {"generation": gen_key[out.generation_id], "index": out.index}
            entries.append({
                "key": image_key[image.id],  # type: ignore[index]
                "label": image.label,
                # A dependency may carry only some images: keep one primary all the same.
                "primary": image.is_primary or (not has_primary and n == 0),
                "position": image.position,
                "sha256": assets[image.asset_id].sha256,
                # Only the file's name: its folder says nothing useful and names the exporter's.
                "source_file": Path(image.source_file).name if image.source_file else None,
                "source_output": source,
            })
        ref_entries.append({
            "name": ref.name,
            "kind": ref.kind,
            "description": ref.description,
            "tags": list(tags),
            "dependency": ref.id not in requested_set,
            "images": entries,
        })

    gen_entries = []
    for gid in sorted(gens):
        gen = gens[gid]
        bindings = []
        for b in json.loads(gen.bindings_json or "[]"):
            image_id = b.get("image_id")
            bindings.append({
                "name": b.get("name"),
                "label": b.get("label"),
                "sha256": b.get("sha256"),
                "image": image_key.get(image_id) if image_id is not None else None,
            })
        params = json.loads(gen.params_json or "{}")
        gen_entries.append({
            "key": gen_key[gid],
            "provider": gen.provider,
            "model": gen.model,
            "model_id": gen.model_id,
            "prompt": gen.prompt,
            "template_source": gen.template_source,
            "params": params,
            "seed": params.get("seed"),
            "bindings": bindings,
            "request_id": gen.request_id,
            "request_hash": gen.request_hash,
            "cost_estimate": gen.cost_estimate,
            "inference_ms": gen.inference_ms,
            "created_at": _iso(gen.created_at),
            "submitted_at": _iso(gen.submitted_at),
            "completed_at": _iso(gen.completed_at),
            "outputs": [
                {"index": o.index, "sha256": assets[o.asset_id].sha256, "nsfw": bool(o.nsfw)}
                for o in outputs[gid]
            ],
        })

    from .. import __version__

    manifest = {
        "format": PACK_FORMAT,
        "version": PACK_VERSION,
        "generator": f"refstudio {__version__}",
        "created_at": datetime.now(timezone.utc).isoformat(),
        "references": ref_entries,
        "generations": gen_entries,
        "media": [
            {"sha256": sha, "format": a.format, "file": _media_name(sha, a.format),
             "bytes": a.bytes}
            for sha, a in sorted(media.items())
        ],
    }
    return manifest, media


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _media_name(sha: str, fmt: str) -> str:
    return f"media/{sha}.{EXTENSIONS[fmt]}"


def _write_zip(
    store: MediaStore, manifest: dict[str, Any], media: Mapping[str, Asset], target: Path
) -> int:
    """Write the zip next to ``target`` and rename it into place (no half-written pack)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target) as fh, zipfile.ZipFile(fh, "w") as zf:
            zf.writestr(MANIFEST_NAME, json.dumps(manifest, indent=2, ensure_ascii=False),
                        compress_type=zipfile.ZIP_DEFLATED)
            for sha, asset in sorted(media.items()):
                data = store.read_verified(asset.path, sha)  # a damaged file is refused
                # Images are compressed already: storing them costs nothing and keeps the
                # importer's ratio check meaningful.
                zf.writestr(_media_name(sha, asset.format), data,
                            compress_type=zipfile.ZIP_STORED)
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return target.stat().st_size


# -- reading and checking a pack ------------------------------------------------------------


@dataclass
class _PackImage:
    key: str
    label: str | None
    primary: bool
    position: int
    sha256: str
    source_file: str | None
    source_output: tuple[str, int] | None


@dataclass
class _PackReference:
    name: str  # after renames
    original: str
    kind: str
    description: str
    tags: list[str]
    dependency: bool
    images: list[_PackImage]


@dataclass
class _PackGeneration:
    key: str
    data: dict[str, Any]
    bindings: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


@dataclass
class _Pack:
    references: list[_PackReference]
    generations: list[_PackGeneration]
    media: dict[str, tuple[str, str]]  # sha -> (entry name, format)


class _Bad(InputError):
    """A pack problem; the message is prefixed with the pack's file name by the caller."""


def _check_entries(zf: zipfile.ZipFile, max_image_bytes: int) -> dict[str, zipfile.ZipInfo]:
    """Refuse anything but a manifest and content-named media, within the size limits."""
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise _Bad(f"{len(infos)} entries is more than the {MAX_ENTRIES} a pack may hold")
    entries: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        name = info.filename
        _check_entry_name(name)
        if (info.external_attr >> 16) and stat.S_ISLNK(info.external_attr >> 16):
            raise _Bad(f"entry {name!r} is a symbolic link")
        if info.flag_bits & 0x1:
            raise _Bad(f"entry {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _Bad(f"entry {name!r} uses an unsupported compression method")
        if name in entries:
            raise _Bad(f"entry {name!r} appears twice")
        limit = MAX_MANIFEST_BYTES if name == MANIFEST_NAME else max_image_bytes
        _check_size(name, info.file_size, info.compress_size, limit)
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise _Bad(f"its contents add up to more than {MAX_TOTAL_BYTES / 1e9:.0f} GB")
        entries[name] = info
    if MANIFEST_NAME not in entries:
        raise _Bad("it has no manifest.json; is it a refstudio pack?")
    return entries


def _check_entry_name(name: str) -> None:
    # Nothing is ever extracted by path, but a name that could escape a folder is a sign of a
    # hostile file: refuse the whole pack rather than guess.
    shown = repr(name)
    if (
        not name
        or "\x00" in name
        or "\\" in name
        or name.startswith("/")
        or re.match(r"[A-Za-z]:", name)
        or any(part in ("", ".", "..") for part in name.split("/"))
    ):
        raise _Bad(f"entry {shown} has an unsafe path (absolute, '..', or odd separators)")
    if name != MANIFEST_NAME and not _MEDIA_NAME.fullmatch(name):
        raise _Bad(f"unexpected entry {shown}: a pack holds manifest.json and "
                   "media/<sha256>.png|jpg|webp only")


def _check_size(name: str, size: int, compressed: int, limit: int) -> None:
    if size > limit:
        raise _Bad(f"entry {name!r} is {size / 1e6:.1f} MB uncompressed, over the "
                   f"{limit / 1e6:.0f} MB limit", hint="raise max_image_mb in refstudio.toml "
                   "if the images are genuinely that large")
    if size > _RATIO_FLOOR and size > MAX_RATIO * max(compressed, 1):
        raise _Bad(f"entry {name!r} expands {size / max(compressed, 1):.0f}x: refused as a "
                   "zip bomb")


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """Read one entry, stopping as soon as it grows past ``limit`` (headers can lie)."""
    chunks: list[bytes] = []
    size = 0
    try:
        with zf.open(info) as fh:
            while chunk := fh.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise _Bad(f"entry {info.filename!r} grows past the "
                               f"{limit / 1e6:.0f} MB limit")
                chunks.append(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            RuntimeError) as exc:
        raise _Bad(f"entry {info.filename!r} is damaged ({exc})") from exc
    _check_size(info.filename, size, info.compress_size, limit)
    return b"".join(chunks)


def _parse_manifest(raw: bytes, rename: Mapping[str, str]) -> _Pack:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Bad(f"manifest.json is not valid JSON ({exc})") from exc
    except RecursionError:
        raise _Bad("manifest.json is nested too deeply to be a pack manifest") from None
    m = _Obj(data, "manifest")
    if m.get("format", str) != PACK_FORMAT:
        raise _Bad("manifest.json is not a refstudio pack manifest")
    version = m.get("version", int)
    if version != PACK_VERSION:
        raise _Bad(f"pack format version {version} is not supported (this refstudio reads "
                   f"version {PACK_VERSION})", hint="update refstudio")

    media: dict[str, tuple[str, str]] = {}
    for n, item in enumerate(m.get("media", list)):
        e = _Obj(item, f"media[{n}]")
        sha = e.sha("sha256")
        fmt = e.get("format", str)
        if fmt not in KEPT_FORMATS:
            raise _Bad(f"media[{n}]: format {fmt!r} is not PNG, JPEG or WEBP")
        file = e.get("file", str)
        if file != _media_name(sha, fmt):
            raise _Bad(f"media[{n}]: file {file!r} should be {_media_name(sha, fmt)!r}")
        if sha in media:
            raise _Bad(f"media[{n}]: image {sha[:12]}… is listed twice")
        media[sha] = (file, fmt)

    gens: list[_PackGeneration] = []
    for n, item in enumerate(m.get("generations", list)):
        g = _Obj(item, f"generations[{n}]")
        params = g.get("params", dict)
        clean = {
            "provider": g.get("provider", str),
            "model": g.get("model", str),
            # Packs made before the model layer held Gen-4 Image work only.
            "model_id": g.opt("model_id", str) or LEGACY_MODEL_ID,
            "prompt": g.get("prompt", str),
            "template_source": g.opt("template_source", str),
            "params": params,
            "request_id": g.opt("request_id", str),
            "request_hash": g.opt("request_hash", str) or "",
            "cost_estimate": float(g.opt("cost_estimate", (int, float)) or 0.0),
            "inference_ms": g.opt("inference_ms", int),
            "created_at": g.time("created_at"),
            "submitted_at": g.time("submitted_at"),
            "completed_at": g.time("completed_at"),
        }
        bindings = []
        for k, b_item in enumerate(g.get("bindings", list)):
            b = _Obj(b_item, f"generations[{n}].bindings[{k}]")
            bindings.append({"name": b.get("name", str), "label": b.opt("label", str),
                             "sha256": b.sha("sha256"), "image": b.opt("image", str)})
        outputs = []
        for k, o_item in enumerate(g.get("outputs", list)):
            o = _Obj(o_item, f"generations[{n}].outputs[{k}]")
            outputs.append({"index": o.get("index", int), "sha256": o.sha("sha256"),
                            "nsfw": bool(o.opt("nsfw", bool))})
        if len({o["index"] for o in outputs}) != len(outputs):
            raise _Bad(f"generations[{n}]: two outputs share an index")
        gens.append(_PackGeneration(g.get("key", str), clean, bindings, outputs))

    refs: list[_PackReference] = []
    for n, item in enumerate(m.get("references", list)):
        r = _Obj(item, f"references[{n}]")
        original = r.get("name", str)
        where = f"references[{n}] ({original!r})"
        try:
            clean_name(original)
            kind = check_kind(r.get("kind", str))
            tags = sorted({check_tag(t) for t in r.get("tags", list)})
        except _Bad:
            raise
        except InputError as exc:
            raise _Bad(f"{where}: {exc.message}") from exc
        images = []
        for k, i_item in enumerate(r.get("images", list)):
            i = _Obj(i_item, f"{where}.images[{k}]")
            try:
                label = check_label(i.opt("label", str))
            except InputError as exc:
                raise _Bad(f"{where}.images[{k}]: {exc.message}") from exc
            source = i.opt("source_output", dict)
            src = None
            if source is not None:
                s = _Obj(source, f"{where}.images[{k}].source_output")
                src = (s.get("generation", str), s.get("index", int))
            source_file = i.opt("source_file", str)
            images.append(_PackImage(
                key=i.get("key", str), label=label, primary=bool(i.opt("primary", bool)),
                position=i.get("position", int), sha256=i.sha("sha256"),
                source_file=_base_name(source_file),
                source_output=src,
            ))
        if not images:
            raise _Bad(f"{where}: a reference needs at least one image")
        if sum(img.primary for img in images) != 1:
            raise _Bad(f"{where}: exactly one image must be primary")
        labels = [img.label for img in images if img.label is not None]
        if len(labels) != len(set(labels)):
            raise _Bad(f"{where}: two images share a label")
        refs.append(_PackReference(
            name=original, original=original, kind=kind,
            description=r.opt("description", str) or "", tags=tags,
            dependency=bool(r.opt("dependency", bool)), images=images,
        ))

    _apply_renames(refs, rename)
    _cross_check(refs, gens, media)
    return _Pack(refs, gens, media)


def _base_name(path: str | None) -> str | None:
    """Only a file name is kept from a pack: a folder part could be anything."""
    if not path:
        return None
    return PurePosixPath(path.replace("\\", "/")).name or None


def _apply_renames(refs: list[_PackReference], rename: Mapping[str, str]) -> None:
    by_key = {name_key(r.original): r for r in refs}
    for old, new in rename.items():
        ref = by_key.get(name_key(old.lstrip("@")))
        if ref is None:
            raise InputError(
                f"--rename {old}={new}: the pack has no reference named {old!r}",
                hint="it holds: " + ", ".join(r.original for r in refs),
            )
        ref.name = clean_name(new)
    seen: dict[str, str] = {}
    for ref in refs:
        key = name_key(ref.name)
        if key in seen:
            raise InputError(
                f"two references in the pack would be named {ref.name!r} "
                f"({seen[key]} and {ref.original})", hint="choose distinct names with --rename")
        seen[key] = ref.original


def _cross_check(
    refs: list[_PackReference], gens: list[_PackGeneration], media: dict[str, tuple[str, str]]
) -> None:
    """Every key and hash the manifest mentions must exist in it."""
    gen_outputs: dict[str, set[int]] = {}
    for g in gens:
        if g.key in gen_outputs:
            raise _Bad(f"generation key {g.key!r} is used twice")
        gen_outputs[g.key] = {o["index"] for o in g.outputs}
        for o in g.outputs:
            _need_media(o["sha256"], media, f"generation {g.key} output {o['index']}")
    image_keys: set[str] = set()
    for r in refs:
        for img in r.images:
            if img.key in image_keys:
                raise _Bad(f"image key {img.key!r} is used twice")
            image_keys.add(img.key)
            _need_media(img.sha256, media, f"an image of {r.original}")
            if img.source_output is not None:
                gkey, index = img.source_output
                if index not in gen_outputs.get(gkey, set()):
                    raise _Bad(f"an image of {r.original} comes from {gkey}:{index}, which "
                               "the pack does not hold")
                out = next(o for g in gens if g.key == gkey for o in g.outputs
                           if o["index"] == index)
                if out["sha256"] != img.sha256:
                    raise _Bad(f"an image of {r.original} differs from the output "
                               f"{gkey}:{index} it claims to come from")
    image_sha = {img.key: img.sha256 for r in refs for img in r.images}
    for g in gens:
        for b in g.bindings:
            if b["image"] is None:
                continue
            if b["image"] not in image_keys:
                raise _Bad(f"generation {g.key} binds image {b['image']!r}, which the pack "
                           "does not hold")
            if image_sha[b["image"]] != b["sha256"]:
                raise _Bad(f"generation {g.key} binds image {b['image']!r} under another "
                           "content hash than the image has")
    used = {img.sha256 for r in refs for img in r.images} | {
        o["sha256"] for g in gens for o in g.outputs}
    if unused := set(media) - used:
        raise _Bad(f"{len(unused)} media file(s) are listed but used by nothing")


def _need_media(sha: str, media: dict[str, tuple[str, str]], what: str) -> None:
    if sha not in media:
        raise _Bad(f"{what} names image {sha[:12]}…, which the pack's media list lacks")


class _Obj:
    """Typed access to one JSON object of the manifest, with errors that say where."""

    def __init__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _Bad(f"{where} should be an object")
        self.value = value
        self.where = where

    def get(self, key: str, kind: Any) -> Any:
        if key not in self.value:
            raise _Bad(f"{self.where}.{key} is missing")
        return self._typed(key, kind)

    def opt(self, key: str, kind: Any) -> Any:
        return None if self.value.get(key) is None else self._typed(key, kind)

    def sha(self, key: str) -> str:
        value: str = self.get(key, str)
        if not _SHA.fullmatch(value):
            raise _Bad(f"{self.where}.{key} is not a sha256 hex digest")
        return value

    def time(self, key: str) -> datetime | None:
        value = self.opt(key, str)
        if value is None:
            return None
        try:
            return datetime.fromisoformat(value)
        except ValueError as exc:
            raise _Bad(f"{self.where}.{key} is not an ISO date") from exc

    def _typed(self, key: str, kind: Any) -> Any:
        value = self.value[key]
        # bool is an int in Python; a manifest saying "index": true is still wrong.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise _Bad(f"{self.where}.{key} has the wrong type")
        return value


# -- importing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CheckedMedia:
    sha256: str
    entry: str
    format: str
    width: int
    height: int
    size: int
    quality_json: str


def import_pack(
    library: Library, path: Path | str, rename: Mapping[str, str] | None = None
) -> PackImportResult:
    """Check a pack completely, then add its references, generations and media in one go."""
    source = Path(path).expanduser()
    label = source.name
    rename = dict(rename or {})
    # Only a regular file is opened (a FIFO or /dev/zero named as the pack must not hang or
    # fill memory); the zip reader then seeks in it and reads only what the checks allow.
    try:
        fh = open_regular(source)
    except UnreadableFileError as exc:
        raise InputError(f"{exc}; nothing was imported") from exc
    with fh:
        try:
            zf = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise InputError(f"{label}: not a zip file ({exc})") from exc
        with zf:
            return _import_open(library, zf, label, rename)


def _import_open(
    library: Library, zf: zipfile.ZipFile, label: str, rename: Mapping[str, str]
) -> PackImportResult:
    try:
        entries = _check_entries(zf, library.max_image_bytes)
        raw = _read_entry(zf, entries[MANIFEST_NAME], MAX_MANIFEST_BYTES)
        pack = _parse_manifest(raw, rename)
        listed = {entry for entry, _ in pack.media.values()}
        present = set(entries) - {MANIFEST_NAME}
        if listed != present:
            missing = sorted(listed - present)
            extra = sorted(present - listed)
            raise _Bad("media files and manifest disagree"
                       + (f"; missing: {', '.join(missing[:3])}" if missing else "")
                       + (f"; not listed: {', '.join(extra[:3])}" if extra else ""))
        checked = [_check_media(library, zf, entries[entry], sha, fmt, label)
                   for sha, (entry, fmt) in pack.media.items()]
    except _Bad as exc:
        raise InputError(f"{label}: {exc.message}; nothing was imported",
                         hint=exc.hint) from exc
    _refuse_clashes(library, pack.references)
    return _write(library, zf, pack, checked)


def _check_media(
    library: Library, zf: zipfile.ZipFile, info: zipfile.ZipInfo, sha: str, fmt: str, label: str
) -> _CheckedMedia:
    data = _read_entry(zf, info, library.max_image_bytes)
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha:
        raise _Bad(f"{info.filename}: its bytes hash to {actual[:12]}…, not the name's "
                   f"{sha[:12]}…; the pack is damaged or tampered with")
    try:
        probed = library.probe_bytes(data, source=f"{label}:{info.filename}")
    except ImageError as exc:
        raise _Bad(exc.message) from exc
    if probed.converted_from is not None or probed.format != fmt:
        raise _Bad(f"{info.filename}: the file is {probed.converted_from or probed.format}, "
                   f"not the {fmt} the manifest says")
    from .references import _warning_texts

    return _CheckedMedia(sha, info.filename, fmt, probed.width, probed.height, len(data),
                         json.dumps(_warning_texts(probed.inspection)))


def _refuse_clashes(library: Library, refs: Iterable[_PackReference]) -> None:
    with read_session(library.db) as session:
        _refuse_clashes_in(session, refs)


def _refuse_clashes_in(session: Session, refs: Iterable[_PackReference]) -> None:
    refs = list(refs)
    keys = [name_key(r.name) for r in refs]
    taken = {r.name_key: r.name for r in session.exec(
        select(Reference).where(col(Reference.name_key).in_(keys))).all()}
    clashes = [r for r in refs if name_key(r.name) in taken]
    if not clashes:
        return
    shown = ", ".join(
        f"{r.name}" + (f" (exists as {taken[name_key(r.name)]})"
                       if taken[name_key(r.name)] != r.name else "")
        + (" [carried for lineage]" if r.dependency else "")
        for r in clashes
    )
    raise NameTakenError(
        f"the project already has references named: {shown}; nothing was imported",
        hint=f"import them under free names: run the import again with "
        f"`{_rename_options(session, refs, clashes)}`",
    )


def _rename_options(
    session: Session, refs: list[_PackReference], clashes: list[_PackReference]
) -> str:
    """``--rename`` options that make the import work: names free in the library and the pack.

    Renames are given by the pack's own names (that is what ``--rename`` matches), and the ones
    already asked for that did not clash are repeated, so the options are complete.
    """
    clashing = {id(r) for r in clashes}
    used = {name_key(r.name) for r in refs if id(r) not in clashing}
    renames: dict[str, str] = {r.original: r.name for r in refs
                               if id(r) not in clashing and r.name != r.original}
    for ref in clashes:
        new = _free_name(session, ref.original, used)
        used.add(name_key(new))
        renames[ref.original] = new
    return " ".join(f"--rename {old}={new}" for old, new in renames.items())


def _free_name(session: Session, base: str, used: set[str]) -> str:
    """``base_2``, ``base_3``... (cut to the name rule's 16 characters), the first one free."""
    start = 2
    while True:
        candidates = []
        for n in range(start, start + 50):
            suffix = f"_{n}"
            candidates.append(clean_name(base[: 16 - len(suffix)].rstrip("_") + suffix))
        taken = set(session.exec(select(Reference.name_key).where(
            col(Reference.name_key).in_([name_key(c) for c in candidates]))).all())
        for candidate in candidates:
            if name_key(candidate) not in taken and name_key(candidate) not in used:
                return candidate
        start += 50


def _write(
    library: Library,
    zf: zipfile.ZipFile,
    pack: _Pack,
    checked: list[_CheckedMedia],
) -> PackImportResult:
    store = library.store
    added: list[str] = []  # media keys this import created: removed again if it fails
    def contents() -> Iterator[tuple[bytes, str]]:
        for m in checked:
            if store.exists(blob_key(m.sha256, EXTENSIONS[m.format])):
                continue
            # Read again rather than hold every image in memory; re-hash since the file
            # could have changed since it was checked.
            data = _read_entry(zf, zf.getinfo(m.entry), library.max_image_bytes)
            if hashlib.sha256(data).hexdigest() != m.sha256:
                raise InputError(f"{m.entry} changed while it was being imported")
            yield data, EXTENSIONS[m.format]

    try:
        # Written together and flushed to disk together before the rows are committed.
        added.extend(blob.key for blob in store.put_many(contents()) if blob.created)
        with write_session(library.db) as session:
            # Checked again under the write lock: another process may have taken a name.
            _refuse_clashes_in(session, pack.references)
            _insert(session, pack, checked)
    except BaseException:
        _remove_unreferenced(library.db, store, added)
        raise
    return PackImportResult(
        references=tuple(r.name for r in pack.references),
        renamed={r.original: r.name for r in pack.references if r.name != r.original},
        generations=len(pack.generations),
        images=sum(len(r.images) for r in pack.references),
        media_added=len(added),
        media_reused=len(checked) - len(added),
    )


def _insert(session: Session, pack: _Pack, checked: list[_CheckedMedia]) -> None:
    # Assets: reuse a row holding the same content, so each image is stored once.
    asset_ids: dict[str, int] = {}
    existing = session.exec(
        select(Asset).where(col(Asset.sha256).in_([m.sha256 for m in checked]))).all()
    for asset in existing:
        asset_ids[asset.sha256] = asset.id  # type: ignore[assignment]
    for m in checked:
        if m.sha256 in asset_ids:
            continue
        asset = Asset(sha256=m.sha256, path=blob_key(m.sha256, EXTENSIONS[m.format]),
                      format=m.format, width=m.width, height=m.height, bytes=m.size,
                      quality_json=m.quality_json)
        session.add(asset)
        session.flush()
        asset_ids[m.sha256] = asset.id  # type: ignore[assignment]

    # Generations first (new ids, completed), with bindings filled in once image ids exist.
    gen_rows: dict[str, Generation] = {}
    output_ids: dict[tuple[str, int], int] = {}
    now = utcnow()
    for g in pack.generations:
        d = g.data
        row = Generation(
            status="completed", provider=d["provider"], model=d["model"],
            model_id=d["model_id"],
            template_source=d["template_source"], prompt=d["prompt"],
            params_json=json.dumps(d["params"]), payload_json="{}", bindings_json="[]",
            request_hash=d["request_hash"], request_id=d["request_id"],
            # Not paid by this project: an imported cost must not eat into its budget.
            cost_estimate=0.0, inference_ms=d["inference_ms"],
            created_at=d["created_at"] or now, updated_at=now,
            submitted_at=d["submitted_at"], completed_at=d["completed_at"] or now,
        )
        session.add(row)
        session.flush()
        gen_rows[g.key] = row
        for o in g.outputs:
            out = Output(generation_id=row.id, index=o["index"],  # type: ignore[arg-type]
                         asset_id=asset_ids[o["sha256"]], nsfw=o["nsfw"], source_url="pack")
            session.add(out)
            session.flush()
            output_ids[(g.key, o["index"])] = out.id  # type: ignore[assignment]

    image_ids: dict[str, tuple[int, int]] = {}  # pack image key -> (reference id, image id)
    for r in pack.references:
        ref = Reference(name=r.name, name_key=name_key(r.name), kind=r.kind,
                        description=r.description)
        session.add(ref)
        session.flush()
        for tag in r.tags:
            session.add(ReferenceTag(reference_id=ref.id, tag=tag))  # type: ignore[arg-type]
        for img in r.images:
            row_img = ReferenceImage(
                reference_id=ref.id,  # type: ignore[arg-type]
                asset_id=asset_ids[img.sha256], label=img.label, is_primary=img.primary,
                position=img.position, source_file=img.source_file,
                source_output_id=output_ids[img.source_output] if img.source_output else None,
            )
            session.add(row_img)
            session.flush()
            image_ids[img.key] = (ref.id, row_img.id)  # type: ignore[assignment]

    for g in pack.generations:
        bindings = []
        for b in g.bindings:
            ref_id, image_id = image_ids.get(b["image"], (None, None)) if b["image"] else (
                None, None)
            bindings.append({"name": b["name"], "label": b["label"], "sha256": b["sha256"],
                             "reference_id": ref_id, "image_id": image_id})
        row = gen_rows[g.key]
        row.bindings_json = json.dumps(bindings)
        session.add(row)


def _remove_unreferenced(db: Database, store: MediaStore, keys: list[str]) -> None:
    """Undo this import's media writes, sparing any file a row (from elsewhere) now uses."""
    if not keys:
        return
    try:
        with read_session(db) as session:
            used = set(session.exec(select(Asset.path).where(col(Asset.path).in_(keys))).all())
    except RefstudioError:
        return  # cannot tell: leaving a stray file is safer than deleting a used one
    for key in keys:
        if key not in used:
            with contextlib.suppress(StorageError):  # a stray blob is harmless
                store.delete(key)


# -- the Studio face ----------------------------------------------------------------------------


__all__ = ["PackExportResult", "PackImportResult", "export_pack", "import_pack"]
