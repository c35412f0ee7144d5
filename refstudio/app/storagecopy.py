"""Moving a library's media to another store: ``refstudio storage copy --media-url URL``.

Every asset row's image is read from the current store, checked against its recorded SHA-256,
and put into the target (which skips keys it already holds, so a copy interrupted half-way is
finished by running it again). Nothing in the library changes: the rows name keys, and keys are
the same in every store. The database half (``--database-url``) belongs beside this, in the
same command: :func:`copy_media` is the media step of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import select

from ..errors import StorageError
from ..storage.database import read_session
from ..storage.mediaurl import open_media_store
from ..storage.tables import Asset

if TYPE_CHECKING:
    from .studio import Studio


@dataclass(frozen=True)
class MediaCopyReport:
    source: str
    target: str
    images: int  # asset rows copied or found in place
    copied: int  # newly written to the target
    bytes: int  # bytes newly written

    def to_dict(self) -> dict[str, object]:
        return {"source": self.source, "target": self.target, "images": self.images,
                "copied": self.copied, "bytes": self.bytes}


def copy_media(
    studio: Studio, media_url: str, *, on_progress: Callable[[int, int], None] | None = None
) -> MediaCopyReport:
    """Copy every image of ``studio``'s library into the store ``media_url`` names."""
    project = studio.project
    target = open_media_store(media_url, root=project.root, media_dir=project.media_dir,
                              cache_dir=project.cache_dir)
    try:
        if target.url == studio.store.url:
            raise StorageError(f"{media_url} is the store this library already uses; "
                               "nothing to copy")
        if target.is_local:  # a new folder for the copy is made; the project's own is not
            Path(target.url.removeprefix("file:")).mkdir(parents=True, exist_ok=True)
        target.check_writable()
        with read_session(studio.db) as session:
            assets = session.exec(select(Asset.sha256, Asset.path)).all()
        copied = written = 0
        for done, (sha, key) in enumerate(sorted(assets, key=lambda a: a[1]), start=1):
            data = studio.store.read_verified(key, sha)  # a damaged original is never copied
            ext = key.rsplit(".", 1)[-1]
            blob = target.put_bytes(data, extension=ext)
            if blob.key != key:  # a row whose key is not its content's name
                raise StorageError(f"asset {key} is stored under a name that is not its hash; "
                                   "run `refstudio doctor`")
            if blob.created:
                copied += 1
                written += len(data)
            if on_progress is not None:
                on_progress(done, len(assets))
        return MediaCopyReport(studio.store.url, target.url, len(assets), copied, written)
    finally:
        target.close()
