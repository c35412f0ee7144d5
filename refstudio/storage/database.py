"""The one module that knows which database engine a library runs on: SQLite or PostgreSQL.

Everything else reaches the database through SQLModel sessions from :func:`read_session` and
:func:`write_session`; the few statements whose form differs by dialect (an insert that skips
an existing row, the budget lock) are built here.

SQLite details that matter for safety:
- WAL journal so readers never block the writer, ``synchronous=NORMAL`` (durable in WAL at
  checkpoint granularity, safe against corruption), foreign keys on, a 30 s busy timeout.
- Write transactions start with ``BEGIN IMMEDIATE``: they take the write lock up front, so two
  processes never both read-then-try-to-upgrade (which SQLite answers with an instant
  ``SQLITE_BUSY`` that the busy timeout cannot wait out).

PostgreSQL (psycopg 3) runs writers side by side at READ COMMITTED, so nothing may rely on
there being one writer at a time: checks-then-writes take an explicit lock (:func:`lock_budget`,
``SELECT … FOR UPDATE``) or are one conditional statement (compare-and-set ``UPDATE … WHERE``,
``INSERT … ON CONFLICT DO NOTHING``), and uniqueness is the database's unique indexes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, Table, event, text
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import QueuePool
from sqlmodel import Session, create_engine

from ..errors import ConfigError, DatabaseUnavailableError, NameTakenError, StorageError
from .dburl import display_url, is_sqlite, scrub, sqlite_path
from .migrations import apply_migrations

BUSY_TIMEOUT_MS = 30_000


#: Seconds to wait for a PostgreSQL server to answer before saying it cannot be reached.
CONNECT_TIMEOUT_S = 10


class Database:
    """A project's database: a read engine and a write engine over one connection pool."""

    def __init__(self, where: Path | URL, *, inspect_only: bool = False,
                 create_missing: bool = False) -> None:
        """``where``: a SQLite file, or a URL (see :mod:`refstudio.storage.dburl`).

        ``inspect_only``: for looking at a library that may be damaged (``refstudio doctor``):
        never creates the file, never switches its journal mode, and is never migrated.
        ``create_missing``: a PostgreSQL database that does not exist is created on
        :meth:`migrate` (one database per project, see :mod:`.dburl`).
        """
        self.create_missing = create_missing
        self.url: URL = where if isinstance(where, URL) else URL.create(
            "sqlite", database=str(where))
        self.path: Path | None = sqlite_path(self.url)
        self.dialect = "sqlite" if is_sqlite(self.url) else "postgresql"
        if self.path is not None:
            path = self.path
            if inspect_only:
                def connect() -> sqlite3.Connection:
                    uri = f"file:{quote(str(path))}?mode=rw"
                    return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                                           check_same_thread=False)

                self.engine = create_engine("sqlite://", creator=connect, poolclass=QueuePool)
            else:
                self.engine = create_engine(
                    self.url,
                    connect_args={"timeout": BUSY_TIMEOUT_MS / 1000,
                                  "check_same_thread": False},
                    poolclass=QueuePool,
                    pool_size=5,
                    max_overflow=10,
                )
            event.listen(self.engine, "connect", _on_inspect if inspect_only else _on_connect)
            event.listen(self.engine, "begin", _on_begin)
            self.write_engine: Engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        else:
            connect_args: dict[str, Any] = {"application_name": "refstudio"}
            if "connect_timeout" not in self.url.query:
                connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
            # pre_ping: a server restart or a dropped connection costs one reconnect, not an
            # error in the middle of a command.
            try:
                self.engine = create_engine(self.url, connect_args=connect_args, pool_size=5,
                                            max_overflow=10, pool_pre_ping=True)
            except ImportError:
                raise ConfigError(
                    "a PostgreSQL library needs the psycopg driver, which is not installed",
                    hint="pip install 'refstudio[postgres]'") from None
            self.write_engine = self.engine

    @property
    def where(self) -> str:
        """The library's location for messages: a file path, or the URL without its password."""
        return str(self.path) if self.path is not None else display_url(self.url)

    def migrate(self) -> list[str]:
        """Bring the schema up to date; safe when several processes open the library at once."""
        try:
            return self._migrate()
        except DatabaseUnavailableError as exc:
            if not (self.create_missing and exc.missing_database):
                raise
            self.create_database()
            return self._migrate()

    def create_database(self) -> bool:
        """CREATE DATABASE for this URL, through the server's ``postgres`` database. False when
        a process racing this one made it first."""
        try:
            self._admin("CREATE DATABASE")
        except SQLAlchemyError as exc:
            if "already exists" in self.reason(exc):
                return False
            raise StorageError(f"cannot create the database {self.where}: "
                               f"{_libpq_detail(self.reason(exc))}") from None
        return True

    def drop_database(self) -> None:
        """DROP DATABASE for this URL (after closing this object's connections). Only for a
        database this process created and nobody else uses yet: a copy that failed."""
        self.dispose()
        try:
            self._admin("DROP DATABASE IF EXISTS")
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot drop the database {self.where}: "
                               f"{_libpq_detail(self.reason(exc))}") from None

    def _admin(self, verb: str) -> None:
        """``verb`` (CREATE DATABASE, DROP DATABASE …) on this URL's database, run from the
        server's ``postgres`` database."""
        admin = create_engine(self.url.set(database="postgres"),
                              isolation_level="AUTOCOMMIT",
                              connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
        name = admin.dialect.identifier_preparer.quote(str(self.url.database))
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"{verb} {name}")
        finally:
            admin.dispose()

    def _migrate(self) -> list[str]:
        try:
            with self.write_engine.begin() as conn:
                if self.dialect == "postgresql":
                    # Several processes opening a new library at once: one creates, the others
                    # wait here and then find it made (DDL is transactional in PostgreSQL).
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                 {"key": MIGRATE_LOCK_KEY})
                return apply_migrations(conn)
        except OperationalError as exc:
            unavailable = self.unavailable(exc)
            if unavailable is not None:
                raise unavailable from None
            raise StorageError(f"cannot open the library at {self.where}: {self.reason(exc)}",
                               hint=_OPEN_HINT) from None
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot open the library at {self.where}: {self.reason(exc)}",
                               hint=_OPEN_HINT) from None

    def unavailable(self, exc: SQLAlchemyError) -> DatabaseUnavailableError | None:
        """The one-line error for a server that cannot be reached or refused us, else None."""
        if self.dialect != "postgresql" or not isinstance(exc, OperationalError):
            return None
        detail = _libpq_detail(self.reason(exc))
        where = display_url(self.url)
        lowered = detail.lower()
        if "database" in lowered and "does not exist" in lowered:
            missing = DatabaseUnavailableError(
                f"the database server has no database named {self.url.database!r} ({where})",
                hint=f"create it (createdb {self.url.database}) or fix database_url")
            missing.missing_database = True
            return missing
        if any(s in lowered for s in ("password", "authentication", "role", "permission denied",
                                      "no pg_hba.conf entry")):
            return DatabaseUnavailableError(
                f"the database server refused the login: {detail} ({where})",
                hint="check the user in database_url and the password in PGPASSWORD or "
                     "~/.pgpass")
        if not exc.connection_invalidated and "connection" not in lowered and (
                "resolve" not in lowered and "timeout" not in lowered):
            return None
        return DatabaseUnavailableError(
            f"cannot reach the database server: {detail} ({where})",
            hint="check that it is running and reachable; nothing was changed")

    def reason(self, exc: SQLAlchemyError) -> str:
        """The driver's words for ``exc``, with any password masked."""
        return scrub(_reason(exc), self.url)

    def integrity_check(self) -> str:
        if self.dialect != "sqlite":
            return "ok"  # PostgreSQL checks its own pages; there is no PRAGMA to run
        with self.engine.connect() as conn:
            return str(conn.exec_driver_sql("PRAGMA integrity_check").scalar())

    def dispose(self) -> None:
        self.engine.dispose()


