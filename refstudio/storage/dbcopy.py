"""Copying every row of a library into another database, ids preserved.

The target must be new or empty: one that already holds rows is refused before anything is
written, since merging two libraries would renumber ids that lineage, packs and scripts rely on.
The schema (from :mod:`.tables`, every migration recorded) and every row, parents before
children, go in in one transaction, so a copy that fails midway (a row the target refuses, a
server that goes away) leaves an existing target database as it was: DDL is transactional on
both PostgreSQL and SQLite. A database or file the copy itself created is removed again (and a
PostgreSQL database that cannot be dropped because its server is gone is named in the error).
"""

from __future__ import annotations

from sqlalchemy import Connection, Table, func, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import SQLModel

from ..errors import DatabaseUnavailableError, InputError, RefstudioError, StorageError
from . import tables  # noqa: F401 - registers the tables on SQLModel.metadata
from .database import MIGRATE_LOCK_KEY, Database
from .dburl import scrub
from .migrations import apply_migrations

#: Rows per INSERT: large enough to amortise round trips, small enough to bound memory.
BATCH = 1000


def library_tables() -> list[Table]:
    """Every library table, parents before children (foreign keys decide the order)."""
    return list(SQLModel.metadata.sorted_tables)


def check_empty(target: Database) -> None:
    """Refuse a target that already holds library rows (before anything is written)."""
    if _rows_in(target) > 0:
        raise InputError(f"{target.where} already holds a library with rows; nothing was "
                         "copied (copy into a new or empty database)")


def copy_rows(source: Database, target: Database) -> dict[str, int]:
    """Copy every row of ``source`` into ``target``; returns rows copied per table. On failure
    the target is as it was (see the module's doc)."""
    check_empty(target)
    made = _make_target(target)
    try:
        return _copy_all(source, target)
    except BaseException as exc:
        if made:
            _remove_made(target, exc)
        raise


def _copy_all(source: Database, target: Database) -> dict[str, int]:
    counts: dict[str, int] = {}
    try:
        # One snapshot of the source for every table (an engine may be writing meanwhile): a
        # SQLite read transaction is one already; PostgreSQL needs REPEATABLE READ for it.
        reading = (source.engine.execution_options(isolation_level="REPEATABLE READ")
                   if source.dialect == "postgresql" else source.engine)
        with reading.connect() as src, src.begin(), target.write_engine.begin() as dst:
            if target.dialect == "postgresql":
                # One copy, or one migration, at a time: a racing copy finds rows and stops.
                dst.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                            {"key": MIGRATE_LOCK_KEY})
            # The schema in the same transaction as the rows: a failed copy leaves no tables.
            apply_migrations(dst)
            if _count(dst) > 0:
                raise InputError(f"{target.where} already holds a library with rows; nothing "
                                 "was copied")
            for table in library_tables():
                counts[table.name] = _copy_table(src, dst, table)
            if target.dialect == "postgresql":
                _reset_sequences(dst)
    except DatabaseUnavailableError:
        raise
    except SQLAlchemyError as exc:
        unavailable = target.unavailable(exc) or source.unavailable(exc)
        if unavailable is not None:
            raise unavailable from None
        raise StorageError(f"copying the library into {target.where} failed; nothing was "
                           f"written there: {scrub(source.reason(exc), target.url)}") from None
    return counts


def _make_target(target: Database) -> bool:
    """Make sure the target can be connected to; True when this call created it (a PostgreSQL
    database, or a SQLite file about to be created by the first connection)."""
    if target.path is not None:
        return not target.path.exists()
    try:
        with target.engine.connect():
            return False
    except SQLAlchemyError as exc:
        unavailable = target.unavailable(exc)
        if unavailable is not None and unavailable.missing_database and target.create_missing:
            return target.create_database()
        if unavailable is not None:
            raise unavailable from None
        raise StorageError(f"cannot open {target.where}: {target.reason(exc)}") from None


def _remove_made(target: Database, failure: BaseException) -> None:
    """Remove the database or file a failed copy created; if that fails too, say so in the
    error being raised."""
    target.dispose()
    if target.path is not None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            target.path.with_name(target.path.name + suffix).unlink(missing_ok=True)
        return
    try:
        target.drop_database()
    except StorageError as exc:
        if isinstance(failure, RefstudioError):
            failure.message += (f"; the database {target.where} it created could not be "
                                f"removed ({exc.message}): drop it before copying again")
            failure.args = (failure.message,)


def _copy_table(src: Connection, dst: Connection, table: Table) -> int:
    order = list(table.primary_key.columns)
    result = src.execute(select(table).order_by(*order))
    copied = 0
    while batch := result.mappings().fetchmany(BATCH):
        dst.execute(table.insert(), [dict(row) for row in batch])
        copied += len(batch)
    return copied


def _reset_sequences(conn: Connection) -> None:
    """Point each id sequence past the copied ids, so new rows do not collide with them."""
    for table in library_tables():
        if "id" not in table.c or not table.c.id.primary_key:
            continue
        name = conn.dialect.identifier_preparer.quote(table.name)
        conn.execute(text(
            f"SELECT setval(pg_get_serial_sequence(:table, 'id'), "
            f"COALESCE((SELECT MAX(id) FROM {name}), 1), "
            f"(SELECT MAX(id) FROM {name}) IS NOT NULL)"), {"table": name})


def _count(conn: Connection) -> int:
    present = set(inspect(conn).get_table_names())
    total = 0
    for table in library_tables():
        if table.name in present:
            total += int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    return total


def _rows_in(db: Database) -> int:
    """Rows in the library tables ``db`` already has; 0 for a database or file not made yet."""
    if db.path is not None and not db.path.exists():
        return 0
    try:
        with db.engine.connect() as conn:
            return _count(conn)
    except SQLAlchemyError as exc:
        unavailable = db.unavailable(exc)
        if unavailable is not None and unavailable.missing_database and db.create_missing:
            return 0
        if unavailable is not None:
            raise unavailable from None
        raise StorageError(f"cannot read {db.where}: {db.reason(exc)}") from None
