"""Files a user names as output: never overwritten without --force, never the project's own.

`export --out`, `export-image --out` and `gallery --out` (and their Python faces) share one rule
(:func:`refstudio.storage.fsutil.check_output_file` / ``check_output_dir``): an existing file needs
``--force``; ``library.db`` (and its journals), ``refstudio.toml`` and anything under ``media/``
are refused even with it, however the path is spelled; writes go through a temporary file and a
rename, so a failure leaves no half-written file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import encode_image, run_cli, snapshot_project

from refstudio import InputError, StorageError, Studio


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with two references and one offline generation (its output is in media/)."""
    base = tmp_path_factory.mktemp("outputs")
    (base / "mara.png").write_bytes(encode_image((300, 400), seed=1))
    (base / "tavern.png").write_bytes(encode_image((400, 300), seed=2))
    with Studio.init(base / "proj") as studio:
        studio.provider_options["offline"] = {"cache_dir": base / "offline"}
        studio.add_reference("mara", [base / "mara.png"])
        studio.add_reference("tavern", [base / "tavern.png"], kind="location")
        studio.generate("@mara in @tavern", provider="offline", resolution="720p", seed=3)
    return base / "proj"


@pytest.fixture
def proj(built: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the built project (tests write next to it and may damage it)."""
    import shutil

    copy = tmp_path / "proj"
    shutil.copytree(built, copy)
    yield copy


def _state(root: Path) -> tuple[object, ...]:
    """Every file of the project, byte for byte (library dump, media hashes, the rest)."""
    others = {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.relative_to(root).as_posix().startswith("media/")
        and not p.name.startswith("library.db")
    }
    return snapshot_project(root), others


def _one_error(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return stderr.splitlines()


# -- existing files need --force ----------------------------------------------------------------


def test_export_refuses_an_existing_file_without_force(proj: Path, tmp_path: Path) -> None:
    target = tmp_path / "mine.zip"
    target.write_bytes(b"the user's own file")
    before = _state(proj)
    done = run_cli("-p", str(proj), "export", "mara", "--out", str(target))
    assert done.returncode == 4, done.stderr
    lines = _one_error(done.stderr)
    assert "already exists" in lines[0] and "--force" in done.stderr
    assert target.read_bytes() == b"the user's own file"
    assert _state(proj) == before
    done = run_cli("-p", str(proj), "export", "mara", "--out", str(target), "--force")
    assert done.returncode == 0, done.stderr
    assert target.read_bytes()[:2] == b"PK"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_export_image_refuses_an_existing_png_without_force(proj: Path, tmp_path: Path) -> None:
    target = tmp_path / "scene.png"
    mine = encode_image((20, 20), seed=9)
    target.write_bytes(mine)
    done = run_cli("-p", str(proj), "export-image", "1:0", "--out", str(target))
    assert done.returncode == 4, done.stderr
    _one_error(done.stderr)
    assert "--force" in done.stderr
    assert target.read_bytes() == mine
    done = run_cli("-p", str(proj), "export-image", "1:0", "--out", str(target), "--force")
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() != mine


def test_the_python_api_refuses_too(proj: Path, tmp_path: Path) -> None:
    target = tmp_path / "taken.png"
    target.write_bytes(b"keep me")
    with Studio.open(proj) as studio:
        with pytest.raises(InputError, match="already exists"):
            studio.export_image(1, 0, target)
        with pytest.raises(InputError, match="already exists"):
            studio.export_pack(["mara"], target)
        assert target.read_bytes() == b"keep me"
        studio.export_image(1, 0, target, overwrite=True)
        assert target.read_bytes().startswith(b"\x89PNG")


# -- the project's own files: refused even with --force -----------------------------------------


def _protected_targets(proj: Path, outside: Path) -> dict[str, Path]:
    link = outside / "innocent.zip"
    if not link.is_symlink():
        link.symlink_to(proj / "library.db")
    toml_link = outside / "settings.png"
    if not toml_link.is_symlink():
        toml_link.symlink_to(proj / "refstudio.toml")
    media_file = next(p for p in (proj / "media").rglob("*.png"))
    return {
        "library.db": proj / "library.db",
        "wal": proj / "library.db-wal",
        "shm": proj / "library.db-shm",
        "toml": proj / "refstudio.toml",
        "dotdot": proj / "media" / ".." / "library.db",
        "case": proj / "LIBRARY.DB",
        "symlink-db": link,
        "symlink-toml": toml_link,
        "media-new": proj / "media" / "pack.zip",
        "media-existing": media_file,
    }


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("which", ["library.db", "wal", "shm", "toml", "dotdot", "case",
                                   "symlink-db", "media-new"])
def test_export_never_writes_over_the_project(
    proj: Path, tmp_path: Path, which: str, force: bool
) -> None:
    target = _protected_targets(proj, tmp_path)[which]
    before = _state(proj)
    link_before = os.readlink(target) if target.is_symlink() else None
    args = ["-p", str(proj), "export", "mara", "--out", str(target)]
    done = run_cli(*args, *(["--force"] if force else []))
    assert done.returncode == 4, (done.stdout, done.stderr)
    _one_error(done.stderr)
    assert "project" in done.stderr
    assert _state(proj) == before
    assert not (proj / "library.db-wal").exists() or which != "wal"
    if link_before is not None:
        assert os.readlink(target) == link_before


@pytest.mark.parametrize("which", ["toml", "symlink-toml", "media-existing", "dotdot"])
def test_export_image_never_writes_over_the_project(
    proj: Path, tmp_path: Path, which: str
) -> None:
    target = _protected_targets(proj, tmp_path)[which]
    if target.suffix.lower() != ".png":  # export-image wants *.png: try the API spelling too
        with Studio.open(proj) as studio:
            before = _state(proj)
            with pytest.raises(InputError):
                studio.export_image(1, 0, target, overwrite=True)
        assert _state(proj) == before
        return
    before = _state(proj)
    done = run_cli("-p", str(proj), "export-image", "1:0", "--out", str(target), "--force")
    assert done.returncode == 4, (done.stdout, done.stderr)
    _one_error(done.stderr)
    assert _state(proj) == before


def test_the_protected_names_are_refused_by_the_api_with_overwrite(proj: Path) -> None:
    with Studio.open(proj) as studio:
        before = _state(proj)
        for target in (proj / "library.db", proj / "refstudio.toml", proj / "library.db-journal",
                       proj / "media" / "x.zip", proj / "media" / "new" / "deeper.zip"):
            with pytest.raises(InputError, match="project"):
                studio.export_pack(["mara"], target, overwrite=True)
        assert _state(proj) == before


# -- no half-written output ---------------------------------------------------------------------


def test_a_failed_export_leaves_the_old_file_and_no_temporary(proj: Path, tmp_path: Path) -> None:
    target = tmp_path / "pack.zip"
    target.write_bytes(b"previous pack")
    with Studio.open(proj) as studio:
        damaged = Path(studio.reference("tavern").images[0].path)
        damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")
        with pytest.raises(StorageError, match=str(damaged)):
            studio.export_pack(["tavern"], target, overwrite=True)
    assert target.read_bytes() == b"previous pack"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pack.zip", "proj"]


# -- gallery folders ----------------------------------------------------------------------------


def test_gallery_out_refuses_a_folder_of_other_files(proj: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<p>my own home page</p>")
    done = run_cli("-p", str(proj), "gallery", "--out", str(site))
    assert done.returncode == 4, done.stderr
    _one_error(done.stderr)
    assert "--force" in done.stderr
    assert (site / "index.html").read_text() == "<p>my own home page</p>"
    assert sorted(p.name for p in site.iterdir()) == ["index.html"]
    done = run_cli("-p", str(proj), "gallery", "--out", str(site), "--force")
    assert done.returncode == 0, done.stderr
    # A folder the gallery wrote before is its own: rebuilding needs no --force.
    done = run_cli("-p", str(proj), "gallery", "--out", str(site))
    assert done.returncode == 0, done.stderr
    # New and empty folders are fine.
    (tmp_path / "empty").mkdir()
    assert run_cli("-p", str(proj), "gallery", "--out", str(tmp_path / "empty")).returncode == 0


@pytest.mark.parametrize("where", ["root", "media", "media-sub"])
def test_gallery_never_writes_into_the_project_itself_or_media(
    proj: Path, where: str
) -> None:
    out = {"root": proj, "media": proj / "media", "media-sub": proj / "media" / "site"}[where]
    before = _state(proj)
    done = run_cli("-p", str(proj), "gallery", "--out", str(out), "--force")
    assert done.returncode == 4, (done.stdout, done.stderr)
    _one_error(done.stderr)
    assert _state(proj) == before
    assert not (proj / "index.html").exists()


def test_the_demo_never_writes_into_a_folder_of_other_files(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    (folder / "templates").mkdir(parents=True)
    (folder / "templates" / "letter.txt").write_text("dear diary")
    done = run_cli("demo", str(folder))
    assert done.returncode == 4, (done.stdout, done.stderr)
    _one_error(done.stderr)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        "templates", "templates/letter.txt"]