_OPEN_HINT = ("`refstudio doctor` checks the project; a damaged library.db is restored from a "
              "backup")
#: Key of the PostgreSQL advisory lock that serialises schema migrations.
MIGRATE_LOCK_KEY = 0x7265_6673_6D69  # "refsmi"


def _libpq_detail(message: str) -> str:
    """libpq's reason in one line: 'connection failed: connection to server at "h", port 5432
    failed: FATAL:  role "x" does not exist' -> 'role "x" does not exist'."""
    first = message.strip().splitlines()[0] if message.strip() else message
    for marker in ("FATAL:", "failed:"):
        if marker in first:
            first = first.rsplit(marker, 1)[1]
            break
    return first.strip() or "connection failed"


def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module so _on_begin decides how to BEGIN.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _on_inspect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    dbapi_conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _on_begin(conn: Any) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


#: Key of the PostgreSQL advisory lock that serialises budget checks (any constant will do).
BUDGET_LOCK_KEY = 0x7265_6673_7475  # "refstu"


def lock_budget(session: Session) -> None:
    """Inside a :func:`write_session`: hold the project's budget until the transaction ends.

    Checking a budget and recording the work it allows must be one step, or two processes can
    both read the same spend, both pass, and together go over. Callers lock, sum the spend,
    insert, and commit in one write transaction. On SQLite the transaction's ``BEGIN IMMEDIATE``
    already holds the database's single write lock, so a second process waits at its own BEGIN
    and then sees the first one's rows; on PostgreSQL a transaction-scoped advisory lock does
    the same without blocking unrelated writes.
    """
    advisory_xact_lock(session, BUDGET_LOCK_KEY)


