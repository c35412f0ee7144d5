"""Project folders: finding one, making one, and reading its ``refstudio.toml``.

A project is a folder with ``refstudio.toml``, ``library.db``, ``media/``, ``templates/`` and
``workflows/``. The API key never lives here (see :mod:`refstudio.providers.config`).
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, ProjectExistsError, ProjectNotFoundError, StorageError
from ..storage.dburl import (
    ENV_DATABASE_URL,
    default_url,
    names_project,
    parse_database_url,
    sqlite_path,
)
from ..storage.fsutil import ProtectedArea, UnreadableFileError, read_regular_text
from ..storage.mediaurl import parse_media_url

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_FILE = "refstudio.toml"
DB_FILE = "library.db"
PROJECT_DIRS = ("media", "templates", "workflows")
ENV_PROJECT = "REFSTUDIO_PROJECT"
ENV_MEDIA_URL = "REFSTUDIO_MEDIA_URL"
#: Largest refstudio.toml read; the default one is 1.5 KB.
MAX_CONFIG_BYTES = 1_000_000

DEFAULT_CONFIG = """\
# refstudio project settings. The API key does not belong here: set WAVESPEED_API_KEY in the
# environment or run `refstudio config set-key`.
name = "{name}"

# Largest image file accepted into the library, in megabytes.
max_image_mb = 20

# Refuse any command whose estimated cost would take this project's total spend over this many
# US dollars (estimates from the price table). Remove the line for no budget.
# budget = 10.0

# Where the library's rows live: a SQLite file (the default, library.db here) or a PostgreSQL
# database a team shares. Never put a password here: libpq reads it from PGPASSWORD or
# ~/.pgpass. REFSTUDIO_DATABASE_URL, when set, wins over this line.
# database_url = "postgresql://me@db.example.com:5432/studio"

# Your name on what you generate, promote and add (default: your login name).
# author = "mara"

# Generations in flight at once. WaveSpeed's default account level runs 2 tasks at a time.
concurrency = 2

# Mean seconds between a task finishing and refstudio noticing it; larger means fewer status
# requests. Default: 2 % of the typical task time in this library, at least 0.18 s.
# poll_lag = 0.5

# The model used when a command names none (`refstudio models` lists them).
# default_model = "gen4"

# How models that bind images by position (nano-banana, seedream-v4, kontext-multi) are told
# which image is which: each reference's first mention becomes this ({{name}}, {{n}}, {{label}}).
# order_form = "{{name}} (image {{n}})"

# Where images are stored: "file:" is this project's media/ folder; "s3://bucket/prefix" an
# S3-compatible store (AWS S3, R2, MinIO), endpoint and credentials from the AWS environment
# variables or ~/.aws, never from this file. REFSTUDIO_MEDIA_URL overrides it.
# media_url = "file:"
# Local copies of images from an s3:// store are cached up to this many megabytes.
# media_cache_mb = 2000

[defaults]
aspect_ratio = "16:9"
resolution = "1080p"
# provider = "wavespeed"   # default: wavespeed when a key is set, else offline

# Estimated prices in US dollars per image. [prices.wavespeed] by resolution is Gen-4 Image's;
# other models have their own prices (`refstudio models`), overridden with a table named after
# the model, e.g. [prices.seedream-v4] default = 0.03. Estimates only: check your provider's
# price list (`refstudio account` asks WaveSpeed for a quote).
[prices.wavespeed]
"720p" = 0.05
"1080p" = 0.08

