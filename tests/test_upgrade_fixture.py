"""A library written by refstudio 0.1.0 (tests/fixtures/library_0_1_0, kept byte for byte)
upgrades in place: every command shows what that release showed, new work goes in beside the
old, and the schema ends where a new library's starts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import db_rows, run_cli, snapshot_project
from test_migrations import schema, sqlite_url

from refstudio import StorageError, Studio
from refstudio.storage.migrations import MIGRATIONS

FIXTURE = Path(__file__).parent / "fixtures" / "library_0_1_0"
MADE_AT = "/tmp/pgfix/lib"  # where the fixture library lived when its expected/ was printed


@pytest.fixture
def old(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("expected", "README.md"))
    return root


def expected(name: str, root: Path) -> Any:
    return json.loads((FIXTURE / "expected" / name).read_text().replace(MADE_AT, str(root)))


def contains(found: Any, wanted: Any) -> bool:
    """``found`` holds everything ``wanted`` does (new keys, e.g. an author, may be added)."""
    if isinstance(wanted, dict):
        return isinstance(found, dict) and all(
            k in found and contains(found[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (isinstance(found, list) and len(found) == len(wanted)
                and all(contains(f, w) for f, w in zip(found, wanted, strict=True)))
    return bool(found == wanted)


def cli_json(root: Path, *args: str) -> Any:
    result = run_cli("-p", str(root), *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_old_library_shows_what_its_release_showed(old: Path) -> None:
    for name, args in [("ref_list.json", ("ref", "list")),
                       ("lineage_mara_hearth.json", ("lineage", "mara_hearth")),
                       ("history.json", ("history",)),
                       ("show_5.json", ("show", "5"))]:
        assert contains(cli_json(old, *args), expected(name, old)), name
    ledger = db_rows(old, "SELECT name FROM _migrations ORDER BY name")
    assert ledger == [(m.name,) for m in MIGRATIONS]
    assert db_rows(old, "PRAGMA integrity_check") == [("ok",)]
    assert db_rows(old, "PRAGMA foreign_key_check") == []


def test_the_upgraded_schema_is_a_new_librarys(old: Path, tmp_path: Path) -> None:
    Studio.open(old).close()
    Studio.init(tmp_path / "new").close()
    assert schema(sqlite_url(old / "library.db")) == schema(
        sqlite_url(tmp_path / "new" / "library.db"))


def test_new_work_goes_in_beside_the_old(old: Path, tmp_path: Path) -> None:
    toml = old / "refstudio.toml"
    toml.write_text('author = "ines"\n' + toml.read_text())
    with Studio.open(old) as studio:
        studio.provider_options["offline"] = {"cache_dir": tmp_path / "offline"}
        [gen] = studio.generate("@Imp beside @mara_hearth", provider="offline", seed=9,
                                resolution="720p")
        assert gen.status == "completed"
        studio.promote(gen.id, "imp_scene")
        assert studio.reference("imp_scene").images[0].source_output_id is not None
        assert [r.name for r in studio.references()] == [
            "Imp", "imp_scene", "mara", "mara_hearth", "tavern"]
    authors = db_rows(old, "SELECT id, author FROM generation ORDER BY id")
    assert authors == [(1, None), (2, None), (3, None), (4, None), (5, None), (6, "ines")]
    assert db_rows(old, "SELECT author FROM reference WHERE name = 'imp_scene'") == [("ines",)]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_a_library_from_a_newer_release_is_refused_on_either_database(
    old: Path, backend: str
) -> None:
    if backend == "postgresql":
        Studio.open(old).close()  # made anew on its own database
    db_rows(old, "INSERT INTO _migrations (name, applied_at) VALUES ('m999_later', 'x')")
    before = snapshot_project(old)
    result = run_cli("-p", str(old), "ref", "list")
    assert result.returncode == StorageError.exit_code == 13
    assert result.stderr.startswith("error: this library was written by a newer refstudio")
    assert sum(line.startswith("error:") for line in result.stderr.splitlines()) == 1
    assert snapshot_project(old) == before

