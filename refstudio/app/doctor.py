"""``refstudio doctor``: check that a project's library and its media folder agree.

The checks only read. They never open the library the normal way (which would create a missing
``library.db`` or upgrade an old one), so a damaged project is looked at exactly as it is:

- the layout: ``media/`` is a folder inside the project, ``library.db`` is not a folder;
- the database: it opens, passes SQLite's integrity check, and its schema is one this version
  knows (not newer);
- every asset row: its file exists under ``media/`` and its bytes match the recorded SHA-256;
- files in ``media/`` that no asset row names (orphans: e.g. left by a deleted library.db);
- leftover temporary files in ``media/.tmp``;
- generations still in flight (``pending``/``submitting``/``submitted``: ``refstudio resume``)
  or of ``unknown`` fate.

``fix=True`` makes only repairs that lose nothing: it removes temporary files no running
command can still be writing (older than :data:`STALE_TEMP_SECONDS`), and it adopts orphan
images (valid images stored under their own hash) as images of a new reference ``@recovered``,
so they can be seen, used and sorted again (``refstudio ref show recovered``). A missing
library.db is created for that. It never deletes an image, never edits a row it did not make,
and touches nothing while the database is damaged or newer than this version.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..errors import RefstudioError, StorageError
from ..storage.database import Database
from ..storage.media import TMP_DIR, MediaStore, blob_key, media_files
from ..storage.mediaurl import open_media_store, parse_media_url
from ..storage.migrations import MIGRATIONS
from .project import Project, check_db_path, check_media_dir, find_project_root, load_config

#: A temporary file untouched for this long belongs to no running command (a download writes
#: every few milliseconds; the longest timeouts are a few minutes).
STALE_TEMP_SECONDS = 15 * 60
RECOVERED_NAME = "recovered"
_EXTENSIONS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}


@dataclass
class Finding:
    """One thing doctor found. ``problem``s make ``refstudio doctor`` exit 13; ``notice``s
    are worth knowing but break nothing."""

    kind: str
    severity: str  # "problem" or "notice"
    message: str
    path: str | None = None
    fixed: bool = False


@dataclass
class DoctorReport:
    project: str
    database: str  # "ok", "missing", "damaged", "newer", "not-refstudio"
    schema: list[str] = field(default_factory=list)  # migrations recorded in the database
    assets_checked: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "problem" and not f.fixed]

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, severity: str, message: str, path: Path | str | None = None) -> None:
        self.findings.append(Finding(kind, severity, message, None if path is None else str(path)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "ok": self.ok,
            "database": self.database,
            "schema": self.schema,
            "schema_known": [m.name for m in MIGRATIONS],
            "assets_checked": self.assets_checked,
            "findings": [asdict(f) for f in self.findings],
        }


def run_doctor(explicit: Path | str | None = None, *, fix: bool = False) -> DoctorReport:
    """Check the project found from ``explicit`` (as every command finds it); with ``fix``,
    make the safe repairs described in the module docstring. Returns what was found."""
    root = find_project_root(explicit)
    project = Project(root, load_config(root))
    report = DoctorReport(project=str(root), database="ok")
    media_ok = _check_layout(project, report)
    known_paths = _check_database(project, report, media_ok)
    if media_ok:
        _check_media(project, report, known_paths)
    if fix:
        _fix(project, report, media_ok)
    return report


# -- checks --------------------------------------------------------------------------------------


def _check_layout(project: Project, report: DoctorReport) -> bool:
    """Layout problems; returns whether ``media/`` can be looked into."""
    media_ok = True
    try:
        check_media_dir(project)
    except StorageError as exc:
        report.add("layout", "problem", exc.message, project.media_dir)
        media_ok = False
    try:
        check_db_path(project)
    except StorageError as exc:
        report.add("layout", "problem", exc.message, project.db_path)
        report.database = "damaged"
    return media_ok


def _check_database(project: Project, report: DoctorReport, media_ok: bool) -> set[str] | None:
    """Database checks; returns the media paths the asset rows name, or None if unreadable."""
    path = project.db_path
    if report.database == "damaged":
        return None
    if not path.exists():
        report.database = "missing"
        report.add("database", "problem",
                   f"{path.name} is missing: the next command starts a new, empty library", path)
        return set()
    db = Database(path, inspect_only=True)
    try:
        with db.engine.connect() as conn:
            verdict = str(conn.exec_driver_sql("PRAGMA integrity_check").scalar())
            if verdict != "ok":
                report.database = "damaged"
                report.add("database", "problem",
                           f"{path.name} is damaged ({verdict.splitlines()[0]}): restore it from "
                           "a backup", path)
                return None
            tables = {r[0] for r in conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "_migrations" not in tables:
                if tables:
                    report.database = "not-refstudio"
                    report.add("schema", "problem",
                               f"{path.name} is an SQLite database but not a refstudio library",
                               path)
                    return None
                report.add("schema", "notice", f"{path.name} is empty: the next command sets "
                           "it up", path)
                return set()
            report.schema = [r[0] for r in conn.exec_driver_sql(
                "SELECT name FROM _migrations ORDER BY rowid")]
            known = [m.name for m in MIGRATIONS]
            newer = [name for name in report.schema if name not in known]
            if newer:
                report.database = "newer"
                report.add("schema", "problem",
                           f"{path.name} was written by a newer refstudio (migrations "
                           f"{', '.join(newer)}): upgrade refstudio to use it", path)
                return None
            missing = [name for name in known if name not in report.schema]
            if missing:
                report.add("schema", "notice",
                           f"{path.name} has an older schema: the next command upgrades it "
                           f"({', '.join(missing)})", path)
            paths = _check_assets(conn, project, report, media_ok) if "asset" in tables else set()
            if "generation" in tables:
                _check_generations(conn, report)
            return paths
    except SQLAlchemyError as exc:
        report.database = "damaged"
        reason = getattr(exc, "orig", None) or exc
        report.add("database", "problem",
                   f"cannot read {path.name} ({reason}): restore it from a backup", path)
        return None
    finally:
        db.dispose()


def _remote_store(project: Project) -> MediaStore | None:
    """The project's media store when it is not a local folder (``s3://``), else None."""
    if parse_media_url(project.media_url).scheme == "file":
        return None
    return open_media_store(project.media_url, root=project.root, media_dir=project.media_dir,
                            cache_dir=project.cache_dir)


