"""Importing many images at once: all or nothing, every file on disk before its row commits.

``Studio.add_references`` (and ``ref add`` with many files, and pack import, which share the
store's batch path) write every file first, flush them together, then commit one transaction.
The durability test watches the real ``fsync``/``fdatasync`` calls (it wraps, not replaces
them) and checks each stored file and each folder that gained an entry was flushed before the
database saw the rows.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ImageMaker, file_media_only, media_keys, run_cli, snapshot_project
from sqlalchemy import event

from refstudio import Studio
from refstudio.errors import ImageError, InputError, NameTakenError


def make_batch(make_image: ImageMaker, folder: Path, count: int) -> list[Path]:
    return [make_image(folder / f"img{i:03d}.png", size=(64, 48), seed=i) for i in range(count)]


def test_add_references_creates_each_reference_with_its_files(
    project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    paths = make_batch(make_image, tmp_path / "in", 30)
    specs: list[dict[str, Any]] = [{"name": f"img{i:03d}", "images": [p]}
                                   for i, p in enumerate(paths)]
    # One reference with two images (one of them shared with another reference), and options.
    specs.append({"name": "Scene", "images": [paths[0], paths[1]], "kind": "location",
                  "tags": ["b", "a"], "labels": ["wide", "close"], "description": "a scene"})
    added = project.add_references(specs)
    assert [info.name for info, _ in added] == [s["name"] for s in specs]
    scene, images = added[-1]
    assert scene.kind == "location" and scene.tags == ("a", "b")
    assert scene.description == "a scene"
    assert [i.label for i in scene.images] == ["wide", "close"] and scene.images[0].is_primary
    assert [a.image.label for a in images] == ["wide", "close"]
    for (info, _), path in zip(added, paths, strict=False):
        [image] = info.images
        assert image.is_primary and image.source_file == str(path.resolve())
        assert Path(image.path).read_bytes() == path.read_bytes()
        assert image.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(media_keys(project)) == 30, "each distinct image is stored once"
    tmp = project.root / "media" / ".tmp"
    assert not tmp.is_dir() or not list(tmp.iterdir())
    assert len(project.references()) == 31


@pytest.mark.parametrize(
    ("spoil", "error"),
    [
        (lambda specs, bad: specs.append({"name": "img000", "images": [bad]}), NameTakenError),
        (lambda specs, bad: specs.append({"name": "oldref", "images": [bad]}), NameTakenError),
        (lambda specs, bad: specs.append({"name": "broken", "images": [bad]}), ImageError),
        (lambda specs, bad: specs.append({"name": "onepath", "images": "x.png"}), InputError),
        (lambda specs, bad: specs.append({"name": "1bad", "images": [bad]}), InputError),
    ],
    ids=["twice-in-batch", "exists", "bad-file", "images-not-a-list", "bad-name"],
)
def test_a_bad_item_changes_nothing(
    project: Studio,
    make_image: ImageMaker,
    tmp_path: Path,
    spoil: Callable[[list[dict[str, Any]], Path], None],
    error: type[Exception],
) -> None:
    project.add_reference("oldref", [make_image(tmp_path / "old.png", seed=99)])
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    specs: list[dict[str, Any]] = [{"name": f"img{i:03d}", "images": [p]}
                                   for i, p in enumerate(make_batch(make_image, tmp_path, 5))]
    spoil(specs, bad if error is not NameTakenError else specs[0]["images"][0])
    before = snapshot_project(project.root)
    with pytest.raises(error):
        project.add_references(specs)
    assert snapshot_project(project.root) == before


def test_every_file_and_folder_is_flushed_before_the_rows_commit(
    project: Studio, make_image: ImageMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    media_backend: str,
) -> None:
    file_media_only(media_backend)  # about the folder store's fsyncs
    paths = make_batch(make_image, tmp_path / "in", 12)
    synced: set[tuple[int, int]] = set()  # (device, inode) of each flushed file or folder
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def note(real: Callable[[int], None]) -> Callable[[int], None]:
        def sync(fd: int) -> None:
            real(fd)
            st = os.fstat(fd)
            synced.add((st.st_dev, st.st_ino))
        return sync

    monkeypatch.setattr(os, "fsync", note(real_fsync))
    monkeypatch.setattr(os, "fdatasync", note(real_fdatasync))
    # The database is committed after the files: at that point every file must be flushed.
    flushed_at_commit: list[bool] = []
    media = project.root / "media"

    def all_flushed() -> bool:
        files = [p for p in media.rglob("*") if ".tmp" not in p.parts]
        return bool(files) and all((p.stat().st_dev, p.stat().st_ino) in synced for p in files)

    def on_commit(_conn: Any) -> None:
        flushed_at_commit.append(all_flushed())

    event.listen(project.db.engine, "commit", on_commit)
    try:
        project.add_references([{"name": f"img{i:03d}", "images": [p]}
                                for i, p in enumerate(paths)])
    finally:
        event.remove(project.db.engine, "commit", on_commit)
    assert flushed_at_commit and all(flushed_at_commit), flushed_at_commit
    # Each stored file, each folder that gained an entry (media/ itself: new fan-out folders).
    stored = [p for p in media.rglob("*.png")]
    assert len(stored) == 12
    for path in [*stored, *{p.parent for p in stored}, *{p.parent.parent for p in stored}, media]:
        assert (path.stat().st_dev, path.stat().st_ino) in synced, path


def test_ref_add_with_many_files_and_the_cli_error_path(
    project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    paths = make_batch(make_image, tmp_path / "in", 6)
    done = run_cli("--project", str(project.root), "ref", "add", "sheet",
                   *map(str, paths))
    assert done.returncode == 0, done.stderr
    info = project.reference("sheet")
    assert len(info.images) == 6 and info.images[0].source_file == str(paths[0].resolve())
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    before = snapshot_project(project.root)
    done = run_cli("--project", str(project.root), "ref", "image", "add", "sheet",
                   str(make_image(tmp_path / "new.png", seed=77)), str(bad))
    assert done.returncode == 5 and done.stderr.startswith("error:"), done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot_project(project.root) == before
