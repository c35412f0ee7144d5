"""Which database a library lives in: ``database_url`` parsed, checked and masked.

``sqlite:///library.db`` (the default, relative to the project folder) or
``postgresql://user@host:5432/dbname``. PostgreSQL URLs run on the psycopg 3 driver whatever
driver they name (``postgresql://``, ``postgres://`` or ``postgresql+psycopg://``).

Passwords: a URL in ``refstudio.toml`` may name a user but never a password (the file is shared
and committed); libpq reads the password from ``PGPASSWORD`` or ``~/.pgpass`` itself. A URL in
the ``REFSTUDIO_DATABASE_URL`` environment variable may carry one (it is already environment).
Either way a URL is only ever shown through :func:`display_url`, with the password masked.

One URL for many projects: ``{project}`` in a PostgreSQL URL's database name stands for the
project folder (its name and a short hash of its path), e.g.
``postgresql://me@db/rs_{project}``; such a database is created on first use when missing (the
user needs the CREATEDB right). The tests run every project on its own database this way.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ..errors import ConfigError

ENV_DATABASE_URL = "REFSTUDIO_DATABASE_URL"
DEFAULT_SQLITE_FILE = "library.db"
_POSTGRES_NAMES = ("postgresql", "postgres", "postgresql+psycopg")


def default_url(root: Path) -> URL:
    """The library of a project folder that names no database: its ``library.db``."""
    return URL.create("sqlite", database=str(root / DEFAULT_SQLITE_FILE))


PROJECT_PLACEHOLDER = "{project}"


def project_slug(root: Path) -> str:
    """A database-name-safe identifier of a project folder (at most 30 characters)."""
    import hashlib
    import re

    name = re.sub(r"[^a-z0-9]+", "_", root.name.lower()).strip("_")[:20] or "project"
    return f"{name}_{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"


def parse_database_url(text: str, *, root: Path, source: str, allow_password: bool) -> URL:
    """``text`` as a URL the engine can open, or :class:`ConfigError` naming ``source`` (where
    it was written) without repeating the URL, which might hold a password.

    A relative SQLite path is relative to the project folder ``root``.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{source}: database_url must be a non-empty string")
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    try:
        url = make_url(text.strip())
    except (ArgumentError, ValueError):
        raise ConfigError(f"{source}: database_url is not a URL (want sqlite:///FILE or "
                          "postgresql://USER@HOST:PORT/DATABASE)") from None
    if url.drivername == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ConfigError(f"{source}: a sqlite database_url must name a file "
                              "(sqlite:///library.db)")
        path = Path(url.database).expanduser()
        return url.set(database=str(path if path.is_absolute() else root / path))
    if url.drivername in _POSTGRES_NAMES:
        if url.password is not None and not allow_password:
            raise ConfigError(
                f"{source}: database_url must not hold a password",
                hint="remove it from the URL; put it in PGPASSWORD or ~/.pgpass (libpq reads "
                     f"both), or give the whole URL in {ENV_DATABASE_URL}",
            )
        if not url.database:
            raise ConfigError(f"{source}: a postgresql database_url must name a database "
                              "(postgresql://USER@HOST:PORT/DATABASE)")
        database = url.database.replace(PROJECT_PLACEHOLDER, project_slug(root))
        return url.set(drivername="postgresql+psycopg", database=database)
    raise ConfigError(f"{source}: database_url scheme {scheme or url.drivername!r} is not "
                      "supported; use sqlite:///FILE or postgresql://USER@HOST/DATABASE")


def names_project(text: str) -> bool:
    """Whether a URL as written makes one database per project (see the module notes)."""
    return PROJECT_PLACEHOLDER in text


def display_url(url: URL) -> str:
    """The URL for messages and ``config`` output: the password masked, the driver hidden."""
    shown = url.set(drivername="postgresql") if url.drivername.startswith("postgresql") else url
    return shown.render_as_string(hide_password=True)


def scrub(text: str, url: URL) -> str:
    """``text`` (a driver's message) with the URL's password, if any, masked."""
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL, else None."""
    return Path(url.database) if is_sqlite(url) and url.database else None


__all__ = ["ENV_DATABASE_URL", "default_url", "display_url", "is_sqlite", "parse_database_url",
           "scrub", "sqlite_path"]