def _check_assets(conn: Any, project: Project, report: DoctorReport, media_ok: bool) -> set[str]:
    paths: set[str] = set()
    media = project.media_dir
    remote = _remote_store(project)
    for asset_id, sha256, rel in conn.execute(text("SELECT id, sha256, path FROM asset")):
        report.assets_checked += 1
        key = PurePosixPath(str(rel))
        if key.is_absolute() or ".." in key.parts or not key.parts:
            report.add("asset", "problem",
                       f"asset #{asset_id} names {rel!r}, a path outside media/", str(rel))
            continue
        paths.add(key.as_posix())
        if remote is not None:
            # A remote store: each object is there (a HEAD each); a hash check would download
            # the whole library, and the store's PUTs are whole or absent.
            try:
                if remote.size(key.as_posix()) is None:
                    report.add("missing-file", "problem", f"asset #{asset_id}: its object "
                               f"{remote.location(key.as_posix())} is missing",
                               remote.location(key.as_posix()))
            except StorageError as exc:
                report.add("media", "problem", exc.message, remote.url)
                remote = None
                media_ok = False
            continue
        if not media_ok:
            continue
        file = media / key
        try:
            digest = _sha256_of(file)
        except FileNotFoundError:
            report.add("missing-file", "problem",
                       f"asset #{asset_id}: its file {file} is missing", file)
            continue
        except OSError as exc:
            report.add("missing-file", "problem",
                       f"asset #{asset_id}: cannot read {file} ({exc.strerror})", file)
            continue
        if digest != sha256:
            report.add("corrupt-file", "problem",
                       f"asset #{asset_id}: the bytes of {file} no longer match their hash "
                       "(changed or damaged)", file)
    return paths