def advisory_xact_lock(session: Session, key: int) -> None:
    """Hold lock ``key`` until the transaction ends (PostgreSQL). On SQLite a write
    transaction's ``BEGIN IMMEDIATE`` already holds the one write lock: nothing to do."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return
    if dialect == "postgresql":
        session.connection().execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        return
    raise StorageError(f"no advisory lock for the {dialect} database")  # pragma: no cover


def insert_ignoring(table: Table, dialect: str, conflict: tuple[str, ...]) -> Any:
    """``INSERT … ON CONFLICT (conflict) DO NOTHING`` for ``table`` in ``dialect``: a row whose
    unique key exists already is skipped, atomically, whoever inserted it (both SQLite and
    PostgreSQL speak it; SQLAlchemy builds it per dialect)."""
    module = pg_dialect if dialect == "postgresql" else sqlite_dialect
    return module.insert(table).on_conflict_do_nothing(index_elements=list(conflict))


def dialect_of(session: Session) -> str:
    return session.get_bind().dialect.name


@contextmanager
def read_session(db: Database) -> Iterator[Session]:
    """A short session for queries."""
    try:
        with Session(db.engine, expire_on_commit=False) as session:
            yield session
    except OperationalError as exc:
        raise _operational_error(db, exc) from exc
    except SQLAlchemyError as exc:
        raise StorageError(f"database error: {db.reason(exc)}") from exc


@contextmanager
def write_session(db: Database) -> Iterator[Session]:
    """A short write transaction (``BEGIN IMMEDIATE``), committed on success, rolled back on error.

    Writers that can meet a taken name insert with :func:`insert_ignoring` and say which name
    clashed; a violation of the unique index on reference names that still gets here (a rename
    racing another process) becomes :class:`NameTakenError`, told apart by the index's name, not
    by the words of the message. Any other database failure becomes :class:`StorageError`.
    """
    try:
        with Session(db.write_engine, expire_on_commit=False) as session, session.begin():
            yield session
    except IntegrityError as exc:
        if violated_index(exc) == REFERENCE_NAME_INDEX:
            raise NameTakenError("that reference name is already taken") from exc
        raise StorageError(f"database constraint failed: {db.reason(exc)}") from exc
    except OperationalError as exc:
        raise _operational_error(db, exc) from exc
    except SQLAlchemyError as exc:
        raise StorageError(f"database error: {db.reason(exc)}") from exc


#: The unique index that keeps reference names unique ignoring case (see tables.Reference).
REFERENCE_NAME_INDEX = "ix_reference_name_key"


def violated_index(exc: IntegrityError) -> str | None:
    """The unique index an insert or update broke, where the driver names it (PostgreSQL's
    error diagnostics); None on SQLite, whose callers avoid the question: they insert with
    :func:`insert_ignoring`, or change one unique column inside a savepoint."""
    diag = getattr(exc.orig, "diag", None)
    return getattr(diag, "constraint_name", None) if diag is not None else None


#: What to do when the disk fills under a write: every state change is written before the next
#: step, so resume can finish what was sent without sending it again.
DISK_FULL_HINT = ("free some space, then run `refstudio resume`: work already sent is collected "
                  "(a paid image is safe at the provider), never sent again")


def _operational_error(db: Database, exc: OperationalError) -> StorageError:
    if "database or disk is full" in _reason(exc):
        return StorageError("the disk is full: the library database cannot be written",
                            hint=DISK_FULL_HINT)
    return db.unavailable(exc) or StorageError(f"database error: {db.reason(exc)}")


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig) if orig is not None else exc.__class__.__name__
