"""``refstudio storage copy --database-url``: a whole library moved between databases and stores.

SQLite + a folder -> PostgreSQL + S3 (``--switch``) -> a new SQLite + folder, through the real
command against a real PostgreSQL server and moto's S3 endpoint: what the user sees (``ref
list``, ``lineage``) and every image's hash stay the same, and the copy keeps working (a new
generation after the switch gets a new id, the sequences having been moved past the copied ids).
A target that holds a library already, or a password headed for refstudio.toml, is refused with
one line and nothing written anywhere.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ImageMaker,
    dump_library,
    media_stored,
    open_with_media,
    pg_prefix,
    pg_url,
    run_cli,
)
from s3support import new_media_url, stored_objects
from sqlmodel import select

from refstudio.storage.tables import Asset


def cli(root: Path, env: dict[str, str], *args: str) -> Any:
    return run_cli("--project", str(root), *args, env=env)


def ok_json(root: Path, env: dict[str, str], *args: str) -> Any:
    r = cli(root, env, *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def one_error(r: Any, code: int) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def _without_paths(value: Any) -> Any:
    """JSON with each image's location removed (a file path or an s3:// URL: it names the store,
    which is what changed); the locations are checked to exist separately."""
    if isinstance(value, dict):
        return {k: _without_paths(v) for k, v in value.items() if k != "path"}
    if isinstance(value, list):
        return [_without_paths(v) for v in value]
    return value


def _paths(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in ([v] if k == "path" else _paths(v))]
    if isinstance(value, list):
        return [p for v in value for p in _paths(v)]
    return []


def view(root: Path, env: dict[str, str]) -> dict[str, Any]:
    """What must survive a move: the listing, mara's lineage, and every image's real hash."""
    refs = ok_json(root, env, "ref", "list")
    lineage = ok_json(root, env, "lineage", "mara")
    for location in _paths(refs) + _paths(lineage):
        assert media_stored(str(location)), location
    studio = open_with_media(root, None)
    try:
        from refstudio.storage.database import read_session

        with read_session(studio.db) as session:
            assets = session.exec(select(Asset.sha256, Asset.path)).all()
        # The bytes themselves, read back from whichever store the project now names.
        hashes = sorted((key, hashlib.sha256(studio.store.read_bytes(key)).hexdigest())
                        for _sha, key in assets)
        assert hashes == sorted((key, sha) for sha, key in assets)
    finally:
        studio.close()
    return {"refs": _without_paths(refs), "lineage": _without_paths(lineage), "hashes": hashes}


def toml_urls(root: Path) -> tuple[str | None, str | None]:
    import tomllib

    raw = tomllib.loads((root / "refstudio.toml").read_text())
    return raw.get("database_url"), raw.get("media_url")


@pytest.fixture
def s3_env(s3_endpoint: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in s3_endpoint.env().items():
        monkeypatch.setenv(key, value)
    return s3_endpoint.env()


def test_sqlite_to_postgresql_and_s3_and_back(
    tmp_path: Path, make_image: ImageMaker, s3_env: dict[str, str]
) -> None:
    env = {**s3_env, "REFSTUDIO_NO_PROGRESS": "1",
           "REFSTUDIO_OFFLINE_DIR": str(tmp_path / "offline-cache")}
    root = tmp_path / "proj"
    assert run_cli("init", str(root), env=env).returncode == 0
    for name, seed in (("mara", 1), ("tavern", 2)):
        image = make_image(tmp_path / "in" / f"{name}.png", size=(800, 1000), seed=seed)
        assert cli(root, env, "ref", "add", name, str(image)).returncode == 0
    gens = ok_json(root, env, "gen", "@mara in @tavern", "-n", "2", "--seed", "7",
                   "--resolution", "720p")
    ok_json(root, env, "promote", f"{gens[1]['id']}:0", "mara")
    on_sqlite = view(root, env)
    assert len(on_sqlite["hashes"]) == 4  # two references, two outputs

    with pg_prefix() as prefix:
        pg, s3 = pg_url(prefix + "lib"), new_media_url()
        report = ok_json(root, env, "storage", "copy", "--database-url", pg, "--media-url", s3,
                         "--switch")
        assert report["copied"] == 4
        rows = report["database"]["rows"]
        assert rows["asset"] == 4 and rows["generation"] == 2 and rows["referenceimage"] == 3
        assert toml_urls(root) == (pg, s3)
        assert view(root, env) == on_sqlite

        # The copy is a working library: a new generation gets the next id, not a copied one.
        [new] = ok_json(root, env, "gen", "@mara on a ship", "--seed", "9",
                        "--resolution", "720p")
        assert new["status"] == "completed"
        assert new["id"] == max(g["id"] for g in gens) + 1
        on_postgres = view(root, env)

        # Back to a new SQLite file and folder.
        report = ok_json(root, env, "storage", "copy", "--database-url", "sqlite:///back/lib.db",
                         "--media-url", "file:media-back", "--switch")
        assert report["copied"] == 5
        assert toml_urls(root) == ("sqlite:///back/lib.db", "file:media-back")
        assert (root / "back" / "lib.db").is_file()
        assert len(list((root / "media-back").rglob("*.png"))) == 5
        assert view(root, env) == on_postgres

        # Copying into the PostgreSQL library (it has rows) is refused; nothing is written:
        # not its rows, not the new media prefix, not refstudio.toml.
        env_pg = {**env, "REFSTUDIO_DATABASE_URL": pg}
        pg_rows = dump_library_at(root, pg)
        toml_before = (root / "refstudio.toml").read_bytes()
        fresh = new_media_url()
        line = one_error(cli(root, env, "storage", "copy", "--database-url", pg,
                             "--media-url", fresh, "--switch"), 4)
        assert "already holds a library" in line
        assert dump_library_at(root, pg) == pg_rows
        assert stored_objects(s3_env["AWS_ENDPOINT_URL"], fresh) == {}
        assert (root / "refstudio.toml").read_bytes() == toml_before
        assert ok_json(root, env_pg, "ref", "list")  # still readable there

        # A password is never written into refstudio.toml: refused before anything happens.
        secret = pg_url(prefix + "other").replace("postgres@", "postgres:hunter2@")
        line = one_error(cli(root, env, "storage", "copy", "--database-url", secret,
                             "--switch"), 3)
        assert "hunter2" not in line
        assert (root / "refstudio.toml").read_bytes() == toml_before


def dump_library_at(root: Path, url: str) -> list[str]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REFSTUDIO_DATABASE_URL", url)
        return dump_library(root)


def test_database_only_copy_between_sqlite_files(tmp_path: Path, make_image: ImageMaker) -> None:
    """The database alone moves (media stay where they are); --switch rewrites only its line,
    keeping the rest of refstudio.toml as written; bad requests write nothing."""
    env = {"REFSTUDIO_NO_PROGRESS": "1", "REFSTUDIO_OFFLINE_DIR": str(tmp_path / "offline")}
    root = tmp_path / "proj"
    assert run_cli("init", str(root), env=env).returncode == 0
    image = make_image(tmp_path / "mara.png", size=(800, 1000), seed=3)
    assert cli(root, env, "ref", "add", "mara", str(image)).returncode == 0
    refs = ok_json(root, env, "ref", "list")
    toml_before = (root / "refstudio.toml").read_text()

    one_error(cli(root, env, "storage", "copy"), 4)  # no target named
    one_error(cli(root, env, "storage", "copy", "--database-url", "sqlite:///library.db"), 4)
    assert (root / "refstudio.toml").read_text() == toml_before

    report = ok_json(root, env, "storage", "copy", "--database-url", "sqlite:///moved.db",
                     "--switch")
    assert report["copied"] is None and report["database"]["rows"]["reference"] == 1
    after = (root / "refstudio.toml").read_text()
    assert toml_urls(root) == ("sqlite:///moved.db", None)
    # Only the one line was added; every comment and setting of the old file is still there.
    assert [ln for ln in after.splitlines() if ln not in toml_before.splitlines()] == [
        'database_url = "sqlite:///moved.db"']
    assert ok_json(root, env, "ref", "list") == refs

    # The old library.db still holds rows: copying back into it is refused.
    line = one_error(cli(root, env, "storage", "copy", "--database-url",
                         "sqlite:///library.db"), 4)
    assert "already holds a library" in line


def _pg_tables(url: str) -> list[str] | None:
    """The tables of the database at ``url``, or None when there is no such database."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return sorted(conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
    except OperationalError as exc:
        assert "does not exist" in str(exc)
        return None
    finally:
        engine.dispose()


