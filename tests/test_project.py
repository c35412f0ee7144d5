"""Project folders: init, and finding the project from --project, $REFSTUDIO_PROJECT or the cwd."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli

from refstudio import ConfigError, ProjectExistsError, ProjectNotFoundError, Studio
from refstudio.errors import ProjectError


def _names(root: Path) -> list[str]:
    """Names of the references in the project at ``root``, read with raw sqlite3."""
    conn = sqlite3.connect(root / "library.db")
    try:
        return sorted(r[0] for r in conn.execute("SELECT name FROM reference"))
    finally:
        conn.close()


def _init_with_ref(root: Path, name: str, make_image) -> None:
    with Studio.init(root) as studio:
        studio.add_reference(name, [make_image(root.parent / f"{name}.png", seed=len(name))])


def test_init_creates_the_layout(tmp_path: Path) -> None:
    result = run_cli("init", str(tmp_path / "p"), "--json")
    assert result.returncode == 0, result.stderr
    root = tmp_path / "p"
    assert json.loads(result.stdout) == {"project": str(root.resolve())}
    for sub in ("media", "templates", "workflows"):
        assert (root / sub).is_dir()
    assert (root / "refstudio.toml").is_file()
    assert "max_image_mb = 20" in (root / "refstudio.toml").read_text()
    conn = sqlite3.connect(root / "library.db")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    assert {"reference", "referenceimage", "asset", "_migrations"} <= tables
    assert journal == "wal"


def test_init_twice_is_refused(tmp_path: Path) -> None:
    Studio.init(tmp_path / "p").close()
    before = (tmp_path / "p" / "refstudio.toml").read_text()
    with pytest.raises(ProjectExistsError):
        Studio.init(tmp_path / "p")
    result = run_cli("init", str(tmp_path / "p"))
    assert result.returncode == ProjectExistsError.exit_code == 3
    assert result.stderr.startswith("error:")
    assert "already a refstudio project" in result.stderr
    assert (tmp_path / "p" / "refstudio.toml").read_text() == before


def test_open_by_explicit_path(tmp_path: Path, make_image) -> None:
    _init_with_ref(tmp_path / "p", "mara", make_image)
    with Studio.open(tmp_path / "p") as studio:
        assert [r.name for r in studio.references()] == ["mara"]
    result = run_cli("--project", str(tmp_path / "p"), "ref", "list", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r["name"] for r in json.loads(result.stdout)] == ["mara"]


def test_open_from_env_var(tmp_path: Path, make_image, monkeypatch: pytest.MonkeyPatch) -> None:
    _init_with_ref(tmp_path / "p", "mara", make_image)
    monkeypatch.setenv("REFSTUDIO_PROJECT", str(tmp_path / "p"))
    monkeypatch.chdir(tmp_path)
    with Studio.open() as studio:
        assert studio.root == (tmp_path / "p").resolve()
    result = run_cli("ref", "list", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r["name"] for r in json.loads(result.stdout)] == ["mara"]


def test_open_by_walking_up_from_a_subfolder(
    tmp_path: Path, make_image, monkeypatch: pytest.MonkeyPatch
) -> None:
    _init_with_ref(tmp_path / "p", "mara", make_image)
    deep = tmp_path / "p" / "templates" / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    with Studio.open() as studio:
        assert studio.root == (tmp_path / "p").resolve()
    result = run_cli("ref", "add", "tavern", str(make_image(tmp_path / "t.png", seed=3)), cwd=deep)
    assert result.returncode == 0, result.stderr
    assert _names(tmp_path / "p") == ["mara", "tavern"]


def test_precedence_flag_then_env_then_cwd(
    tmp_path: Path, make_image, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("flagged", "envvar", "cwdproj"):
        _init_with_ref(tmp_path / name, name, make_image)
    monkeypatch.chdir(tmp_path / "cwdproj")
    with Studio.open() as studio:
        assert studio.root.name == "cwdproj"
    monkeypatch.setenv("REFSTUDIO_PROJECT", str(tmp_path / "envvar"))
    with Studio.open() as studio:
        assert studio.root.name == "envvar"
    with Studio.open(tmp_path / "flagged") as studio:
        assert studio.root.name == "flagged"

    def listed(*args: str) -> list[str]:
        result = run_cli(*args, "ref", "list", "--json", cwd=tmp_path / "cwdproj")
        assert result.returncode == 0, result.stderr
        return [r["name"] for r in json.loads(result.stdout)]

    assert listed() == ["envvar"]
    assert listed("--project", str(tmp_path / "flagged")) == ["flagged"]


def test_outside_any_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProjectNotFoundError) as info:
        Studio.open()
    assert "refstudio init" in (info.value.hint or "")
    result = run_cli("ref", "list", cwd=tmp_path)
    assert result.returncode == ProjectNotFoundError.exit_code == 3
    assert result.stderr.startswith("error: not inside a refstudio project")
    assert "refstudio init" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("how", ["flag", "env"])
def test_pointing_at_a_folder_that_is_not_a_project(
    tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "empty").mkdir()
    if how == "flag":
        result = run_cli("--project", str(tmp_path / "empty"), "ref", "list", cwd=tmp_path)
    else:
        result = run_cli("ref", "list", cwd=tmp_path, env={"REFSTUDIO_PROJECT": str(tmp_path)})
    assert result.returncode == 3
    assert result.stderr.startswith("error:")
    assert "is not a refstudio project" in result.stderr
    assert "refstudio init" in result.stderr
    assert not (tmp_path / "empty" / "library.db").exists()


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("colour = 'blue'\n", "colour"),
        ("[defaults]\nseed_count = 3\n", "defaults.seed_count"),
    ],
)
def test_unknown_config_key_is_named(tmp_path: Path, extra: str, key: str) -> None:
    Studio.init(tmp_path / "p").close()
    toml = tmp_path / "p" / "refstudio.toml"
    text = toml.read_text()
    defaults = extra.startswith("[defaults]")
    toml.write_text(text.replace("[defaults]\n", extra) if defaults else extra + text)
    with pytest.raises(ConfigError) as info:
        Studio.open(tmp_path / "p")
    assert key in str(info.value)
    assert str(toml) in str(info.value)
    result = run_cli("--project", str(tmp_path / "p"), "ref", "list")
    assert result.returncode == ConfigError.exit_code == 3
    assert result.stderr.startswith("error:")
    assert f"unknown key {key}" in result.stderr


@pytest.mark.parametrize(
    "bad",
    ["max_image_mb = 'big'", "max_image_mb = -1", "name = [", "budget = true"],
)
def test_bad_config_values_are_config_errors(tmp_path: Path, bad: str) -> None:
    Studio.init(tmp_path / "p").close()
    toml = tmp_path / "p" / "refstudio.toml"
    lines = [ln for ln in toml.read_text().splitlines() if not ln.startswith(bad.split()[0])]
    toml.write_text(bad + "\n" + "\n".join(lines) + "\n")
    with pytest.raises(ProjectError):
        Studio.open(tmp_path / "p")


def test_configured_size_limit_is_used(tmp_path: Path) -> None:
    Studio.init(tmp_path / "p").close()
    toml = tmp_path / "p" / "refstudio.toml"
    toml.write_text(toml.read_text().replace("max_image_mb = 20", "max_image_mb = 0.5"))
    with Studio.open(tmp_path / "p") as studio:
        assert studio.project.config.max_image_bytes == 500_000


@pytest.mark.parametrize("bad", ["poll_lag = 0", "poll_lag = 0.01", "poll_lag = 600",
                                 "poll_lag = 'fast'", "poll_lag = -1"])
def test_poll_lag_out_of_range_is_refused(tmp_path: Path, bad: str) -> None:
    Studio.init(tmp_path / "p").close()
    toml = tmp_path / "p" / "refstudio.toml"
    toml.write_text(bad + "\n" + toml.read_text())
    with pytest.raises(ConfigError) as info:
        Studio.open(tmp_path / "p")
    assert "poll_lag" in str(info.value)


def test_poll_lag_reaches_the_engine(tmp_path: Path) -> None:
    Studio.init(tmp_path / "p").close()
    toml = tmp_path / "p" / "refstudio.toml"
    toml.write_text(toml.read_text().replace("# poll_lag = 0.5", "poll_lag = 0.5"))
    Studio.init(tmp_path / "q").close()  # left as written: the engine picks its own lag

    async def target_lag(studio: Studio) -> float | None:
        async with studio.engine("offline") as engine:
            return engine.settings.target_lag

    with Studio.open(tmp_path / "p") as configured, Studio.open(tmp_path / "q") as default:
        assert configured.project.config.poll_lag == 0.5
        assert asyncio.run(target_lag(configured)) == 0.5
        assert asyncio.run(target_lag(default)) is None
