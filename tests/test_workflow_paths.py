"""Workflow ``[refs]`` images: found next to the workflow file, and only inside the project.

A workflow file may come from someone else; without a fence it could make the library read (and
an upload send) any file on the disk. Paths outside the project folder (also through ``..`` or a
symlink) are refused by the planner, so ``--dry-run`` refuses too, unless ``--allow-outside``
(``allow_outside=True``) says the user means it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import encode_image, run_cli, snapshot_project

from refstudio import Studio, WorkflowError

WORKFLOW = """
[refs.nora]
images = [{image!r}]

[[step]]
id = "a"
prompt = "@nora by the sea"
"""


@pytest.fixture
def proj(tmp_path: Path) -> Iterator[Path]:
    Studio.init(tmp_path / "proj").close()
    (tmp_path / "outside.png").write_bytes(encode_image((200, 250), seed=1))
    (tmp_path / "proj" / "sources").mkdir()
    (tmp_path / "proj" / "sources" / "nora.png").write_bytes(encode_image((200, 250), seed=2))
    yield tmp_path / "proj"


def _workflow(proj: Path, image: str, where: str = "workflows/wf.toml") -> Path:
    path = proj / where
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(WORKFLOW.format(image=image))
    return path


@pytest.mark.parametrize("image", ["../../outside.png", "{outside}", "../sources/../../outside.png",
                                   "../sources/link.png"])
def test_an_image_outside_the_project_is_refused_before_anything(
    proj: Path, image: str
) -> None:
    outside = proj.parent / "outside.png"
    (proj / "sources" / "link.png").symlink_to(outside)
    wf = _workflow(proj, image.format(outside=outside))
    before = snapshot_project(proj)
    for extra in (["--dry-run"], []):
        done = run_cli("-p", str(proj), "run", str(wf), "--provider", "offline", *extra)
        assert done.returncode == 12, (done.stdout, done.stderr)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "outside the project" in errors[0], done.stderr
        assert "--allow-outside" in done.stderr and "Traceback" not in done.stderr
    assert snapshot_project(proj) == before
    with Studio.open(proj) as studio, pytest.raises(WorkflowError, match="outside the project"):
        studio.plan_workflow(wf)


def test_allow_outside_lets_the_user_mean_it(proj: Path, tmp_path: Path) -> None:
    wf = _workflow(proj, "../../outside.png")
    done = run_cli("-p", str(proj), "run", str(wf), "--provider", "offline", "--allow-outside",
                   env={"REFSTUDIO_OFFLINE_DIR": str(tmp_path / "offline")})
    assert done.returncode == 0, done.stderr
    with Studio.open(proj) as studio:
        assert studio.reference("nora").images[0].source_file == str(proj.parent / "outside.png")
        plan = studio.plan_workflow(wf, allow_outside=True)
        assert [s.id for s in plan.steps] == ["a"]


def test_images_are_found_relative_to_the_workflow_file(proj: Path, tmp_path: Path) -> None:
    # Run from somewhere else entirely: the path is the workflow's, not the working folder's.
    wf = _workflow(proj, "../../sources/nora.png", where="workflows/deep/wf.toml")
    done = run_cli("-p", str(proj), "run", str(wf), "--provider", "offline", cwd=tmp_path,
                   env={"REFSTUDIO_OFFLINE_DIR": str(tmp_path / "offline")})
    assert done.returncode == 0, done.stderr
    with Studio.open(proj) as studio:
        source = studio.reference("nora").images[0].source_file
    assert source == str((proj / "sources" / "nora.png").resolve())
