"""``refstudio doctor`` and the warning for a library made anew beside old images.

Damaged projects are damaged for real (bytes changed on disk, files deleted, rows left by an
engine that never ran them) and checked through the real CLI in subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ImageMaker, run_cli, snapshot_project
from test_storage_faults import DAMAGE, one_error, snapshot_files

from refstudio import Studio
from refstudio.app.doctor import STALE_TEMP_SECONDS
from refstudio.storage.migrations import MIGRATIONS


@pytest.fixture
def root(project: Studio, make_image: ImageMaker, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Path:
    """A closed project: @mara (one imported image) and one offline generation (one output)."""
    monkeypatch.setenv("REFSTUDIO_OFFLINE_DIR", str(tmp_path / "offline"))
    project.add_reference("mara", [make_image(tmp_path / "mara.png", size=(400, 500), seed=1)])
    [gen] = project.generate("@mara by the sea", provider="offline", resolution="720p")
    assert gen.status == "completed"
    project.close()
    return project.root


def doctor(root: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = run_cli("--project", str(root), "doctor", "--json", *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def kinds(report: dict[str, Any]) -> list[tuple[str, str, bool]]:
    return sorted((f["kind"], f["severity"], f["fixed"]) for f in report["findings"])


def image_files(root: Path) -> list[Path]:
    media = root / "media"
    return sorted(p for p in media.rglob("*") if p.is_file() and ".tmp" not in p.parts)


def test_a_healthy_project_has_nothing_to_report(root: Path) -> None:
    code, report = doctor(root)
    assert code == 0
    assert report["ok"] is True
    assert report["database"] == "ok"
    # every migration this release ships, applied
    assert report["schema"] == report["schema_known"] == [m.name for m in MIGRATIONS]
    assert report["assets_checked"] == 2
    assert report["findings"] == []
    text = run_cli("--project", str(root), "doctor")
    assert text.returncode == 0 and "everything is in order" in text.stdout


def test_deleted_library_warns_and_doctor_fix_adopts_the_images(root: Path) -> None:
    files = image_files(root)
    assert len(files) == 2
    for name in ("library.db", "library.db-wal", "library.db-shm"):
        (root / name).unlink(missing_ok=True)

    # Before anything makes a new library, doctor says what is wrong and changes nothing.
    before = snapshot_files(root)
    code, report = doctor(root)
    assert code == 13 and report["database"] == "missing"
    assert kinds(report) == [("database", "problem", False),
                             ("orphan-file", "notice", False), ("orphan-file", "notice", False)]
    assert snapshot_files(root) == before

    first = run_cli("--project", str(root), "ref", "list")
    assert first.returncode == 0, first.stderr
    warnings = [ln for ln in first.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1, first.stderr
    assert "media/ holds 2 image file(s)" in warnings[0]
    assert "refstudio doctor" in warnings[0]
    again = run_cli("--project", str(root), "ref", "list")
    assert again.returncode == 0 and "warning:" not in again.stderr  # said once

    code, report = doctor(root)
    assert code == 0  # orphans are worth knowing, not a failure
    orphans = sorted(f["path"] for f in report["findings"] if f["kind"] == "orphan-file")
    assert orphans == [str(p) for p in files]

    code, report = doctor(root, "--fix")
    assert code == 0
    assert kinds(report) == [("orphan-file", "notice", True), ("orphan-file", "notice", True)]
    shown = run_cli("--project", str(root), "ref", "show", "recovered", "--json")
    assert shown.returncode == 0, shown.stderr
    images = json.loads(shown.stdout)["images"]
    assert sorted(i["path"] for i in images) == [str(p) for p in files]
    assert image_files(root) == files  # adopted where they are: nothing copied or moved

    code, report = doctor(root)
    assert (code, report["findings"]) == (0, [])


def test_deleted_library_is_announced_to_python_callers_too(root: Path) -> None:
    (root / "library.db").unlink()
    with Studio.open(root) as studio:
        assert len(studio.notices) == 1
        assert "2 image file(s)" in studio.notices[0]
    with Studio.open(root) as studio:
        assert studio.notices == []


def test_an_empty_media_folder_needs_no_warning(project: Studio) -> None:
    root = project.root
    project.close()
    (root / "library.db").unlink()
    result = run_cli("--project", str(root), "ref", "list")
    assert result.returncode == 0 and "warning:" not in result.stderr


def test_changed_and_missing_files_are_problems_that_fix_leaves_alone(root: Path) -> None:
    changed, missing = image_files(root)
    data = bytearray(changed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    changed.write_bytes(bytes(data))
    missing.unlink()
    before = snapshot_files(root)
    for args in ((), ("--fix",)):
        code, report = doctor(root, *args)
        assert code == 13 and report["ok"] is False
        found = {f["kind"]: f for f in report["findings"]}
        assert set(found) == {"corrupt-file", "missing-file"}
        assert found["corrupt-file"]["path"] == str(changed)
        assert found["missing-file"]["path"] == str(missing)
        assert not any(f["fixed"] for f in report["findings"])
        assert snapshot_files(root) == before
    text = run_cli("--project", str(root), "doctor")
    line = one_error(text, 13)
    assert "2 problem(s)" in line
    assert "no longer match their hash" in text.stdout and "is missing" in text.stdout


def test_fix_removes_only_stale_temporary_files(root: Path) -> None:
    tmp = root / "media" / ".tmp"
    stale, fresh = tmp / "tmpold.part", tmp / "tmpnew.part"
    stale.write_bytes(b"half an image")
    fresh.write_bytes(b"being written now")
    long_ago = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(stale, (long_ago, long_ago))
    code, report = doctor(root)
    assert code == 0 and kinds(report) == [("temp-file", "notice", False)] * 2
    assert stale.exists()
    code, report = doctor(root, "--fix")
    assert code == 0
    fixed = {f["path"]: f["fixed"] for f in report["findings"]}
    assert fixed == {str(stale): True, str(fresh): False}
    assert not stale.exists() and fresh.exists()


def test_work_left_in_flight_is_reported(root: Path) -> None:
    async def leave_pending(studio: Studio) -> int:
        _, requests = studio.prepare_requests("@mara at dusk", resolution="720p")
        async with studio.engine("offline") as engine:
            return engine.record(requests[0], 0.0)  # written ahead, never sent: a stopped run

    with Studio.open(root) as studio:
        gen_id = asyncio.run(leave_pending(studio))
    dump = snapshot_project(root)
    code, report = doctor(root, "--fix")
    assert code == 0
    [finding] = report["findings"]
    assert finding["kind"] == "generation" and not finding["fixed"]
    assert f"generation #{gen_id} is pending" in finding["message"]
    assert "refstudio resume" in finding["message"]
    assert snapshot_project(root) == dump  # --fix never resumes: that may cost money


@pytest.mark.parametrize("fix", [False, True], ids=["check", "fix"])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_doctor_reads_damaged_storage_without_changing_it(
    root: Path, damage: str, fix: bool
) -> None:
    harm, words = DAMAGE[damage]
    harm(root)
    before = snapshot_files(root)
    result = run_cli("--project", str(root), "doctor", *(["--fix"] if fix else []))
    line = one_error(result, 13)
    assert "problem(s)" in line
    assert words in result.stdout
    assert snapshot_files(root) == before
