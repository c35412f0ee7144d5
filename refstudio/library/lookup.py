"""The library seen through the prompt language's :class:`~refstudio.prompts.ReferenceLookup`."""

from __future__ import annotations

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
