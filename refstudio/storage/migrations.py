"""Ordered, named schema migrations, each applied once and recorded in ``_migrations``.

The schema's one source of truth is the SQLModel metadata in :mod:`refstudio.storage.tables`.
A new library, SQLite or PostgreSQL, is created from it in one step and every migration is
recorded as applied. A library written by an older release is brought forward by the
migrations it lacks:

- ``m001``–``m003`` are plain SQLite SQL, frozen as shipped: only SQLite libraries can be that
  old (PostgreSQL arrived with ``m004``), so they never run anywhere else;
- from ``m004`` on, a migration is a function over a connection that builds its DDL with
  SQLAlchemy constructs (:func:`add_column`, ``Table.create``), so it runs on both databases.

Why not alembic: it would bring a second version table, an ``env.py`` and a script directory
for what is here a short list of additive steps, and libraries in the field already carry this
ledger. Add a migration at the end of :data:`MIGRATIONS`, change ``tables.py`` to match, and
``tests/test_migrations.py`` proves both roads end at the same schema on both databases.
Never edit an applied migration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, inspect, text
from sqlalchemy.schema import CreateColumn

from ..errors import StorageError


@dataclass(frozen=True)
class Migration:
    name: str
    #: SQLite-only SQL of the releases before PostgreSQL (m001-m003); empty afterwards.
    statements: tuple[str, ...] = ()
    #: A dialect-neutral step (m004 on).
    run: Callable[[Connection], None] | None = None

    def apply(self, conn: Connection) -> None:
        if self.statements and conn.dialect.name != "sqlite":
            raise StorageError(f"migration {self.name} exists only for SQLite libraries",
                               hint="a PostgreSQL library is created whole; this one is damaged")
        for statement in self.statements:
            conn.exec_driver_sql(statement)
        if self.run is not None:
            self.run(conn)


M001_LIBRARY = Migration(
    "m001_library",
    (
        """CREATE TABLE asset (
            id INTEGER PRIMARY KEY,
            sha256 VARCHAR NOT NULL,
            path VARCHAR NOT NULL,
            format VARCHAR NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            quality_json VARCHAR NOT NULL DEFAULT '[]',
            created_at DATETIME NOT NULL
        )""",
        "CREATE UNIQUE INDEX ix_asset_sha256 ON asset (sha256)",
        """CREATE TABLE reference (
            id INTEGER PRIMARY KEY,
            name VARCHAR NOT NULL,
            name_key VARCHAR NOT NULL,
            kind VARCHAR NOT NULL DEFAULT 'character',
            description VARCHAR NOT NULL DEFAULT '',
            created_at DATETIME NOT NULL,
            updated_at DATETIME NOT NULL
        )""",
        "CREATE UNIQUE INDEX ix_reference_name_key ON reference (name_key)",
        """CREATE TABLE referencetag (
            reference_id INTEGER NOT NULL REFERENCES reference (id) ON DELETE CASCADE,
            tag VARCHAR NOT NULL,
            PRIMARY KEY (reference_id, tag)
        )""",
        "CREATE INDEX ix_referencetag_tag ON referencetag (tag)",
        """CREATE TABLE referenceimage (
            id INTEGER PRIMARY KEY,
            reference_id INTEGER NOT NULL REFERENCES reference (id) ON DELETE CASCADE,
            asset_id INTEGER NOT NULL REFERENCES asset (id),
            label VARCHAR,
            is_primary BOOLEAN NOT NULL DEFAULT 0,
            position INTEGER NOT NULL DEFAULT 0,
            source_file VARCHAR,
            created_at DATETIME NOT NULL
        )""",
        "CREATE INDEX ix_referenceimage_reference_id ON referenceimage (reference_id)",
        "CREATE INDEX ix_referenceimage_asset_id ON referenceimage (asset_id)",
        # A label names one image of one reference.
        "CREATE UNIQUE INDEX ux_referenceimage_label ON referenceimage (reference_id, label)",
    ),
)

M002_GENERATIONS = Migration(
    "m002_generations",
    (
        """CREATE TABLE run (
            id INTEGER PRIMARY KEY,
            workflow VARCHAR NOT NULL,
            workflow_hash VARCHAR NOT NULL,
            status VARCHAR NOT NULL DEFAULT 'running',
            vars_json VARCHAR NOT NULL DEFAULT '{}',
            started_at DATETIME NOT NULL,
            finished_at DATETIME
        )""",
        """CREATE TABLE generation (
            id INTEGER PRIMARY KEY,
            status VARCHAR NOT NULL DEFAULT 'pending',
            provider VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            template_source VARCHAR,
            prompt VARCHAR NOT NULL,
            params_json VARCHAR NOT NULL,
            payload_json VARCHAR NOT NULL DEFAULT '{}',
            bindings_json VARCHAR NOT NULL DEFAULT '[]',
            request_hash VARCHAR NOT NULL,
            request_id VARCHAR,
            poll_url VARCHAR,
            error VARCHAR NOT NULL DEFAULT '',
            cost_estimate FLOAT NOT NULL DEFAULT 0,
            inference_ms INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0,
            run_id INTEGER REFERENCES run (id),
            step_id VARCHAR,
            owner VARCHAR,
            created_at DATETIME NOT NULL,
            updated_at DATETIME,
            submitted_at DATETIME,
            completed_at DATETIME
        )""",
        "CREATE INDEX ix_generation_status ON generation (status)",
        "CREATE INDEX ix_generation_request_hash ON generation (request_hash)",
        "CREATE INDEX ix_generation_request_id ON generation (request_id)",
        "CREATE INDEX ix_generation_run_id ON generation (run_id)",
        """CREATE TABLE output (
            id INTEGER PRIMARY KEY,
            generation_id INTEGER NOT NULL REFERENCES generation (id),
            "index" INTEGER NOT NULL,
            asset_id INTEGER NOT NULL REFERENCES asset (id),
            nsfw BOOLEAN NOT NULL DEFAULT 0,
            source_url VARCHAR NOT NULL DEFAULT '',
            created_at DATETIME NOT NULL
        )""",
        "CREATE INDEX ix_output_generation_id ON output (generation_id)",
        'CREATE UNIQUE INDEX ux_output_generation_index ON output (generation_id, "index")',
        """CREATE TABLE upload (
            id INTEGER PRIMARY KEY,
            asset_id INTEGER NOT NULL REFERENCES asset (id),
            provider VARCHAR NOT NULL,
            url VARCHAR NOT NULL,
            created_at DATETIME NOT NULL,
            expires_at DATETIME
        )""",
        "CREATE INDEX ix_upload_asset_id ON upload (asset_id)",
        "CREATE INDEX ix_upload_provider ON upload (provider)",
        # The lineage edge: which generated output an image of a reference came from.
        "ALTER TABLE referenceimage ADD COLUMN source_output_id INTEGER REFERENCES output (id)",
        "CREATE INDEX ix_referenceimage_source_output_id ON referenceimage (source_output_id)",
    ),
)

M003_SUBMIT_WINDOW = Migration(
    "m003_submit_window",
    (
        # Submits of a generation that were, or may have been, accepted (and so billed): what
        # `retry` tells the user it costs, and what reconcile checks against the provider.
        "ALTER TABLE generation ADD COLUMN paid_attempts INTEGER NOT NULL DEFAULT 0",
        # The window in which an ambiguous submit's task, if any, was created (local clock).
        "ALTER TABLE generation ADD COLUMN sent_at DATETIME",
        "ALTER TABLE generation ADD COLUMN sent_until DATETIME",
        # Where the latest submit went (WaveSpeed: the API base URL, never the key): records
        # of another account or server say nothing about it.
        "ALTER TABLE generation ADD COLUMN sent_to VARCHAR",
        # What reconcile (or another after-the-fact step) found out, e.g. "reconciled: ...".
        "ALTER TABLE generation ADD COLUMN note VARCHAR NOT NULL DEFAULT ''",
        # Rows written before this migration: an accepted task or an unknown fate may be paid.
        "UPDATE generation SET paid_attempts = 1 "
        "WHERE request_id IS NOT NULL OR status = 'unknown'",
    ),
)

def add_column(conn: Connection, table: str, column: Column[object]) -> None:
    """``ALTER TABLE table ADD COLUMN …`` with the column's DDL compiled for this database."""
    ddl = CreateColumn(column).compile(dialect=conn.dialect)
    conn.exec_driver_sql(f"ALTER TABLE {conn.dialect.identifier_preparer.quote(table)} "
                         f"ADD COLUMN {ddl}")


