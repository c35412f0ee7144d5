"""Shared fixtures: a clean environment, real images drawn with Pillow, an initialised project.

Keep this file small and generic; fixtures used by one test module belong in that module.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import secrets
import signal
import sqlite3
import subprocess
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cli_forkserver
import pytest
from PIL import Image, ImageDraw
from sqlalchemy.pool import NullPool

from refstudio import Studio
from refstudio.simulator import Simulator, SimulatorConfig

ImageMaker = Callable[..., Path]

#: Every kind of bad image file :func:`write_bad_image` can make.
BAD_IMAGE_KINDS = ("text", "empty", "truncated", "bomb_header", "bomb_real", "ico", "pcx")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory,
               media_backend: str) -> None:
    """No test sees the developer's keys, project or config: drop WAVESPEED_*/REFSTUDIO_* and
    point HOME, XDG_CONFIG_HOME and XDG_CACHE_HOME (the account slots' lock files) at a fresh
    temporary folder. On the S3 media backend the test gets a bucket prefix of its own (see
    :func:`open_with_media`)."""
    for key in list(os.environ):
        if key.startswith(("WAVESPEED_", "REFSTUDIO_")) and key != "REFSTUDIO_MEDIA_URL":
            monkeypatch.delenv(key, raising=False)
    if media_backend == "s3":
        from s3support import new_media_url

        monkeypatch.setenv("REFSTUDIO_MEDIA_URL", new_media_url())
    else:
        monkeypatch.delenv("REFSTUDIO_MEDIA_URL", raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))


def draw_image(
    size: tuple[int, int] = (800, 1000), seed: int = 0, mode: str = "RGB"
) -> Image.Image:
    """A deterministic, non-flat picture: a gradient, a few shapes and some pixel noise."""
    rng = random.Random(seed)
    width, height = size
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    tint = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    img = Image.blend(img, tint, 0.5)
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.randrange(max(1, width)), rng.randrange(max(1, height))
        x1 = min(width, x0 + rng.randrange(max(2, width // 3)) + 1)
        y1 = min(height, y0 + rng.randrange(max(2, height // 3)) + 1)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=colour, outline=(0, 0, 0), width=3)
    noise = Image.frombytes("L", size, rng.randbytes(width * height)).convert("RGB")
    img = Image.blend(img, noise, 0.12)
    return img.convert(mode) if mode != "RGB" else img


_ENCODED: dict[tuple[object, ...], bytes] = {}


def encode_image(
    size: tuple[int, int] = (800, 1000), fmt: str = "PNG", seed: int = 0, **save_kwargs: object
) -> bytes:
    """The bytes of :func:`draw_image` saved as ``fmt``; memoised, since noisy PNGs are slow to
    compress. PNGs default to ``compress_level=1`` for the same reason."""
    fmt = fmt.upper()
    if fmt == "PNG":
        save_kwargs.setdefault("compress_level", 1)
    key = (size, fmt, seed, tuple(sorted(save_kwargs.items())))
    if key not in _ENCODED:
        img = draw_image(size, seed)
        if fmt == "GIF":
            img = img.convert("P", palette=Image.Palette.ADAPTIVE)
        buf = io.BytesIO()
        img.save(buf, fmt, **save_kwargs)
        _ENCODED[key] = buf.getvalue()
    return _ENCODED[key]


@pytest.fixture
def make_image() -> ImageMaker:
    """``make_image(path, size=(800, 1000), fmt="PNG", seed=0, **save_kwargs) -> path``.

    Writes a real image file (same arguments give the same bytes, different seeds different
    ones) and returns its path.
    """

    def make(
        path: Path | str,
        size: tuple[int, int] = (800, 1000),
        fmt: str = "PNG",
        seed: int = 0,
        **save_kwargs: object,
    ) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_image(size, fmt, seed, **save_kwargs))
        return path

    return make


# -- media backends ----------------------------------------------------------------------------
#: Test modules that run on both media stores: the folder (``file:``) and an S3 bucket on a
#: real S3-protocol server (moto's, on 127.0.0.1). The Studio reads REFSTUDIO_MEDIA_URL, so the
#: same tests, subprocess CLI calls included, run unchanged against either.
BOTH_MEDIA_BACKENDS = {
    "test_library", "test_loop", "test_packs", "test_cli_loop", "test_workflow_run",
    "test_provenance", "test_batch_import", "test_media_store",
}




@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[Any]:
    """moto's S3 server for this test process (one per xdist worker)."""
    from s3support import start_endpoint

    endpoint = start_endpoint()
    try:
        yield endpoint
    finally:
        endpoint.server.stop()


@pytest.fixture(scope="module", autouse=True)
def media_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """``file`` (every module), or ``s3`` for the modules in BOTH_MEDIA_BACKENDS: then AWS_*
    reach moto and REFSTUDIO_MEDIA_URL names a prefix of the test bucket, one per module here
    (for module-scoped projects; a module fixture that builds one must request this fixture)
    and a fresh one per test in ``_clean_env``."""
    backend = str(getattr(request, "param", "file"))
    if backend != "s3":
        yield backend
        return
    from s3support import new_media_url

    endpoint = request.getfixturevalue("s3_endpoint")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in endpoint.env().items():
            patch.setenv(key, value)
        patch.setenv("REFSTUDIO_MEDIA_URL", new_media_url())
        yield backend


def open_with_media(root: Path, media_url: str | None) -> Studio:
    """Open a project built under another REFSTUDIO_MEDIA_URL (a module-scoped project on the
    S3 backend lives in the module's prefix, each test in a prefix of its own)."""
    with pytest.MonkeyPatch.context() as patch:
        if media_url:
            patch.setenv("REFSTUDIO_MEDIA_URL", media_url)
        return Studio.open(root)


def file_media_only(backend: str) -> None:
    """For a test about the media *folder* itself (its files, permissions, a full disk)."""
    if backend != "file":
        pytest.skip("about the media folder; the S3 store has its own tests "
                    "(tests/test_media_store.py)")


def media_stored(location: str) -> bool:
    """Whether a stored image's ``path`` as JSON shows it (a file, or an ``s3://`` object)
    exists."""
    if not location.startswith("s3://"):
        return Path(location).is_file()
    import boto3

    bucket, _, key = location[len("s3://"):].partition("/")
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    return client.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0


def media_keys(studio: Studio) -> list[str]:
    """Every blob key in the studio's media store, whichever backend."""
    return sorted(studio.store.keys())


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Studio]:
    """An initialised, open Studio in ``tmp_path / "proj"``; closed after the test."""
    studio = Studio.init(tmp_path / "proj")
    try:
        yield studio
    finally:
        studio.close()