def _check_generations(conn: Any, report: DoctorReport) -> None:
    rows = conn.execute(text("SELECT id, status FROM generation WHERE status IN "
                             "('pending', 'submitting', 'submitted', 'unknown') ORDER BY id"))
    for gen_id, status in rows:
        if status == "unknown":
            message = (f"generation #{gen_id} has an unknown fate (it may have been accepted "
                       f"and billed): see `refstudio show {gen_id}`")
        else:
            message = (f"generation #{gen_id} is {status}: unless a refstudio command is "
                       "running now, `refstudio resume` finishes it")
        report.add("generation", "notice", message)


def _check_media(project: Project, report: DoctorReport, known: set[str] | None) -> None:
    remote = _remote_store(project)
    if remote is not None:
        if known is not None:
            try:
                for key in sorted(set(remote.keys()) - known):
                    report.add("orphan-object", "notice", f"{remote.location(key)} is in the "
                               "media store but not in the library", remote.location(key))
            except StorageError as exc:
                report.add("media", "problem", exc.message, remote.url)
        remote.close()
        return
    media = project.media_dir
    if known is not None:
        for file in media_files(media):
            if file.relative_to(media).as_posix() not in known:
                report.add("orphan-file", "notice",
                           f"{file} is in media/ but not in the library", file)
    tmp = media / TMP_DIR
    if tmp.is_dir():
        for file in sorted(tmp.iterdir()):
            report.add("temp-file", "notice", f"{file} is a leftover temporary file", file)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# -- repairs -------------------------------------------------------------------------------------


def _fix(project: Project, report: DoctorReport, media_ok: bool) -> None:
    if not media_ok:
        return
    now = time.time()
    for finding in report.findings:
        if finding.kind != "temp-file" or finding.path is None:
            continue
        path = Path(finding.path)
        try:
            if path.is_file() and now - path.stat().st_mtime >= STALE_TEMP_SECONDS:
                path.unlink()
                finding.fixed = True
        except OSError:
            continue  # left as found; the finding says so
    if report.database not in ("ok", "missing"):
        return  # never write into a damaged or newer library
    orphans = [f for f in report.findings if f.kind == "orphan-file" and f.path]
    if report.database == "missing" or orphans:
        from .studio import Studio

        with Studio(project) as studio:  # creates a missing library.db
            for finding in report.findings:
                if finding.kind == "database":
                    finding.fixed = True
                    finding.message = f"{project.db_path.name} was missing: made a new, empty one"
            if orphans:
                _adopt(studio, report, orphans)


def _adopt(studio: Any, report: DoctorReport, orphans: list[Finding]) -> None:
    """Make orphan images (stored under their own hash) images of a new reference."""
    adoptable: list[tuple[Finding, Path, str]] = []
    media = studio.project.media_dir
    for finding in orphans:
        assert finding.path is not None
        path = Path(finding.path)
        ext = path.suffix.lstrip(".").lower()
        if ext not in _EXTENSIONS:
            continue
        try:
            digest = _sha256_of(path)
        except OSError:
            continue
        if path.relative_to(media).as_posix() != blob_key(digest, ext):
            continue  # not a file refstudio stored: not ours to adopt
        adoptable.append((finding, path, digest))
    if not adoptable:
        return
    taken = {r.name.lower() for r in studio.references()}
    name = next(n for n in (RECOVERED_NAME, *(f"{RECOVERED_NAME}{i}" for i in range(2, 999)))
                if n not in taken)
    usable: list[tuple[Finding, Path, str]] = []
    for finding, path, digest in adoptable:
        try:
            studio.library.probe_file(path)
        except RefstudioError as exc:
            finding.message += f" (not adopted: {exc.message})"
            continue
        usable.append((finding, path, digest))
    if not usable:
        return
    studio.add_reference(
        name, [p for _, p, _ in usable], kind="other",
        description="images found in media/ that the library did not know (refstudio doctor)",
        labels=[digest[:12] for _, _, digest in usable],
    )
    for finding, path, _ in usable:
        finding.fixed = True
        finding.message = f"{path} was not in the library: adopted as an image of @{name}"
