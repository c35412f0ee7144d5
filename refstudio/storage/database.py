"""The one module that knows the database is SQLite: engine, pragmas, transactions.

Everything else reaches the database through SQLModel sessions from :func:`read_session` and
:func:`write_session`, so the same code can later run on PostgreSQL by changing only this file.

SQLite details that matter for safety:
- WAL journal so readers never block the writer, ``synchronous=NORMAL`` (durable in WAL at
  checkpoint granularity, safe against corruption), foreign keys on, a 30 s busy timeout.
- Write transactions start with ``BEGIN IMMEDIATE``: they take the write lock up front, so two
  processes never both read-then-try-to-upgrade (which SQLite answers with an instant
  ``SQLITE_BUSY`` that the busy timeout cannot wait out).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, event, text
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import QueuePool
from sqlmodel import Session, create_engine

from ..errors import NameTakenError, StorageError
from .migrations import apply_migrations

BUSY_TIMEOUT_MS = 30_000


class Database:
    """A project's database: a read engine and a write engine over one connection pool."""

    def __init__(self, path: Path, *, inspect_only: bool = False) -> None:
        """``inspect_only``: for looking at a library that may be damaged (``refstudio doctor``):
        never creates the file, never switches its journal mode, and is never migrated."""
        self.path = path
        if inspect_only:
            def connect() -> sqlite3.Connection:
                uri = f"file:{quote(str(path))}?mode=rw"
                return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                                       check_same_thread=False)

            self.engine = create_engine("sqlite://", creator=connect, poolclass=QueuePool)
        else:
            self.engine = create_engine(
                f"sqlite:///{path}",
                connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
                poolclass=QueuePool,
                pool_size=5,
                max_overflow=10,
            )
        event.listen(self.engine, "connect", _on_inspect if inspect_only else _on_connect)
        event.listen(self.engine, "begin", _on_begin)
        self.write_engine: Engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")

    def migrate(self) -> list[str]:
        """Bring the schema up to date; safe when several processes open the library at once."""
        try:
            with self.write_engine.begin() as conn:
                return apply_migrations(conn)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot open the library at {self.path}: {_reason(exc)}",
                               hint="`refstudio doctor` checks the project; a damaged "
                                    "library.db is restored from a backup") from exc

    def integrity_check(self) -> str:
        with self.engine.connect() as conn:
            return str(conn.exec_driver_sql("PRAGMA integrity_check").scalar())

    def dispose(self) -> None:
        self.engine.dispose()


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
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return
    if dialect == "postgresql":  # pragma: no cover - no PostgreSQL backend yet
        session.connection().execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                     {"key": BUDGET_LOCK_KEY})
        return
    raise StorageError(f"no budget lock for the {dialect} database")  # pragma: no cover


@contextmanager
def read_session(db: Database) -> Iterator[Session]:
    """A short session for queries."""
    try:
        with Session(db.engine, expire_on_commit=False) as session:
            yield session
    except SQLAlchemyError as exc:
        raise StorageError(f"database error: {_reason(exc)}") from exc


@contextmanager
def write_session(db: Database) -> Iterator[Session]:
    """A short write transaction (``BEGIN IMMEDIATE``), committed on success, rolled back on error.

    A unique-constraint violation on a reference name becomes :class:`NameTakenError`; any other
    database failure becomes :class:`StorageError`.
    """
    try:
        with Session(db.write_engine, expire_on_commit=False) as session, session.begin():
            yield session
    except IntegrityError as exc:
        if "reference.name_key" in str(exc.orig):
            raise NameTakenError("that reference name is already taken") from exc
        raise StorageError(f"database constraint failed: {_reason(exc)}") from exc
    except OperationalError as exc:
        raise _operational_error(exc) from exc
    except SQLAlchemyError as exc:
        raise StorageError(f"database error: {_reason(exc)}") from exc


#: What to do when the disk fills under a write: every state change is written before the next
#: step, so resume can finish what was sent without sending it again.
DISK_FULL_HINT = ("free some space, then run `refstudio resume`: work already sent is collected "
                  "(a paid image is safe at the provider), never sent again")


def _operational_error(exc: OperationalError) -> StorageError:
    if "database or disk is full" in _reason(exc):
        return StorageError("the disk is full: the library database cannot be written",
                            hint=DISK_FULL_HINT)
    return StorageError(f"database error: {_reason(exc)}")


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig) if orig is not None else exc.__class__.__name__
