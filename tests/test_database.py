"""The library's database by URL: SQLite or PostgreSQL, chosen in refstudio.toml or the
environment; bad URLs, unreachable servers and refused logins are one clear line each (never
with a password), with nothing written; several processes writing one PostgreSQL library at
once lose nothing and never break a name's uniqueness."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ImageMaker, db_rows, encode_image, pg_url, require_pg, run_cli
from pgwire import RefusingServer

from refstudio import ConfigError, DatabaseUnavailableError, Studio

PASSWORD = "hunter2-SENTINEL-pw"


def _one_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert sum(line.startswith("error:") for line in lines) == 1, result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    return lines[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A project folder whose library was never opened (no library.db yet)."""
    run_cli("init", str(tmp_path / "p"))
    (tmp_path / "p" / "library.db").unlink()
    return tmp_path / "p"


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_a_password_in_refstudio_toml_is_refused_without_showing_it(folder: Path) -> None:
    toml = folder / "refstudio.toml"
    toml.write_text(f'database_url = "postgresql://me:{PASSWORD}@127.0.0.1/x"\n'
                    + toml.read_text())
    before = _files(folder)
    line = _one_error(run_cli("-p", str(folder), "ref", "list"), ConfigError.exit_code)
    assert "must not hold a password" in line
    # Under another key, the value is still shown without its password.
    toml.write_text(toml.read_text().replace("database_url", "name", 1).replace(
        'name = "p"\n', ""))
    toml.write_text(toml.read_text().replace('name = "postgresql',
                                             'max_image_mb = "postgresql'))
    _one_error(run_cli("-p", str(folder), "ref", "list"), ConfigError.exit_code)
    assert _files(folder) == before


@pytest.mark.parametrize("url, words", [
    ("postgresql://postgres:{pw}@127.0.0.1:1/test", "cannot reach the database server"),
    ("postgresql://postgres@nonexistent.invalid/test", "cannot reach the database server"),
    ("postgresql://rs_no_such_role:{pw}@127.0.0.1:5432/postgres", "refused the login"),
    ("postgresql://postgres:{pw}@127.0.0.1:5432/rs_no_such_db", "no database named"),
])
def test_an_unusable_server_is_one_line_with_nothing_written(
    folder: Path, url: str, words: str
) -> None:
    if "127.0.0.1:5432" in url:
        require_pg()
    before = _files(folder)
    env = {"REFSTUDIO_DATABASE_URL": url.format(pw=PASSWORD)}
    line = _one_error(run_cli("-p", str(folder), "ref", "list", env=env),
                      DatabaseUnavailableError.exit_code)
    assert words in line
    if "{pw}" in url:
        assert "***" in line  # the URL is named, its password masked
    assert _files(folder) == before


@pytest.mark.parametrize("where", ["PGPASSWORD", "url"])
def test_a_wrong_password_is_one_line_that_never_shows_it(folder: Path, where: str) -> None:
    """A server that asks for a password and refuses it (SQLSTATE 28P01): the password, from
    PGPASSWORD or the URL in the environment, reaches the server and appears nowhere in what
    the user sees."""
    before = _files(folder)
    with RefusingServer() as server:
        user = f"alice:{PASSWORD}" if where == "url" else "alice"
        env = {"REFSTUDIO_DATABASE_URL": f"postgresql://{user}@127.0.0.1:{server.port}/lib"}
        if where == "PGPASSWORD":
            env["PGPASSWORD"] = PASSWORD
        result = run_cli("-p", str(folder), "ref", "list", env=env)
    line = _one_error(result, DatabaseUnavailableError.exit_code)
    assert server.passwords and set(server.passwords) == {PASSWORD}
    assert "refused the login" in line
    assert 'password authentication failed for user "alice"' in line
    assert f"127.0.0.1:{server.port}/lib" in line
    assert "PGPASSWORD" in result.stderr  # the hint says where the password comes from
    assert _files(folder) == before


@pytest.mark.parametrize("url", ["mysql://a@b/c", "sqlite://", "not a url at all",
                                 "postgresql://me@host/"])
def test_a_bad_url_is_a_config_error(folder: Path, url: str) -> None:
    before = _files(folder)
    line = _one_error(run_cli("-p", str(folder), "ref", "list",
                              env={"REFSTUDIO_DATABASE_URL": url}), ConfigError.exit_code)
    assert "REFSTUDIO_DATABASE_URL" in line
    assert _files(folder) == before


