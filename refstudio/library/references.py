"""The reference library: named references, their images, and the assets behind them.

All reads and writes go through short sessions from :mod:`refstudio.storage.database`. Every
method that takes user input validates all of it (names, files, labels) before it writes
anything, so a bad call leaves the database and ``media/`` exactly as they were.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from ..errors import (
    ImageError,
    ImageNotFoundError,
    InputError,
    NameTakenError,
    ReferenceNotFoundError,
    RefstudioError,
    StorageError,
)
from ..prompts.names import clean_name, name_key, suggest
from ..storage.database import Database, read_session, write_session
from ..storage.fsutil import UnreadableFileError, read_regular
from ..storage.media import EXTENSIONS, MediaStore, StoredBlob
from ..storage.rows import add_tags, ensure_assets, insert_reference
from ..storage.tables import REFERENCE_KINDS, Asset, Reference, ReferenceImage, ReferenceTag, utcnow
from .imaging import ProbedImage, open_image, probe_image

LABEL_MAX = 32
#: Images checked at once in a batch, and the smallest batch worth the threads.
PROBE_THREADS = 4
PARALLEL_PROBE_MIN = 8


@dataclass(frozen=True)
class ImageInfo:
    """One image of a reference, as the API returns it.

    ``key`` names it in the media store; :attr:`path` is a local file holding it, fetched on
    demand (for the default folder store, the stored file itself); :attr:`location` says
    where it is stored without fetching it."""

    id: int
    label: str | None
    is_primary: bool
    position: int
    sha256: str
    key: str
    format: str
    width: int
    height: int
    bytes: int
    source_file: str | None
    source_output_id: int | None
    warnings: tuple[str, ...] = ()
    _store: MediaStore | None = field(default=None, repr=False, compare=False)

    @property
    def path(self) -> str:
        """A local copy of the image (downloaded and hash-checked first for a remote store)."""
        if self._store is None:
            return self.key
        return str(self._store.local_copy(self.key, self.sha256))

    @property
    def location(self) -> str:
        """Where the image is stored: an absolute path, or an ``s3://`` URL."""
        return self.key if self._store is None else self._store.location(self.key)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of one image (``path`` is where it is stored)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("key", "_store")}
        data["path"] = self.location
        data["warnings"] = list(self.warnings)
        return data