[prices.offline]
"720p" = 0.0
"1080p" = 0.0
"""


@dataclass(frozen=True)
class ProjectConfig:
    """Settings from ``refstudio.toml``; unknown keys are refused, naming file and key."""

    name: str = "refstudio"
    max_image_mb: float = 20.0
    budget: float | None = None
    aspect_ratio: str = "16:9"
    resolution: str = "1080p"
    #: Which of ``aspect_ratio`` and ``resolution`` ``[defaults]`` sets itself (the rest are
    #: refstudio's fallback): a model that cannot make a part written here says so.
    size_written: tuple[str, ...] = ()
    provider: str | None = None
    concurrency: int = 2
    poll_lag: float | None = None  # None: the engine's automatic lag
    media_url: str = "file:"
    media_cache_mb: float = 2000.0
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Model id or alias used when a command names none (None: the catalog's default, Gen-4).
    default_model: str | None = None
    #: How order-binding models are told which image is which (see refstudio.prompts.binding).
    order_form: str | None = None
    database_url: str | None = None  # as written in refstudio.toml (never with a password)
    lease_seconds: float = 60.0  # an engine's lease without a heartbeat (see engine/lease.py)
    author: str | None = None  # None: the OS user

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mb * 1_000_000)


@dataclass(frozen=True)
class Project:
    """A located project folder and its settings."""

    root: Path
    config: ProjectConfig

    @property
    def database_url(self) -> URL:
        """The library's database: ``$REFSTUDIO_DATABASE_URL``, else ``database_url`` in
        ``refstudio.toml``, else ``library.db`` in the project folder."""
        env = os.environ.get(ENV_DATABASE_URL)
        if env:
            return parse_database_url(env, root=self.root, source=ENV_DATABASE_URL,
                                      allow_password=True)
        if self.config.database_url is not None:
            return parse_database_url(self.config.database_url, root=self.root,
                                      source=str(self.root / CONFIG_FILE),
                                      allow_password=False)
        return default_url(self.root)

    @property
    def database_per_project(self) -> bool:
        """Whether the URL makes one database per project (created on first use)."""
        text = os.environ.get(ENV_DATABASE_URL) or self.config.database_url or ""
        return names_project(text)

    @property
    def db_path(self) -> Path | None:
        """The SQLite file of the library, or None when it lives on a database server."""
        return sqlite_path(self.database_url)

    @property
    def author(self) -> str:
        """Whose name goes on what this project's user does."""
        return self.config.author or os_user()

    @property
    def media_dir(self) -> Path:
        return self.root / "media"

    @property
    def cache_dir(self) -> Path:
        """Local copies of remote media, and outputs waiting to be stored (``.cache/``)."""
        return self.root / ".cache"

    @property
    def media_url(self) -> str:
        """``$REFSTUDIO_MEDIA_URL``, else ``media_url`` from refstudio.toml (``file:``)."""
        return os.environ.get(ENV_MEDIA_URL) or self.config.media_url

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def workflows_dir(self) -> Path:
        return self.root / "workflows"

    def protected_area(self) -> ProtectedArea:
        """What output a user names must never replace: the library and its SQLite journals,
        ``refstudio.toml``, anything in ``media/`` or the media cache ``.cache/``, and (for
        output folders) the project itself.
        """
        db = self.db_path or self.root / DB_FILE
        journals = tuple(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))
        return ProtectedArea(files=(db, *journals, self.root / CONFIG_FILE),
                             folders=(self.media_dir, self.cache_dir), roots=(self.root,))


def find_project_root(explicit: Path | str | None = None, cwd: Path | None = None) -> Path:
    """Locate the project: ``explicit`` path, then ``$REFSTUDIO_PROJECT``, then upward from cwd."""
    if explicit is not None:
        root = Path(explicit).expanduser().resolve()
        if not _has_config(root):
            raise ProjectNotFoundError(
                f"{root} is not a refstudio project (no {CONFIG_FILE})",
                hint=f"create one with: refstudio init {explicit}",
            )
        return root
    env = os.environ.get(ENV_PROJECT)
    if env:
        root = Path(env).expanduser().resolve()
        if not _has_config(root):
            raise ProjectNotFoundError(
                f"{ENV_PROJECT}={env} is not a refstudio project (no {CONFIG_FILE})",
                hint=f"create one with: refstudio init {env}",
            )
        return root
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if _has_config(folder):
            return folder
    raise ProjectNotFoundError(
        f"not inside a refstudio project ({here} and its parents have no {CONFIG_FILE})",
        hint="create one with `refstudio init DIR`, or pass --project DIR / set REFSTUDIO_PROJECT",
    )


def _has_config(folder: Path) -> bool:
    """Whether ``folder`` holds a ``refstudio.toml`` file; a folder (or a pipe, a device) by that
    name is a broken project, refused here rather than skipped or read (a pipe would hang)."""
    path = folder / CONFIG_FILE
    try:
        if path.is_file():
            return True
        if not path.exists():
            return False
    except OSError as exc:  # e.g. a folder we may not look into
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    kind = "a folder" if path.is_dir() else "not a regular file"
    raise ConfigError(f"{path} is {kind}; a project's {CONFIG_FILE} must be a file",
                      hint=f"move it away, then `refstudio init {folder}` makes a new one")