def run_cli(
    *args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None,
    timeout: float = 120, input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m refstudio ARGS`` as a process of its own (through ``main()``'s error
    mapping), forked from a server that has already imported refstudio (tests/cli_forkserver.py:
    the imports were most of the suite's time). Its stdin is ``input``, or empty."""
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("COLUMNS", "200")  # keep rich tables from wrapping in assertions
    return cli_forkserver.run(list(args), cwd, full_env, timeout, input=input)


def snapshot_project(root: Path) -> tuple[dict[str, str], list[str]]:
    """What a failed command must not change: sha256 of every file (and each folder) under
    ``media/`` (and every object, when REFSTUDIO_MEDIA_URL names an S3 store), and every row
    of the library, on whichever database it lives."""
    media = root / "media"
    files: dict[str, str] = {}
    for item in sorted(media.rglob("*")):
        rel = item.relative_to(media).as_posix()
        files[rel] = hashlib.sha256(item.read_bytes()).hexdigest() if item.is_file() else "<dir>"
    media_url = os.environ.get("REFSTUDIO_MEDIA_URL", "")
    if media_url.startswith("s3://"):
        from s3support import stored_objects

        for key, sha in stored_objects(os.environ["AWS_ENDPOINT_URL"], media_url).items():
            files[f"s3:{key}"] = sha
    return files, dump_library(root)


def library_url(root: Path) -> Any:
    """The database URL of the project at ``root`` as refstudio would choose it, read without
    checking the rest of its refstudio.toml (tests break that file on purpose)."""
    import re

    from refstudio.storage.dburl import default_url, parse_database_url

    text = os.environ.get("REFSTUDIO_DATABASE_URL")
    if not text:
        found = re.search(r'^database_url\s*=\s*"([^"]*)"', (root / "refstudio.toml").read_text(),
                          re.MULTILINE)
        text = found.group(1) if found else None
    if not text:
        return default_url(root)
    return parse_database_url(text, root=root, source="test", allow_password=True)


def dump_library(root: Path) -> list[str]:
    """Every table's rows, in a stable order, as text (a library's whole state)."""
    from sqlalchemy import inspect, text

    from refstudio.storage.database import Database

    url = library_url(root)
    if url.get_backend_name() == "sqlite":
        # A plain connection, as refstudio's own pragmas (WAL, checkpoints) must not touch the
        # file a test compares byte for byte.
        conn = sqlite3.connect(url.database)
        try:
            return list(conn.iterdump())
        finally:
            conn.close()
    db = Database(url)
    dump: list[str] = []
    try:
        with db.engine.connect() as conn:
            for table in sorted(inspect(conn).get_table_names()):
                dump.append(f"-- {table}")
                rows = conn.execute(text(f'SELECT * FROM "{table}"')).all()
                dump.extend(sorted(repr(tuple(r)) for r in rows))
    finally:
        db.dispose()
    return dump


def _patch_png_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite a PNG's IHDR width/height and recompute the chunk CRC (a header-only bomb)."""
    assert data[12:16] == b"IHDR"
    ihdr = data[16:29]
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + ihdr[8:]
    crc = zlib.crc32(b"IHDR" + ihdr).to_bytes(4, "big")
    return data[:16] + ihdr + crc + data[33:]


def write_bad_image(kind: str, path: Path) -> Path:
    """Write a file the library must refuse (see :data:`BAD_IMAGE_KINDS`) and return its path.

    ``bomb_header`` is a real 1x1 PNG whose header claims 100000x100000 pixels;
    ``bomb_real`` is a genuine 8200x8200 bilevel PNG (a few KB, 67 Mpx: over the pixel limit).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "text":
        path.write_text("this is not an image, just some words\n" * 20)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        draw_image((300, 300), seed=7).save(path, "PNG")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    elif kind == "bomb_header":
        Image.new("RGB", (1, 1), (200, 10, 10)).save(path, "PNG")
        path.write_bytes(_patch_png_size(path.read_bytes(), 100_000, 100_000))
    elif kind == "bomb_real":
        Image.new("1", (8200, 8200), 1).save(path, "PNG")
    elif kind == "ico":
        draw_image((64, 64), seed=8).save(path, "ICO")
    elif kind == "pcx":
        draw_image((300, 300), seed=9).save(path, "PCX")
    else:  # pragma: no cover - a typo in a test
        raise ValueError(kind)
    return path


@pytest.fixture
def make_sim(request: pytest.FixtureRequest) -> Iterator[Callable[..., Simulator]]:
    """Start simulators; all are stopped at the end of the test.

    Settings: no jitter, then the test module's ``SIM_DEFAULTS``, then the call's keywords.
    """
    defaults = {"jitter": 0.0, **getattr(request.module, "SIM_DEFAULTS", {})}
    started: list[Simulator] = []

    def make(**kwargs: Any) -> Simulator:
        sim = Simulator(SimulatorConfig(**{**defaults, **kwargs})).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


# -- the database backends -------------------------------------------------------------------
#
# A test module opts in to running every test on both databases with
# ``BACKENDS = ("sqlite", "postgresql")``. On PostgreSQL each test gets a database name prefix
# of its own (``rs_<random>_``), and every project it opens gets its own fresh database under
# that prefix (``REFSTUDIO_DATABASE_URL`` with ``{project}``, created on first use); all are
# dropped after the test. Random names keep pytest-xdist workers apart.

PG_ADMIN_URL = os.environ.get("REFSTUDIO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
#: Read at import: the autouse fixture below clears REFSTUDIO_* from each test's environment.
REQUIRE_PG = os.environ.get("REFSTUDIO_REQUIRE_PG") == "1"
_PG_STATE: dict[str, str | None] = {}


def pg_admin() -> Any:
    """An engine on the test server's ``postgres`` database, as its superuser (AUTOCOMMIT)."""
    from sqlalchemy import create_engine

    url = PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    return create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool,
                         connect_args={"connect_timeout": 5})


def pg_unavailable() -> str | None:
    """Why PostgreSQL cannot be used for tests here, or None when it can (checked once)."""
    if "reason" not in _PG_STATE:
        try:
            engine = pg_admin()
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            engine.dispose()
            _PG_STATE["reason"] = None
        except Exception as exc:  # no driver, no server: the reason is shown in the skip
            _PG_STATE["reason"] = f"PostgreSQL at {PG_ADMIN_URL} unavailable: {exc}".splitlines()[0]
    return _PG_STATE["reason"]


def require_pg() -> None:
    """Skip without PostgreSQL, except under REFSTUDIO_REQUIRE_PG=1 (CI), where it fails."""
    reason = pg_unavailable()
    if reason is None:
        return
    if REQUIRE_PG:
        pytest.fail(f"{reason} (REFSTUDIO_REQUIRE_PG=1)")
    pytest.skip(reason)


def drop_pg_databases(prefix: str) -> None:
    engine = pg_admin()
    try:
        with engine.connect() as conn:
            names = [r[0] for r in conn.exec_driver_sql(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",))]
            for name in names:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()


@contextlib.contextmanager
def pg_prefix() -> Iterator[str]:
    """A fresh database-name prefix; every database under it is dropped afterwards."""
    require_pg()
    prefix = f"rs_{secrets.token_hex(5)}_"
    try:
        yield prefix
    finally:
        drop_pg_databases(prefix)


def pg_url(database: str) -> str:
    """The test server's URL for ``database``."""
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (its URL), dropped after the test."""
    with pg_prefix() as prefix:
        name = prefix + "db"
        engine = pg_admin()
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            engine.dispose()
        yield pg_url(name)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` runs two workers per core: most tests now wait (on simulated tasks, leases,
    polls) more than they compute, since the CLI runs they start are forked rather than
    imported afresh. On the 2-core machine: 407 s with 4 workers, 590 s with 2, same CPU time.
    PYTEST_XDIST_AUTO_NUM_WORKERS still sets the number outright."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    return 2 * len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the CLI processes the tests start, however the suite itself was started.

    A shell without job control starts a background command (``pytest ... &``) with SIGINT
    ignored; every process it starts inherits that, and Python leaves an ignored SIGINT
    ignored, so the tests that interrupt a ``refstudio gen`` saw it finish instead. A Python
    handler here is reset to the default in each process started from this one.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    media = "media_backend" in metafunc.fixturenames and module in BOTH_MEDIA_BACKENDS
    backends = getattr(metafunc.module, "BACKENDS", None)
    databases = bool(backends) and "backend" in metafunc.fixturenames
    if media and databases:
        # A module on both media stores and both databases runs the two set-ups people use:
        # one machine (SQLite + a folder) and a team (PostgreSQL + S3). The crossed pairings are
        # covered by modules that vary one alone (test_cli_loop, test_provenance, test_batch_import
        # on S3 with SQLite; test_budget, test_database, test_machines on PostgreSQL with a
        # folder); crossing them here doubled the suite's slowest modules again.
        metafunc.parametrize(["backend", "media_backend"],
                             [("sqlite", "file"), ("postgresql", "s3")],
                             indirect=True, ids=["local", "team"])
    elif media:
        metafunc.parametrize("media_backend", ["file", "s3"], indirect=True, scope="module")
    elif databases:
        metafunc.parametrize("backend", backends, indirect=True)
    if "db_url" in metafunc.fixturenames:
        metafunc.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(autouse=True)
def backend(request: pytest.FixtureRequest, _clean_env: None,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The database this test's projects use: ``sqlite`` (each project's library.db) unless
    the module asks for both (``BACKENDS``); on ``postgresql`` every project opened gets a
    fresh database of its own through ``REFSTUDIO_DATABASE_URL``."""
    name = getattr(request, "param", "sqlite")
    if name == "sqlite":
        yield name
        return
    with pg_prefix() as prefix:
        monkeypatch.setenv("REFSTUDIO_DATABASE_URL", pg_url(prefix + "{project}"))
        yield name


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for one library, on each backend in turn: a SQLite file in
    ``tmp_path``, or a fresh PostgreSQL database (dropped after the test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    with pg_prefix() as prefix:
        yield pg_url(prefix + "db")


def db_rows(root: Path, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """Run ``sql`` (SQLAlchemy ``:name`` parameters) on the library of the project at ``root``,
    whichever database it lives in."""
    from sqlalchemy import text

    from refstudio.storage.database import Database

    db = Database(library_url(root))
    try:
        with db.engine.begin() as conn:
            result = conn.execute(text(sql), params or {})
            return [tuple(r) for r in result.all()] if result.returns_rows else []
    finally:
        db.dispose()


# -- a simulator named as WaveSpeed in the environment, and a first library -----------------

@pytest.fixture
def sim(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> Iterator[Simulator]:
    """A simulator taking the test module's ``KEY`` (latency 0.05 s, no jitter), named as
    WaveSpeed the way a user does it (``WAVESPEED_API_KEY``/``WAVESPEED_BASE_URL``); offline
    previews go to ``tmp_path / "offline"``. Modules with a ``sim`` of their own use theirs."""
    from project_support import wavespeed_from_env

    with wavespeed_from_env(monkeypatch, request.module.KEY, latency=0.05,
                            offline_dir=tmp_path / "offline") as server:
        yield server


@pytest.fixture
def library(request: pytest.FixtureRequest, project: Studio, make_image: ImageMaker,
            tmp_path: Path) -> Studio:
    """``project`` with one reference per name in the module's ``REFERENCES``, each one image
    (of ``REFERENCE_SIZE`` when the module sets it)."""
    from project_support import add_references

    size = getattr(request.module, "REFERENCE_SIZE", None)
    return add_references(project, make_image, tmp_path, request.module.REFERENCES,
                          **({"size": size} if size else {}))