def _m005_teams(conn: Connection) -> None:
    # Who did what, once several people share a library. NULL: made before authors existed.
    for table in ("generation", "reference", "referenceimage"):
        add_column(conn, table, Column("author", String, nullable=True))
    # Engines alive somewhere: ownership of generations by lease instead of by pid on a host.
    # Declared here as it was at m005, not taken from tables.py, which may move on.
    frozen = MetaData()
    from sqlmodel.sql.sqltypes import UTCDateTime

    Table(
        "engine_lease", frozen,
        Column("owner", String, primary_key=True),
        Column("host", String, nullable=False),
        Column("pid", Integer, nullable=False),
        Column("author", String, nullable=True),
        Column("started_at", UTCDateTime(), nullable=False),
        Column("expires_at", UTCDateTime(), nullable=False),
    )
    frozen.create_all(conn)


#: The model of every generation recorded before refstudio knew more than one.
LEGACY_MODEL_ID = "wavespeed:runwayml/gen4-image"


def _m004_model_id(conn: Connection) -> None:
    # Which model a generation asked for, as `provider:model` (the catalog's id); `provider`
    # says who ran it (offline previews any model). Every row written before this migration
    # was a Gen-4 Image request on WaveSpeed, or an offline preview of one: a fact of the past,
    # so its id is written out here rather than read from the model's module.
    add_column(conn, "generation",
               Column("model_id", String, nullable=False, server_default=LEGACY_MODEL_ID))
    conn.exec_driver_sql("CREATE INDEX ix_generation_model_id ON generation (model_id)")