def write_new_project(root: Path, name: str | None = None) -> None:
    """Create the folder layout and a commented ``refstudio.toml``; refuse an existing project."""
    root = root.expanduser().resolve()
    if (root / CONFIG_FILE).exists():
        raise ProjectExistsError(f"{root} is already a refstudio project")
    try:
        root.mkdir(parents=True, exist_ok=True)
        for sub in PROJECT_DIRS:
            (root / sub).mkdir(exist_ok=True)
        project_name = (name or root.name or "refstudio").replace('"', "")
        (root / CONFIG_FILE).write_text(DEFAULT_CONFIG.format(name=project_name), "utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot create a project at {root}: {exc.strerror}") from exc


def load_config(root: Path) -> ProjectConfig:
    """Read and check ``refstudio.toml``."""
    path = root / CONFIG_FILE
    try:
        raw = tomllib.loads(read_regular_text(path, limit=MAX_CONFIG_BYTES))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except RecursionError:  # tomllib recurses: a value thousands of levels deep
        raise ConfigError(f"{path}: a value is nested too deeply") from None
    except UnreadableFileError as exc:
        hint = "save it as UTF-8" if "UTF-8" in exc.reason else None
        raise ConfigError(f"cannot read {exc}", hint=hint) from exc
    return parse_config(raw, path)


_TOP_KEYS = {"name", "max_image_mb", "budget", "concurrency", "poll_lag", "defaults", "prices",
             "default_model", "order_form", "media_url", "media_cache_mb",
             "database_url", "author", "lease_seconds"}
#: Below 50 ms a poll is mostly its own round trip; above a minute a task sits done unnoticed.
POLL_LAG_RANGE = (0.05, 60.0)
_DEFAULT_KEYS = {"aspect_ratio", "resolution", "provider"}


def parse_config(raw: dict[str, Any], path: Path) -> ProjectConfig:
    """Turn parsed TOML into :class:`ProjectConfig`, refusing unknown keys and wrong types."""
    _refuse_unknown(raw, _TOP_KEYS, path, "")
    defaults = raw.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: [defaults] must be a table")
    _refuse_unknown(defaults, _DEFAULT_KEYS, path, "defaults.")
    prices_raw = raw.get("prices", {})
    prices: dict[str, dict[str, float]] = {}
    if not isinstance(prices_raw, dict):
        raise ConfigError(f"{path}: [prices] must be a table of providers")
    for provider, table in prices_raw.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: prices.{provider} must be a table of resolution = price")
        prices[provider] = {
            str(k): _number(v, path, f"prices.{provider}.{k}") for k, v in table.items()
        }
    budget = raw.get("budget")
    poll_lag = raw.get("poll_lag")
    if poll_lag is not None:
        poll_lag = _number(poll_lag, path, "poll_lag")
        low, high = POLL_LAG_RANGE
        if not low <= poll_lag <= high:
            raise ConfigError(f"{path}: poll_lag must be between {low} and {high:.0f} seconds, "
                              f"not {poll_lag}")
    database_url = raw.get("database_url")
    if database_url is not None:
        # Checked now (a password in it is refused at once), used when the library opens.
        parse_database_url(_text(database_url, path, "database_url"), root=path.parent,
                           source=str(path), allow_password=False)
    author = raw.get("author")
    if author is not None and (not isinstance(author, str) or not author.strip()
                               or len(author) > 64 or not author.isprintable()):
        raise ConfigError(f"{path}: author must be a name of 1-64 printable characters")
    lease_seconds = _number(raw.get("lease_seconds", 60.0), path, "lease_seconds")
    if not 1.0 <= lease_seconds <= 3600.0:
        raise ConfigError(f"{path}: lease_seconds must be between 1 and 3600, not {lease_seconds}")
    concurrency = raw.get("concurrency", 2)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"{path}: concurrency must be a whole number of at least 1, "
                          f"not {concurrency!r}")
    media_url = _text(raw.get("media_url", "file:"), path, "media_url")
    parse_media_url(media_url, source=f"{path}: media_url")
    return ProjectConfig(
        media_url=media_url,
        media_cache_mb=_number(raw.get("media_cache_mb", 2000), path, "media_cache_mb"),
        name=_text(raw.get("name", "refstudio"), path, "name"),
        max_image_mb=_number(raw.get("max_image_mb", 20), path, "max_image_mb"),
        budget=None if budget is None else _number(budget, path, "budget"),
        aspect_ratio=_text(defaults.get("aspect_ratio", "16:9"), path, "defaults.aspect_ratio"),
        resolution=_text(defaults.get("resolution", "1080p"), path, "defaults.resolution"),
        size_written=tuple(k for k in ("aspect_ratio", "resolution") if k in defaults),
        provider=_text(defaults.get("provider", ""), path, "defaults.provider") or None,
        concurrency=concurrency,
        poll_lag=poll_lag,
        prices=prices,
        default_model=_text(raw.get("default_model", ""), path, "default_model") or None,
        order_form=_text(raw.get("order_form", ""), path, "order_form") or None,
        database_url=database_url,
        author=author.strip() if author else None,
        lease_seconds=lease_seconds,
    )