@pytest.mark.parametrize("target", ["new postgresql", "empty postgresql", "new sqlite"])
def test_a_copy_that_fails_midway_leaves_the_target_as_it_was(
    tmp_path: Path, make_image: ImageMaker, target: str
) -> None:
    """A real fault halfway through the rows: the source holds a tag of a reference that does
    not exist (written past the foreign key, as a damaged library might be), which the target
    refuses after the assets and references went in. The copy is one error line, and the target
    is as before: a database the copy created is dropped, an empty one keeps no table, a new
    SQLite file and its new folder are gone; refstudio.toml is not switched."""
    import sqlite3

    env = {"REFSTUDIO_NO_PROGRESS": "1", "REFSTUDIO_OFFLINE_DIR": str(tmp_path / "offline")}
    root = tmp_path / "proj"
    assert run_cli("init", str(root), env=env).returncode == 0
    for name, seed in (("mara", 1), ("tavern", 2)):
        image = make_image(tmp_path / f"{name}.png", size=(800, 1000), seed=seed)
        assert cli(root, env, "ref", "add", name, str(image)).returncode == 0
    with sqlite3.connect(root / "library.db") as damage:  # foreign keys are off by default
        damage.execute("INSERT INTO referencetag (reference_id, tag) VALUES (999, 'ghost')")
    toml_before = (root / "refstudio.toml").read_bytes()
    with pg_prefix() as prefix:
        if target == "new sqlite":
            url = "sqlite:///new/deeper/lib.db"
        else:
            url = pg_url(prefix + "lib")
            if target == "empty postgresql":
                from test_database import create_database

                create_database(url)
        line = one_error(cli(root, env, "storage", "copy", "--database-url", url, "--switch"),
                         13)
        assert "nothing was written there" in line and "foreign key" in line.lower()
        if target == "new sqlite":
            assert not (root / "new").exists()
        else:
            assert _pg_tables(url) == (None if target == "new postgresql" else [])
        assert (root / "refstudio.toml").read_bytes() == toml_before