M004_MODEL_ID = Migration("m004_model_id", run=_m004_model_id)
# Two branches both wrote an m004; the ledger keys on names, so the model id keeps m004 (it
# came first) and the team columns follow as m005.
M005_TEAMS = Migration("m005_teams", run=_m005_teams)

MIGRATIONS: tuple[Migration, ...] = (
    M001_LIBRARY, M002_GENERATIONS, M003_SUBMIT_WINDOW, M004_MODEL_ID, M005_TEAMS,
)

_LEDGER = "CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR PRIMARY KEY, applied_at VARCHAR)"


def applied_migrations(conn: Connection) -> list[str]:
    """Names of the migrations recorded in this database (they sort in the order applied)."""
    conn.exec_driver_sql(_LEDGER)
    rows = conn.exec_driver_sql("SELECT name FROM _migrations ORDER BY name").all()
    return [r[0] for r in rows]


def _is_empty(conn: Connection) -> bool:
    """No library tables yet: a new database (or one made for it, empty)."""
    return not (set(inspect(conn).get_table_names()) - {"_migrations"})


def _record(conn: Connection, name: str) -> None:
    conn.execute(text("INSERT INTO _migrations (name, applied_at) VALUES (:name, :at)"),
                 {"name": name, "at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")})


def apply_migrations(
    conn: Connection,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    on_apply: Callable[[str], None] | None = None,
) -> list[str]:
    """Apply, inside the caller's transaction, every migration not yet recorded. Returns names."""
    done = set(applied_migrations(conn))
    known = {m.name for m in migrations}
    unknown = done - known
    if unknown:
        raise StorageError(
            f"this library was written by a newer refstudio (migrations {sorted(unknown)})",
            hint="upgrade refstudio: pip install -U refstudio",
        )
    if not done and _is_empty(conn):
        # A new library: the whole schema at once from its one source, every step recorded.
        from sqlmodel import SQLModel

        from . import tables  # noqa: F401 - registers the tables on SQLModel.metadata

        SQLModel.metadata.create_all(conn)
        for migration in migrations:
            _record(conn, migration.name)
            if on_apply:
                on_apply(migration.name)
        return [m.name for m in migrations]
    applied: list[str] = []
    for migration in migrations:
        if migration.name in done:
            continue
        migration.apply(conn)
        _record(conn, migration.name)
        applied.append(migration.name)
        if on_apply:
            on_apply(migration.name)
    return applied