def test_a_relative_sqlite_url_is_inside_the_project(folder: Path, make_image: ImageMaker) -> None:
    toml = folder / "refstudio.toml"
    toml.write_text('database_url = "sqlite:///data/lib.sqlite"\n' + toml.read_text())
    (folder / "data").mkdir()
    with Studio.open(folder) as studio:
        studio.add_reference("mara", [make_image(folder.parent / "m.png")])
    assert (folder / "data" / "lib.sqlite").is_file()
    assert not (folder / "library.db").exists()


def test_the_database_url_is_shared_by_two_projects(
    db_url: str, tmp_path: Path, make_image: ImageMaker
) -> None:
    """Two folders, one database: what one adds, the other sees (a team's library)."""
    roots = []
    for name in ("a", "b"):
        run_cli("init", str(tmp_path / name))
        (tmp_path / name / "library.db").unlink()
        toml = tmp_path / name / "refstudio.toml"
        toml.write_text(f'database_url = "{db_url}"\n' + toml.read_text())
        roots.append(tmp_path / name)
    if db_url.startswith("postgresql"):
        create_database(db_url)
    with Studio.open(roots[0]) as a:
        a.add_reference("mara", [make_image(tmp_path / "m.png")])
    result = run_cli("-p", str(roots[1]), "ref", "list", "--json")
    assert result.returncode == 0, result.stderr
    assert '"name": "mara"' in result.stdout
    line = _one_error(run_cli("-p", str(roots[1]), "ref", "add", "MARA",
                              str(tmp_path / "m.png")), 4)
    assert "already exists" in line


def create_database(url: str) -> None:
    from sqlalchemy import create_engine

    name = url.rsplit("/", 1)[1]
    engine = create_engine(pg_url("postgres").replace("postgresql://", "postgresql+psycopg://"),
                           isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()


# -- several writers on one PostgreSQL library ---------------------------------------------------

WRITER = """
import sys, time
from pathlib import Path
from refstudio import Studio, NameTakenError
root, worker, count, shared, own, go = sys.argv[1:7]
names = sys.argv[7:]
while not Path(go).exists():
    time.sleep(0.005)
taken = 0
with Studio.open(root) as studio:
    for i, name in enumerate(names):
        image = shared if i % 2 else own
        try:
            studio.add_reference(name, [image], tags=["t" + worker, "all"])
        except NameTakenError:
            taken += 1
print(taken)
"""


def _race(root: Path, tmp_path: Path, names_of: list[list[str]]) -> list[int]:
    go = tmp_path / "go"
    (tmp_path / "shared.png").write_bytes(encode_image((400, 500), seed=40))
    procs = []
    for worker, names in enumerate(names_of):
        own = tmp_path / f"own{worker}.png"
        own.write_bytes(encode_image((400, 500), seed=41 + worker))
        procs.append(subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(worker), str(len(names)),
             str(tmp_path / "shared.png"), str(own), str(go), *names],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)))
    go.touch()
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    for code, _, err in results:
        assert code == 0 and "Traceback" not in err, err
    return [int(out) for _, out, _ in results]


@pytest.fixture
def pg_root(tmp_path: Path, pg_database: str) -> Path:
    run_cli("init", str(tmp_path / "p"))
    toml = tmp_path / "p" / "refstudio.toml"
    toml.write_text(f'database_url = "{pg_database}"\n' + toml.read_text())
    Studio.open(tmp_path / "p").close()
    return tmp_path / "p"


def test_four_processes_add_fifty_references_each(pg_root: Path, tmp_path: Path) -> None:
    taken = _race(pg_root, tmp_path, [[f"w{w}_ref{i:02d}" for i in range(50)] for w in range(4)])
    assert taken == [0, 0, 0, 0]
    assert db_rows(pg_root, "SELECT count(*) FROM reference") == [(200,)]
    assert db_rows(pg_root, "SELECT count(*) FROM referenceimage") == [(200,)]
    # One row per content, though four processes stored the shared image at once.
    assert db_rows(pg_root, "SELECT count(*) FROM asset") == [(5,)]
    assert db_rows(pg_root, "SELECT count(*) FROM referencetag WHERE tag = 'all'") == [(200,)]
    with Studio.open(pg_root) as studio:
        assert len(studio.references()) == 200


def test_racing_processes_never_create_one_name_twice(pg_root: Path, tmp_path: Path) -> None:
    names = [f"Same{i:02d}" for i in range(20)]
    # Each process writes the same names in another case and order.
    orders = [names, names[::-1], [n.upper() for n in names], [n.lower() for n in names[::-1]]]
    taken = _race(pg_root, tmp_path, orders)
    assert sum(taken) == 3 * 20
    assert db_rows(pg_root, "SELECT count(*) FROM reference") == [(20,)]
    assert db_rows(pg_root, "SELECT count(*) FROM referenceimage") == [(20,)]
