"""Moving a library's media to another store: ``refstudio storage copy --media-url URL``.

Every asset row's image is read from the current store, checked against its recorded SHA-256,
and put into the target (which skips keys it already holds, so a copy interrupted half-way is
finished by running it again). Nothing in the library changes: the rows name keys, and keys are
the same in every store. The database half (``--database-url``) belongs beside this, in the
same command: :func:`copy_library` runs :func:`copy_media` first, then the rows, so no row in
the target ever names a key its store lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import select

from ..errors import ConfigError, InputError, StorageError
from ..storage.database import Database, read_session
from ..storage.dbcopy import check_empty, copy_rows
from ..storage.dburl import display_url, parse_database_url, sqlite_path
from ..storage.mediaurl import open_media_store, parse_media_url
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


@dataclass(frozen=True)
class LibraryCopyReport:
    media: MediaCopyReport | None
    database: str | None  # the target, password masked
    rows: dict[str, int]  # rows copied per table
    switched: bool

    def to_dict(self) -> dict[str, object]:
        # The media report's keys stay at the top, as `storage copy --media-url --json` has
        # always printed them (null when no media were copied); the database's sit beside them.
        media: dict[str, object] = (self.media.to_dict() if self.media else
                                    dict.fromkeys(("source", "target", "images", "copied",
                                                   "bytes")))
        database = {"target": self.database, "rows": self.rows} if self.database else None
        return {**media, "database": database, "switched": self.switched}


def _copy_rows_into(studio: Studio, target: Database) -> dict[str, int]:
    """:func:`copy_rows`, making the folders a new SQLite target needs, and removing them
    again when the copy fails (the file itself is removed by copy_rows)."""
    path = sqlite_path(target.url)
    made: list[Path] = []
    if path is not None:
        missing = path.parent
        while not missing.exists():
            made.append(missing)
            missing = missing.parent
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return copy_rows(studio.db, target)
    except BaseException:
        for folder in made:  # deepest first; one that holds anything now is left alone
            try:
                folder.rmdir()
            except OSError:
                break
        raise


_PASSWORD_HINT = ("remove the password from the URL and give it in PGPASSWORD or ~/.pgpass "
                  "(libpq reads both)")


def copy_library(
    studio: Studio, *, database_url: str | None, media_url: str | None, switch: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> LibraryCopyReport:
    """Copy the library's images (``media_url``) and then its rows (``database_url``) into the
    targets; with ``switch``, point refstudio.toml at them. Every argument is checked, and the
    target database found empty, before anything is written anywhere."""
    if database_url is None and media_url is None:
        raise InputError("say where to copy: --database-url URL and/or --media-url URL")
    project = studio.project
    target: Database | None = None
    if media_url is not None:
        parse_media_url(media_url, source="--media-url")
    if database_url is not None:
        url = parse_database_url(database_url, root=project.root, source="--database-url",
                                 allow_password=True)
        if switch and url.password is not None:
            raise ConfigError("--switch would write this database URL into refstudio.toml, "
                              "which never holds a password", hint=_PASSWORD_HINT)
        if url.render_as_string(hide_password=False) == studio.db.url.render_as_string(
                hide_password=False):
            raise InputError(f"{display_url(url)} is the database this library already uses; "
                             "nothing to copy")
        target = Database(url, create_missing=url.get_backend_name() == "postgresql")
    try:
        if target is not None:
            check_empty(target)
        media = copy_media(studio, media_url, on_progress=on_progress) if media_url else None
        rows: dict[str, int] = {}
        if target is not None:
            rows = _copy_rows_into(studio, target)
    finally:
        if target is not None:
            target.dispose()
    if switch:
        from .configswitch import switch_config

        values = {k: v for k, v in (("database_url", database_url), ("media_url", media_url))
                  if v is not None}
        switch_config(project, values)
    return LibraryCopyReport(media, target.where if target is not None else None, rows, switch)
