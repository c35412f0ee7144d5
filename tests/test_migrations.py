"""Schema migrations: a database written by an older version opens, and the schema matches the
SQLModel tables the code queries with."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import ImageMaker, db_rows, encode_image, run_cli, snapshot_project
from sqlmodel import SQLModel

from refstudio import StorageError, Studio
from refstudio.app.project import write_new_project
from refstudio.storage import tables as models
from refstudio.storage.media import blob_key
from refstudio.storage.migrations import M001_LIBRARY, MIGRATIONS

OLD_TIME = "2024-05-01 10:00:00.000000"


def model_tables() -> dict[str, Any]:
    """The SQLAlchemy tables declared in :mod:`refstudio.storage.tables`."""
    return {
        obj.__table__.name: obj.__table__
        for obj in vars(models).values()
        if isinstance(obj, type)
        and issubclass(obj, SQLModel)
        and hasattr(obj, "__table__")
        and obj.__module__ == models.__name__
    }


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def table_columns(db: Path) -> dict[str, list[tuple[str, str, int, int]]]:
    """table -> [(column, type, notnull, pk)] for every user table."""
    conn = sqlite3.connect(db)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {
            t: [(c[1], c[2], c[3], c[5]) for c in conn.execute(f"PRAGMA table_info('{t}')")]
            for t in tables
        }
    finally:
        conn.close()


def build_m001_project(root: Path) -> tuple[Path, bytes]:
    """A project whose library.db was written by a version that knew only m001, with one
    reference (two tags, one labelled image) in it. Returns the db path and the image bytes."""
    write_new_project(root)
    data = encode_image((640, 800), "PNG", seed=11)
    sha = hashlib.sha256(data).hexdigest()
    key = blob_key(sha, "png")
    (root / "media" / key).parent.mkdir(parents=True)
    (root / "media" / key).write_bytes(data)
    db = root / "library.db"
    conn = sqlite3.connect(db)
    try:
        with conn:
            for statement in M001_LIBRARY.statements:
                conn.execute(statement)
            conn.execute("CREATE TABLE _migrations (name VARCHAR PRIMARY KEY, applied_at VARCHAR)")
            conn.execute(
                "INSERT INTO _migrations VALUES (?, ?)", (M001_LIBRARY.name, "2024-05-01 10:00:00")
            )
            conn.execute(
                "INSERT INTO asset (id, sha256, path, format, width, height, bytes, quality_json,"
                " created_at) VALUES (1, ?, ?, 'PNG', 640, 800, ?, '[]', ?)",
                (sha, key, len(data), OLD_TIME),
            )
            conn.execute(
                "INSERT INTO reference (id, name, name_key, kind, description, created_at,"
                " updated_at) VALUES (1, 'Mara', 'mara', 'character', 'red coat', ?, ?)",
                (OLD_TIME, OLD_TIME),
            )
            conn.executemany(
                "INSERT INTO referencetag (reference_id, tag) VALUES (1, ?)", [("hero",), ("act1",)]
            )
            conn.execute(
                "INSERT INTO referenceimage (id, reference_id, asset_id, label, is_primary,"
                " position, source_file, created_at) VALUES (1, 1, 1, 'front', 1, 0,"
                " '/old/mara.png', ?)",
                (OLD_TIME,),
            )
    finally:
        conn.close()
    return db, data


def test_database_from_an_older_version_opens_and_upgrades(
    tmp_path: Path, make_image: ImageMaker
) -> None:
    root = tmp_path / "old"
    db, data = build_m001_project(root)
    assert "generation" not in table_columns(db)

    with Studio.open(root) as studio:
        mara = studio.reference("@mara")
        assert (mara.name, mara.kind, mara.description) == ("Mara", "character", "red coat")
        assert mara.tags == ("act1", "hero")
        assert mara.created_at.year == 2024
        (image,) = mara.images
        assert (image.label, image.is_primary, image.width, image.height) == (
            "front",
            True,
            640,
            800,
        )
        assert image.sha256 == hashlib.sha256(data).hexdigest()
        assert image.source_file == "/old/mara.png"
        assert image.source_output_id is None
        assert Path(image.path).read_bytes() == data
        assert studio.check_reference("mara")[0][0] == image
        # The upgraded library takes new data next to the old.
        studio.add_images("mara", [make_image(tmp_path / "side.png", seed=12)], labels=["side"])
        studio.add_reference("tavern", [make_image(tmp_path / "t.png", seed=13)], kind="location")
        assert [r.name for r in studio.references()] == ["Mara", "tavern"]
        assert [i.label for i in studio.reference("mara").images] == ["front", "side"]

    ledger = [r[0] for r in query(db, "SELECT name FROM _migrations ORDER BY rowid")]
    assert ledger == [m.name for m in MIGRATIONS]
    columns = table_columns(db)
    for table in ("generation", "output", "upload", "run"):
        assert table in columns
    assert "source_output_id" in [c[0] for c in columns["referenceimage"]]
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert query(db, "PRAGMA foreign_key_check") == []

    # Opening again applies nothing twice.
    Studio.open(root).close()
    assert [r[0] for r in query(db, "SELECT name FROM _migrations ORDER BY rowid")] == ledger


def schema(url: Any) -> dict[str, Any]:
    """A database's schema, normalised so SQLite and PostgreSQL compare: per table its columns
    (name, type family, nullable unless primary key), primary key, unique and plain indexes
    (by name and columns) and foreign keys."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            found = inspect(conn)
            out: dict[str, Any] = {}
            for table in sorted(found.get_table_names()):
                pk = tuple(found.get_pk_constraint(table)["constrained_columns"])
                out[table] = {
                    "columns": sorted(
                        (c["name"], _family(c["type"]), c["name"] in pk or bool(c["nullable"]))
                        for c in found.get_columns(table)),
                    "pk": pk,
                    "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                      for i in found.get_indexes(table)),
                    "fks": sorted((tuple(f["constrained_columns"]), f["referred_table"],
                                   tuple(f["referred_columns"]))
                                  for f in found.get_foreign_keys(table)),
                }
            return out
    finally:
        engine.dispose()