def os_user() -> str:
    """The login name of whoever runs this process (the default author)."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no USER/LOGNAME and no passwd entry (some containers)
        return f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _refuse_unknown(table: dict[str, Any], allowed: set[str], path: Path, prefix: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key {prefix}{unknown[0]}",
            hint=f"allowed keys: {', '.join(prefix + k for k in sorted(allowed))}",
        )


def _number(value: Any, path: Path, key: str) -> float:
    # TOML has nan and inf; a NaN budget or price compares false with every cost (fail open).
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value < 0):
        raise ConfigError(f"{path}: {key} must be a finite number, 0 or more, not {_shown(value)}")
    return float(value)


_URL_PASSWORD = re.compile(r"(://[^/:@\s]*:)[^@/\s]*@")


def _shown(value: Any) -> str:
    """``repr(value)`` for an error message, with any ``scheme://user:password@`` masked: a
    database URL put under the wrong key must not print its password."""
    return _URL_PASSWORD.sub(r"\1***@", repr(value))


def _text(value: Any, path: Path, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{path}: {key} must be a string in quotes, not {_shown(value)}")
    return value


def check_layout(project: Project) -> None:
    """Refuse, before anything is opened or written, a project whose storage is not where and
    what it must be (see :func:`check_media_dir`, :func:`check_db_path`); nothing is changed."""
    check_media_dir(project)
    check_db_path(project)


_DOCTOR = "`refstudio doctor` shows what the library expects"


def check_media_dir(project: Project) -> None:
    """:class:`StorageError` unless ``media/`` is a folder inside the project (a link to a
    folder elsewhere would let a shared project make refstudio read and write outside it)."""
    media = project.media_dir
    if not (media.is_symlink() or media.exists()):
        raise StorageError(f"the media folder {media} is missing",
                           hint=f"restore it from a backup (or make an empty one if the library "
                                f"never held an image); {_DOCTOR}")
    target = media.resolve()
    if not target.is_relative_to(project.root.resolve()):
        raise StorageError(
            f"the media folder {media} is a link to {target}, outside the project",
            hint="refstudio reads and writes images only inside the project folder: "
                 "move them into media/",
        )
    if not target.is_dir():
        raise StorageError(f"the media folder {media} is not a folder",
                           hint=f"move it away and restore media/ from a backup; {_DOCTOR}")


def make_media_dir(project: Project) -> None:
    """Make ``media/`` if there is nothing by that name (not even a broken link)."""
    media = project.media_dir
    if media.is_symlink() or media.exists():
        return
    try:
        media.mkdir()
    except OSError as exc:
        raise StorageError(f"cannot make the media folder {media}: {exc.strerror}") from exc


def check_db_path(project: Project) -> None:
    """:class:`StorageError` when ``library.db`` is a folder (SQLite's own words are obscure)."""
    db = project.db_path
    if db is not None and db.is_dir():
        raise StorageError(f"the library {db} is a folder, not a database",
                           hint=f"move it away (and restore library.db from a backup); {_DOCTOR}")


def open_project(explicit: Path | str | None = None) -> Project:
    """Find and load a project (see :func:`find_project_root`)."""
    root = find_project_root(explicit)
    return Project(root, load_config(root))