@dataclass(frozen=True)
class ReferenceInfo:
    """A reference with its tags and images (primary first, then by position)."""

    id: int
    name: str
    kind: str
    description: str
    tags: tuple[str, ...]
    images: tuple[ImageInfo, ...]
    created_at: datetime
    updated_at: datetime
    warnings: tuple[str, ...] = field(default=())

    @property
    def primary(self) -> ImageInfo | None:
        fallback = self.images[0] if self.images else None
        return next((i for i in self.images if i.is_primary), fallback)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape of ``ref show --json`` / ``ref list --json``."""
        # Not asdict(): it would deep-copy each image's media store.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["tags"] = list(self.tags)
        data["images"] = [i.to_dict() for i in self.images]
        data["created_at"] = self.created_at.isoformat()
        data["updated_at"] = self.updated_at.isoformat()
        data.pop("warnings")
        return data


@dataclass(frozen=True)
class AddedImage:
    """What importing one file produced: the image, and quality warnings worth showing."""

    image: ImageInfo
    warnings: tuple[str, ...]


def check_kind(kind: str) -> str:
    if kind not in REFERENCE_KINDS:
        raise InputError(f"unknown kind {kind!r}; choose one of: {', '.join(REFERENCE_KINDS)}")
    return kind


def check_label(label: str | None) -> str | None:
    if label is None:
        return None
    if not label or len(label) > LABEL_MAX or not all(c.isalnum() or c in "_-" for c in label):
        raise InputError(
            f"invalid label {label!r}: use 1-{LABEL_MAX} letters, digits, '_' or '-'"
        )
    return label


def check_tag(tag: str) -> str:
    tag = tag.strip()
    if not tag or len(tag) > 64 or any(c.isspace() or c == "," for c in tag):
        raise InputError(f"invalid tag {tag!r}: tags are 1-64 characters without spaces or commas")
    return tag


class Library:
    """Queries and changes on a project's references. Obtain one from :class:`refstudio.Studio`."""

    def __init__(
        self,
        db: Database,
        store: MediaStore,
        *,
        max_image_bytes: int,
        quality_check: Any = None,
        author: str | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.max_image_bytes = max_image_bytes
        self._quality_check = quality_check
        #: Recorded on every reference and image this library object adds.
        self.author = author

    # -- importing images -------------------------------------------------------------------

    def probe_file(self, path: Path | str) -> ProbedImage:
        """Read and fully check one image file without storing it."""
        path = Path(path)
        source = str(path)
        try:
            # A regular file only, and never more than the limit (+1 byte to tell): /dev/zero,
            # a FIFO or a file growing under us cannot hang the command or fill memory.
            data = read_regular(path, limit=self.max_image_bytes)
        except UnreadableFileError as exc:
            raise ImageError(
                str(exc),
                hint="shrink the image, or raise max_image_mb in refstudio.toml"
                if exc.too_large else None,
            ) from exc
        return self.probe_bytes(data, source=source)

    def probe_bytes(self, data: bytes, *, source: str) -> ProbedImage:
        """Fully check image bytes (and run the quality check) without storing them."""
        return probe_image(
            data, source=source, max_bytes=self.max_image_bytes, inspect=self._quality_check
        )

    def _store_asset(self, session: Session, probed: ProbedImage) -> int:
        """Store checked bytes (once) and return their asset id."""
        blob = self.store.put_bytes(probed.data, extension=EXTENSIONS[probed.format])
        ids = ensure_assets(session.connection(), [{
            "sha256": blob.sha256, "path": blob.key, "format": probed.format,
            "width": probed.width, "height": probed.height, "bytes": blob.size,
            "quality_json": json.dumps(_warning_texts(probed.inspection)),
        }])
        return ids[blob.sha256]

    def store_probed(self, probed: ProbedImage) -> int:
        """Store checked image bytes as an asset (once) and return the asset id."""
        with write_session(self.db) as session:
            return self._store_asset(session, probed)

    def _probe_files(self, images: Sequence[Path | str]) -> list[_Staged]:
        """Check image files; keep only what storing them needs (bytes are read again then).

        Several at once in a batch: Pillow decodes and hashlib hashes outside the GIL, so the
        cores share the work. The first bad file in order is the one reported, as one by one.
        """
        if len(images) < PARALLEL_PROBE_MIN:
            return [self._probe_one(image) for image in images]
        workers = min(PROBE_THREADS, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers, thread_name_prefix="refstudio-probe") as pool:
            return list(pool.map(self._probe_one, images))

    def _probe_one(self, image: Path | str) -> _Staged:
        probed = self.probe_file(image)
        sha = hashlib.sha256(probed.data).hexdigest()
        if probed.converted_from is not None:
            return _Staged(probed, sha, None)
        # Stored byte for byte: read again when stored, so a batch of a thousand big images is
        # never all in memory at once.
        return _Staged(replace(probed, data=b""), sha, Path(image))

    def _store_staged(self, staged: Sequence[_Staged]) -> list[StoredBlob]:
        """Write the files of a batch, durable together (see :meth:`MediaStore.put_many`).

        Raises InputError, leaving nothing behind, if a file changed since it was checked.
        """

        def contents() -> Iterator[tuple[bytes, str]]:
            for item in staged:
                data = item.probed.data
                if item.source is not None:
                    data = _read_again(item.source, self.max_image_bytes)
                yield data, EXTENSIONS[item.probed.format]

        blobs = self.store.put_many(contents())
        changed = [item.source for item, blob in zip(staged, blobs, strict=True)
                   if blob.sha256 != item.sha256]
        if changed:
            self._forget_files(blobs)
            raise InputError(f"{changed[0]} changed while it was being imported; nothing was added")
        return blobs

    def _forget_files(self, blobs: Sequence[StoredBlob]) -> None:
        """Remove files a failed batch created, sparing any that a row (from elsewhere) uses."""
        created = [b.key for b in blobs if b.created]
        if not created:
            return
        try:
            with read_session(self.db) as session:
                used = set(session.exec(select(Asset.path).where(col(Asset.path).in_(created))))
        except RefstudioError:
            return  # cannot tell: a stray file is safer than deleting one in use
        for key in created:
            if key not in used:
                with contextlib.suppress(StorageError):  # a stray blob is harmless
                    self.store.delete(key)

    def _asset_ids(
        self, session: Session, staged: Sequence[_Staged], blobs: Sequence[StoredBlob]
    ) -> list[int]:
        """Asset ids for stored blobs, inserting the new ones (a content stored meanwhile by
        another process is reused, not duplicated)."""
        ids = ensure_assets(session.connection(), [
            {"sha256": blob.sha256, "path": blob.key, "format": item.probed.format,
             "width": item.probed.width, "height": item.probed.height, "bytes": blob.size,
             "quality_json": json.dumps(_warning_texts(item.probed.inspection))}
            for item, blob in zip(staged, blobs, strict=True)
        ])
        return [ids[b.sha256] for b in blobs]

    # -- references ---------------------------------------------------------------------------

    def add_reference(
        self,
        name: str,
        images: Sequence[Path | str],
        *,
        kind: str = "character",
        description: str = "",
        tags: Iterable[str] = (),
        labels: Sequence[str | None] = (),
    ) -> tuple[ReferenceInfo, list[AddedImage]]:
        """Create a reference from image files; the first becomes its primary image. Returns
        it and per-image quality warnings.

        ``labels`` name the images in order (fewer labels than images is fine).
        """
        spec = {"name": name, "images": images, "kind": kind, "description": description,
                "tags": tags, "labels": labels}
        return self.add_references([spec])[0]

    def add_references(
        self, references: Sequence[Mapping[str, Any]]
    ) -> list[tuple[ReferenceInfo, list[AddedImage]]]:
        """Create many references at once, each given as the keyword arguments of
        :meth:`add_reference` (``name``, ``images``, optionally ``kind``, ``description``,
        ``tags``, ``labels``).

        All or nothing: every name and file is checked before anything is written; the files
        are then flushed to disk together and the rows committed in one transaction, which is
        several times faster than one :meth:`add_reference` call per reference.
        """
        if not references:
            return []
        plans = [_plan_reference(**spec) for spec in references]
        seen: dict[str, str] = {}
        for plan in plans:
            if plan.key in seen:
                raise NameTakenError(f"the name {plan.name!r} is given twice "
                                     f"(as {seen[plan.key]!r} and {plan.name!r})")
            seen[plan.key] = plan.name
        existing = self._find_many(list(seen))
        if existing:
            raise NameTakenError(
                f"a reference named {existing[0].name!r} already exists",
                hint=f"add an image to it with `refstudio ref image add {existing[0].name} FILE`",
            )
        flat = self._probe_files([image for plan in plans for image in plan.images])
        staged, start = [], 0
        for plan in plans:
            staged.append(flat[start:start + len(plan.images)])
            start += len(plan.images)
        blobs = self._store_staged(flat)
        ref_ids: list[int] = []
        try:
            with write_session(self.db) as session:
                asset_ids = iter(self._asset_ids(session, flat, blobs))
                conn = session.connection()
                for plan in plans:
                    # The unique index on the name decides, even against a racing process.
                    ref_id = insert_reference(conn, name=plan.name, key=plan.key,
                                              kind=plan.kind, description=plan.description,
                                              author=self.author)
                    ref_ids.append(ref_id)
                    add_tags(conn, ref_id, plan.tags)
                    for position, (path, label) in enumerate(zip(plan.images, plan.labels,
                                                                 strict=True)):
                        session.add(
                            ReferenceImage(
                                reference_id=ref_id,
                                author=self.author,
                                asset_id=next(asset_ids),
                                label=label,
                                is_primary=position == 0,
                                position=position,
                                source_file=str(Path(path).resolve()),
                            )
                        )
        except BaseException:
            self._forget_files(blobs)
            raise
        infos = {info.id: info for info in self._load(ids=ref_ids)}
        return [
            (infos[ref_id], _added(infos[ref_id], [item.probed for item in items]))
            for ref_id, items in zip(ref_ids, staged, strict=True)
        ]

    def _find_many(self, keys: list[str]) -> list[Reference]:
        found: list[Reference] = []
        with read_session(self.db) as session:
            for start in range(0, len(keys), 500):
                found.extend(session.exec(
                    select(Reference).where(col(Reference.name_key).in_(keys[start:start + 500]))
                ).all())
        return found

    def add_images(
        self,
        name: str,
        images: Sequence[Path | str],
        *,
        labels: Sequence[str | None] = (),
        make_primary: bool = False,
    ) -> tuple[ReferenceInfo, list[AddedImage]]:
        """Add image files to an existing reference; ``make_primary`` makes the first new one
        its primary."""
        ref = self.get(name)
        if not images:
            raise InputError("give at least one image")
        if len(labels) > len(images):
            raise InputError(f"{len(labels)} labels given for {len(images)} images")
        label_list = [check_label(lbl) for lbl in labels] + [None] * (len(images) - len(labels))
        _refuse_duplicate_labels(label_list + [i.label for i in ref.images])
        staged = self._probe_files(images)
        blobs = self._store_staged(staged)
        try:
            with write_session(self.db) as session:
                lock_reference(session, ref.id)  # positions and the primary, one at a time
                position = _next_position(session, ref.id)
                asset_ids = self._asset_ids(session, staged, blobs)
                new_ids = []
                rows = zip(images, asset_ids, label_list, strict=True)
                for offset, (path, asset_id, label) in enumerate(rows):
                    row = ReferenceImage(
                        reference_id=ref.id,
                        asset_id=asset_id,
                        label=label,
                        position=position + offset,
                        source_file=str(Path(path).resolve()),
                        author=self.author,
                    )
                    session.add(row)
                    session.flush()
                    new_ids.append(row.id)
                if make_primary:
                    _set_primary(session, ref.id, new_ids[0])  # type: ignore[arg-type]
                _touch(session, ref.id)
        except BaseException:
            self._forget_files(blobs)
            raise
        info = self.get_by_id(ref.id)
        return info, _added(info, [item.probed for item in staged], new_ids)

    def add_generated_image(
        self,
        session: Session,
        *,
        reference_id: int,
        asset_id: int,
        label: str | None,
        make_primary: bool,
        source_output_id: int,
    ) -> int:
        """Within ``session``, attach a stored output to a reference (the lineage edge)."""
        lock_reference(session, reference_id)
        row = ReferenceImage(
            author=self.author,
            reference_id=reference_id,
            asset_id=asset_id,
            label=label,
            position=_next_position(session, reference_id),
            source_output_id=source_output_id,
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        if make_primary:
            _set_primary(session, reference_id, row.id)
        _touch(session, reference_id)
        return row.id

    def remove_image(self, name: str, selector: str) -> ReferenceInfo:
        """Remove one image (by label or ``#id``); the next image becomes primary if needed."""
        ref = self.get(name)
        image = _select_image(ref, selector)
        if len(ref.images) == 1:
            raise InputError(
                f"{ref.name} has only this image; a reference needs at least one",
                hint=f"remove the whole reference with `refstudio ref rm {ref.name}`",
            )
        with write_session(self.db) as session:
            lock_reference(session, ref.id)
            row = session.get(ReferenceImage, image.id)
            session.delete(row)
            session.flush()
            if image.is_primary:
                successor = next(i for i in ref.images if i.id != image.id)
                _set_primary(session, ref.id, successor.id)
            _touch(session, ref.id)
        return self.get_by_id(ref.id)

    def set_primary(self, name: str, selector: str) -> ReferenceInfo:
        """Make one image (by label or ``#id``) the one a bare ``@name`` binds."""
        ref = self.get(name)
        image = _select_image(ref, selector)
        with write_session(self.db) as session:
            lock_reference(session, ref.id)
            _set_primary(session, ref.id, image.id)
            _touch(session, ref.id)
        return self.get_by_id(ref.id)

    def rename(self, old: str, new: str) -> ReferenceInfo:
        ref = self.get(old)
        new = clean_name(new)
        other = self.find_row(new)
        if other is not None and other.id != ref.id:
            raise NameTakenError(f"a reference named {other.name!r} already exists")
        with write_session(self.db) as session:
            row = session.get(Reference, ref.id)
            assert row is not None
            row.name, row.name_key, row.updated_at = new, name_key(new), utcnow()
            session.add(row)
            try:
                # In a savepoint: only this one change can break the unique index on names,
                # so its IntegrityError is the name clash (another process took it meanwhile).
                with session.begin_nested():
                    session.flush()
            except IntegrityError:
                raise NameTakenError(f"a reference named {new!r} already exists") from None
        return self.get_by_id(ref.id)

    def remove(self, name: str) -> ReferenceInfo:
        """Delete a reference and its image rows. Stored media stay (other rows may share them)."""
        ref = self.get(name)
        with write_session(self.db) as session:
            row = session.get(Reference, ref.id)
            session.delete(row)
        return ref

    def update(
        self, name: str, *, kind: str | None = None, description: str | None = None
    ) -> ReferenceInfo:
        ref = self.get(name)
        if kind is not None:
            check_kind(kind)
        with write_session(self.db) as session:
            row = session.get(Reference, ref.id)
            assert row is not None
            if kind is not None:
                row.kind = kind
            if description is not None:
                row.description = description
            row.updated_at = utcnow()
            session.add(row)
        return self.get_by_id(ref.id)

    def tag(self, name: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> ReferenceInfo:
        ref = self.get(name)
        to_add = {check_tag(t) for t in add}
        to_remove = {check_tag(t) for t in remove}
        with write_session(self.db) as session:
            for tag in to_remove:
                row = session.get(ReferenceTag, (ref.id, tag))
                if row is not None:
                    session.delete(row)
            add_tags(session.connection(), ref.id, sorted(to_add - set(ref.tags)))
            _touch(session, ref.id)
        return self.get_by_id(ref.id)

    # -- queries ------------------------------------------------------------------------------

    def find_row(self, name: str) -> Reference | None:
        """The stored row of reference ``name`` (any case, ``@`` optional), or None."""
        key = name_key(name[1:] if name.startswith("@") else name)
        with read_session(self.db) as session:
            row: Reference | None = session.exec(
                select(Reference).where(Reference.name_key == key)
            ).first()
        return row

    def get(self, name: str) -> ReferenceInfo:
        """The reference called ``name`` (any case, ``@`` optional), or ReferenceNotFoundError."""
        row = self.find_row(name)
        if row is None:
            raise self.not_found(name)
        assert row.id is not None
        return self.get_by_id(row.id)

    def not_found(self, name: str) -> ReferenceNotFoundError:
        """The error for an unknown name, with a did-you-mean from the library's names."""
        bare = name[1:] if name.startswith("@") else name
        close = suggest(bare, self.all_names())
        hint = f"did you mean {', '.join('@' + c for c in close)}?" if close else (
            "see `refstudio ref list`"
        )
        return ReferenceNotFoundError(f"no reference named {bare!r}", hint=hint)

    def get_by_id(self, ref_id: int) -> ReferenceInfo:
        infos = self._load(ids=[ref_id])
        if not infos:
            raise ReferenceNotFoundError(f"no reference with id {ref_id}")
        return infos[0]

    def search(
        self,
        text: str = "",
        *,
        kind: str | None = None,
        tag: str | None = None,
        prefix: bool = False,
        offset: int = 0,
        limit: int = 60,
    ) -> tuple[list[ReferenceInfo], int]:
        """One page of references whose name, description or a tag contains ``text`` (any
        case), by name, and how many match in all. ``prefix``: names that start with ``text``.

        Paged in SQL, so a page of a 10,000-reference library loads 60 rows, not 10,000.
        """
        if kind is not None:
            check_kind(kind)
        needle = text.strip().lstrip("@").lower()
        with read_session(self.db) as session:
            query = select(Reference.id)
            if needle and prefix:
                query = query.where(col(Reference.name_key).startswith(needle, autoescape=True))
            elif needle:
                query = query.where(
                    col(Reference.name_key).contains(needle, autoescape=True)
                    | func.lower(Reference.description).contains(needle, autoescape=True)
                    | col(Reference.id).in_(
                        select(ReferenceTag.reference_id).where(
                            func.lower(ReferenceTag.tag).contains(needle, autoescape=True))
                    )
                )
            if kind is not None:
                query = query.where(Reference.kind == kind)
            if tag is not None:
                query = query.where(col(Reference.id).in_(
                    select(ReferenceTag.reference_id).where(ReferenceTag.tag == tag)))
            total = int(session.exec(
                select(func.count()).select_from(query.subquery())).one())
            ids = list(session.exec(
                query.order_by(Reference.name_key).offset(max(0, offset)).limit(max(0, limit))
            ).all())
        return (self._load(ids=ids) if ids else []), total  # type: ignore[arg-type]

    def asset_path(self, sha256: str) -> Path:
        """A local copy of the image with content hash ``sha256`` (64 hex digits), or
        ImageNotFoundError. Only hashes the library knows resolve: never a path from outside."""
        sha = sha256.lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ImageNotFoundError(f"no image {sha256[:80]!r}")
        with read_session(self.db) as session:
            key = session.exec(select(Asset.path).where(Asset.sha256 == sha)).first()
        if key is None:
            raise ImageNotFoundError(f"no image {sha[:12]}")
        return self.store.local_copy(key, sha)

    # Below this method, `list` in an annotation of this class would name the method: they
    # spell the type `builtins.list`.
    def list(
        self, *, kind: str | None = None, tag: str | None = None
    ) -> builtins.list[ReferenceInfo]:
        """All references, by name, optionally only one kind or one tag."""
        if kind is not None:
            check_kind(kind)
        return self._load(kind=kind, tag=tag)

    def all_names(self) -> builtins.list[str]:
        with read_session(self.db) as session:
            return list(session.exec(select(Reference.name)).all())

    def count(self) -> int:
        with read_session(self.db) as session:
            return int(session.exec(select(func.count()).select_from(Reference)).one())

    def _load(
        self,
        *,
        ids: builtins.list[int] | None = None,
        kind: str | None = None,
        tag: str | None = None,
    ) -> builtins.list[ReferenceInfo]:
        # Three queries whatever the library size: references, their tags, their images. Plain
        # column rows, not ORM objects: listing 10,000 references is dominated by object setup.
        with read_session(self.db) as session:
            # sqlmodel types select() for at most four columns.
            query = select(  # type: ignore[call-overload]
                Reference.id, Reference.name, Reference.kind, Reference.description,
                Reference.created_at, Reference.updated_at,
            ).order_by(Reference.name_key)
            if ids is not None:
                query = query.where(col(Reference.id).in_(ids))
            if kind is not None:
                query = query.where(Reference.kind == kind)
            if tag is not None:
                query = query.where(
                    col(Reference.id).in_(
                        select(ReferenceTag.reference_id).where(ReferenceTag.tag == tag)
                    )
                )
            refs = session.exec(query).all()
            if not refs:
                return []
            filtered = ids is not None or kind is not None or tag is not None
            wanted = [r[0] for r in refs] if filtered else None
            tag_query = select(ReferenceTag.reference_id, ReferenceTag.tag).order_by(
                ReferenceTag.tag
            )
            image_query = (
                select(  # type: ignore[call-overload]
                    ReferenceImage.reference_id, ReferenceImage.id, ReferenceImage.label,
                    ReferenceImage.is_primary, ReferenceImage.position,
                    ReferenceImage.source_file, ReferenceImage.source_output_id,
                    Asset.sha256, Asset.path, Asset.format, Asset.width, Asset.height,
                    Asset.bytes, Asset.quality_json,
                )
                .join(Asset, col(Asset.id) == ReferenceImage.asset_id)
                .order_by(col(ReferenceImage.is_primary).desc(), ReferenceImage.position)
            )
            if wanted is not None:
                tag_query = tag_query.where(col(ReferenceTag.reference_id).in_(wanted))
                image_query = image_query.where(col(ReferenceImage.reference_id).in_(wanted))
            tags: dict[int, list[str]] = {}
            for ref_id, tag_text in session.exec(tag_query).all():
                tags.setdefault(ref_id, []).append(tag_text)
            image_rows = session.exec(image_query).all()
        warnings_cache: dict[str, tuple[str, ...]] = {}
        images: dict[int, list[ImageInfo]] = {}
        for (ref_id, image_id, label, primary, position, source_file, source_output_id,
             sha, key, fmt, width, height, size, quality_json) in image_rows:
            warnings = warnings_cache.get(quality_json)
            if warnings is None:
                warnings = warnings_cache[quality_json] = tuple(json.loads(quality_json or "[]"))
            images.setdefault(ref_id, []).append(
                ImageInfo(
                    id=image_id, label=label, is_primary=primary, position=position,
                    sha256=sha, key=key, _store=self.store, format=fmt,
                    width=width, height=height, bytes=size, source_file=source_file,
                    source_output_id=source_output_id, warnings=warnings,
                )
            )
        return [
            ReferenceInfo(
                id=ref_id,
                name=name,
                kind=ref_kind,
                description=description,
                tags=tuple(tags.get(ref_id, ())),
                images=tuple(images.get(ref_id, ())),
                created_at=created_at,
                updated_at=updated_at,
            )
            for ref_id, name, ref_kind, description, created_at, updated_at in refs
        ]

    def check(self, name: str) -> builtins.list[tuple[ImageInfo, builtins.list[str]]]:
        """Re-run the quality check on each image of a reference (from the stored bytes)."""
        ref = self.get(name)
        results = []
        for image in ref.images:
            warnings: list[str] = []
            if self._quality_check is not None:
                data = self.store.read_bytes(image.key)
                warnings = _warning_texts(self._quality_check(open_image(data)))
            results.append((image, warnings))
        return results


def _warning_texts(found: Any) -> list[str]:
    if not found:
        return []
    return [getattr(w, "message", str(w)) for w in found]


def _added(
    info: ReferenceInfo, probed: list[ProbedImage], new_ids: list[int | None] | None = None
) -> list[AddedImage]:
    images = info.images if new_ids is None else [i for i in info.images if i.id in new_ids]
    by_position = sorted(images, key=lambda i: i.position)
    return [
        AddedImage(image, tuple(_warning_texts(p.inspection)))
        for image, p in zip(by_position, probed, strict=True)
    ]


def _refuse_duplicate_labels(labels: Sequence[str | None]) -> None:
    seen: set[str] = set()
    for label in labels:
        if label is None:
            continue
        if label in seen:
            raise InputError(f"label {label!r} is used twice; labels name one image each")
        seen.add(label)


def _select_image(ref: ReferenceInfo, selector: str) -> ImageInfo:
    """Find an image of ``ref`` by label, or by ``#id``."""
    for image in ref.images:
        if image.label == selector or f"#{image.id}" == selector or str(image.id) == selector:
            return image
    labels = [i.label or f"#{i.id}" for i in ref.images]
    raise ImageNotFoundError(
        f"{ref.name} has no image {selector!r}", hint=f"its images: {', '.join(labels)}"
    )


def lock_reference(session: Session, reference_id: int) -> None:
    """Hold one reference's row until the transaction ends: its images' positions and primary
    flag are read, then written, by one writer at a time (SQLite's write lock already does)."""
    session.exec(select(Reference.id).where(Reference.id == reference_id).with_for_update())


def _next_position(session: Session, reference_id: int) -> int:
    last = session.exec(
        select(func.max(ReferenceImage.position)).where(ReferenceImage.reference_id == reference_id)
    ).one()
    return 0 if last is None else int(last) + 1


def _set_primary(session: Session, reference_id: int, image_id: int) -> None:
    rows = session.exec(select(ReferenceImage).where(ReferenceImage.reference_id == reference_id))
    for row in rows.all():
        row.is_primary = row.id == image_id
        session.add(row)


def _touch(session: Session, reference_id: int) -> None:
    row = session.get(Reference, reference_id)
    if row is not None:
        row.updated_at = utcnow()
        session.add(row)


__all__ = [
    "AddedImage",
    "ImageInfo",
    "Library",
    "ReferenceInfo",
]


@dataclass(frozen=True)
class _Staged:
    """A checked image waiting to be stored: its probe (bytes dropped when ``source`` will be
    read again), the SHA-256 of the bytes to store, and the file they come from."""

    probed: ProbedImage
    sha256: str
    source: Path | None


@dataclass(frozen=True)
class _ReferencePlan:
    name: str
    key: str
    kind: str
    description: str
    tags: list[str]
    images: list[Path | str]
    labels: list[str | None]


def _plan_reference(
    name: str,
    images: Sequence[Path | str],
    *,
    kind: str = "character",
    description: str = "",
    tags: Iterable[str] = (),
    labels: Sequence[str | None] = (),
) -> _ReferencePlan:
    """Check one new reference's arguments (not its files) the way add_reference does."""
    name = clean_name(name)
    check_kind(kind)
    tag_list = sorted({check_tag(t) for t in tags})
    if isinstance(images, (str, Path)):
        raise InputError(f"images of {name!r} must be a list of files, not one path")
    if not images:
        raise InputError("a reference needs at least one image")
    if len(labels) > len(images):
        raise InputError(f"{len(labels)} labels given for {len(images)} images")
    label_list = [check_label(lbl) for lbl in labels] + [None] * (len(images) - len(labels))
    _refuse_duplicate_labels(label_list)
    return _ReferencePlan(name, name_key(name), kind, description, tag_list, list(images),
                          label_list)


def _read_again(path: Path, max_bytes: int) -> bytes:
    """A checked file's bytes once more, for storing (a change shows in their hash)."""
    try:
        with path.open("rb") as fh:
            return fh.read(max_bytes + 1)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror})") from exc