def _family(column_type: Any) -> str:
    name = type(column_type).__name__.upper()
    for family in ("INT", "CHAR", "TEXT", "BOOL", "FLOAT", "REAL", "DOUBLE", "TIME"):
        if family in name:
            return {"TEXT": "CHAR", "REAL": "FLOAT", "DOUBLE": "FLOAT"}.get(family, family)
    return name


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def test_upgraded_schema_equals_fresh_schema(tmp_path: Path) -> None:
    """The two roads to today's schema (migrations from m001, or tables.py at once) meet."""
    old_db, _ = build_m001_project(tmp_path / "old")
    Studio.open(tmp_path / "old").close()
    Studio.init(tmp_path / "new").close()
    assert schema(sqlite_url(old_db)) == schema(sqlite_url(tmp_path / "new" / "library.db"))


def test_a_postgresql_library_has_the_same_schema(tmp_path: Path, pg_database: str) -> None:
    Studio.init(tmp_path / "new").close()
    write_new_project(tmp_path / "pg")
    toml = tmp_path / "pg" / "refstudio.toml"
    toml.write_text(f'database_url = "{pg_database}"\n' + toml.read_text())
    Studio.open(tmp_path / "pg").close()
    pg = pg_database.replace("postgresql://", "postgresql+psycopg://")
    assert schema(pg) == schema(sqlite_url(tmp_path / "new" / "library.db"))
    # Opening again applies nothing; the ledger has every migration once.
    Studio.open(tmp_path / "pg").close()
    assert db_rows(tmp_path / "pg", "SELECT name FROM _migrations ORDER BY name") == [
        (m.name,) for m in MIGRATIONS]


def test_schema_matches_the_models(project: Studio) -> None:
    """Every table and column the SQLModel classes declare exists in the migrated database with
    the same nullability, and the database has no table the models do not know."""
    columns = table_columns(project.project.db_path)
    declared = model_tables()
    assert {"asset", "reference", "referenceimage", "referencetag"} <= set(declared)
    for name, table in declared.items():
        assert name in columns, f"table {name} is declared but not migrated"
        in_db = {c[0]: c for c in columns[name]}
        assert set(in_db) == {c.name for c in table.columns}, name
        for column in table.columns:
            _, _, notnull, pk = in_db[column.name]
            assert bool(pk) == column.primary_key, (name, column.name)
            if not column.primary_key:
                assert bool(notnull) == (not column.nullable), (name, column.name)
    assert set(columns) - {"_migrations"} <= set(SQLModel.metadata.tables)

    # Uniqueness the library relies on is enforced by the database itself.
    unique_indexes = query(
        project.project.db_path,
        "SELECT m.name, ii.name FROM sqlite_master m, pragma_index_list(m.name) il,"
        " pragma_index_info(il.name) ii WHERE m.type = 'table' AND il.\"unique\" = 1",
    )
    assert ("reference", "name_key") in unique_indexes
    assert ("asset", "sha256") in unique_indexes


def test_pragmas(project: Studio) -> None:
    with project.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    Studio.init(tmp_path / "p").close()
    db = tmp_path / "p" / "library.db"
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute("INSERT INTO _migrations VALUES ('m999_from_the_future', '2030-01-01')")
    finally:
        conn.close()
    before = snapshot_project(tmp_path / "p")
    with pytest.raises(StorageError) as info:
        Studio.open(tmp_path / "p")
    assert "m999_from_the_future" in str(info.value)
    assert "upgrade" in (info.value.hint or "")
    result = run_cli("--project", str(tmp_path / "p"), "ref", "list")
    assert result.returncode == StorageError.exit_code == 13
    assert result.stderr.startswith("error: this library was written by a newer refstudio")
    assert "Traceback" not in result.stderr
    assert snapshot_project(tmp_path / "p") == before


def test_migration_names_are_ordered_and_unique() -> None:
    names = [m.name for m in MIGRATIONS]
    assert len(set(names)) == len(names)
    assert names == sorted(names)
    assert names[0] == M001_LIBRARY.name


def test_migration_numbers_are_unique_and_contiguous() -> None:
    # Two branches once both wrote an m004: names differed, so uniqueness of names alone did
    # not catch it. Each name is mNNN_what, numbered 1, 2, 3, ... with no gap and no repeat.
    numbers = []
    for migration in MIGRATIONS:
        match = re.fullmatch(r"m(\d{3})_[a-z0-9_]+", migration.name)
        assert match, f"{migration.name!r} is not mNNN_name"
        numbers.append(int(match.group(1)))
    assert numbers == list(range(1, len(MIGRATIONS) + 1))
