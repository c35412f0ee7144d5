"""The library seen through the prompt language's :class:`~refstudio.prompts.ReferenceLookup`:
as it is now (:class:`LibraryLookup`), or as one generation bound it (:class:`RecordedLookup`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ImageNotFoundError
from ..prompts import RefImage, RefRecord
from .references import Library, ReferenceInfo


def to_record(info: ReferenceInfo) -> RefRecord:
    return RefRecord(
        name=info.name,
        kind=info.kind,
        description=info.description,
        tags=info.tags,
        images=tuple(
            RefImage(
                image_id=i.id,
                label=i.label,
                is_primary=i.is_primary,
                sha256=i.sha256,
                path=i.location,
                width=i.width,
                height=i.height,
                warnings=i.warnings,
            )
            for i in info.images
        ),
    )


class LibraryLookup:
    """Finds references by name with one indexed query each; remembers what it found."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self._found: dict[str, RefRecord | None] = {}
        self.reference_ids: dict[str, int] = {}

    def find(self, name: str) -> RefRecord | None:
        key = name.lower()
        if key not in self._found:
            row = self.library.find_row(name)
            if row is None or row.id is None:
                self._found[key] = None
            else:
                info = self.library.get_by_id(row.id)
                self.reference_ids[info.name.lower()] = info.id
                self._found[key] = to_record(info)
        return self._found[key]

    def all_names(self) -> list[str]:
        return self.library.all_names()


@dataclass(frozen=True)
class RecordedImage:
    """One image a generation was made from, as its row records it (``bindings_json``)."""

    name: str
    label: str | None
    sha256: str
    image_id: int | None = None
    reference_id: int | None = None


class RecordedLookup:
    """The library as it was for one generation: each reference it bound finds exactly the
    image it bound then, whatever was added, removed or made primary since.

    A mention of ``@mara`` or ``@mara:side`` binds the recorded image of ``mara`` (it is that
    reference's only image here, and carries its recorded label). Descriptions and tags (for
    templates) are today's; a reference the generation did not bind (a template that changed
    since) is looked up in today's library.
    """

    def __init__(self, library: Library, recorded: Sequence[RecordedImage]) -> None:
        self.live = LibraryLookup(library)
        self.reference_ids = self.live.reference_ids
        self._images = {r.name.lower(): r for r in recorded}
        self._assets = _assets_by_sha(library, [r.sha256 for r in recorded])

    def find(self, name: str) -> RefRecord | None:
        recorded = self._images.get(name.lower())
        if recorded is None:
            return self.live.find(name)
        live = self.live.find(name)
        if recorded.reference_id is not None:
            self.reference_ids[recorded.name.lower()] = recorded.reference_id
        asset = self._assets.get(recorded.sha256)
        if asset is None:
            raise ImageNotFoundError(
                f"the image @{recorded.name} was bound to ({recorded.sha256[:12]}) is no longer "
                "in the library", hint="nothing was sent")
        path, width, height = asset
        image = RefImage(image_id=recorded.image_id or 0, label=recorded.label, is_primary=True,
                         sha256=recorded.sha256, path=path, width=width, height=height)
        # Under every label it has now too: `@mara` and `@mara:front` on one image then bound
        # it under the first mention's label only, and both must find it again.
        labels = {i.label for i in (live.images if live else ()) if i.label is not None}
        aliases = tuple(RefImage(image.image_id, label, False, image.sha256, path, width, height)
                        for label in sorted(labels - {recorded.label}))
        return RefRecord(name=recorded.name, kind=live.kind if live else "character",
                         description=live.description if live else "",
                         tags=live.tags if live else (), images=(image, *aliases))

    def all_names(self) -> list[str]:
        return self.live.all_names()


def _assets_by_sha(library: Library, hashes: Sequence[str]) -> dict[str, tuple[str, int, int]]:
    """Where each stored image is, and its size, by sha256 (absent ones left out)."""
    from sqlmodel import col, select

    from ..storage.database import read_session
    from ..storage.tables import Asset

    if not hashes:
        return {}
    with read_session(library.db) as session:
        rows = session.exec(select(Asset.sha256, Asset.path, Asset.width, Asset.height)
                            .where(col(Asset.sha256).in_(list(hashes)))).all()
    return {sha: (library.store.location(path), w, h) for sha, path, w, h in rows}
