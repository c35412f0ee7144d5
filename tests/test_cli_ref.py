"""``refstudio ref …`` from the command line.

Happy paths run in-process with typer's CliRunner (fast); every failure runs as a real
subprocess through ``main()``, because that is where errors become one line and an exit code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ImageMaker, run_cli, snapshot_project, write_bad_image
from typer.testing import CliRunner

from refstudio import (
    ImageError,
    InputError,
    NotFoundError,
    ProjectError,
    Studio,
)
from refstudio.cli import app

REFERENCE_KEYS = {
    "id",
    "name",
    "kind",
    "description",
    "tags",
    "images",
    "created_at",
    "updated_at",
}
IMAGE_KEYS = {
    "id",
    "label",
    "is_primary",
    "position",
    "sha256",
    "path",
    "format",
    "width",
    "height",
    "bytes",
    "source_file",
    "source_output_id",
    "warnings",
}


def invoke(root: Path, *args: str) -> Any:
    """Run a command in-process; fail the test on a non-zero exit."""
    result = CliRunner().invoke(app, ["--project", str(root), *args])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def invoke_json(root: Path, *args: str) -> Any:
    return json.loads(invoke(root, *args, "--json").stdout)


def assert_reference_shape(ref: dict[str, Any]) -> None:
    assert set(ref) == REFERENCE_KEYS
    assert isinstance(ref["id"], int)
    assert isinstance(ref["tags"], list)
    for image in ref["images"]:
        assert set(image) == IMAGE_KEYS
        assert isinstance(image["warnings"], list)
        assert isinstance(image["width"], int) and isinstance(image["is_primary"], bool)


@pytest.fixture
def root(project: Studio) -> Path:
    return project.root


# -- happy paths -------------------------------------------------------------------------------


def test_add_show_list(root: Path, make_image: ImageMaker, tmp_path: Path) -> None:
    front = make_image(tmp_path / "front.png", seed=1)
    side = make_image(tmp_path / "side.jpg", fmt="JPEG", seed=2)
    result = invoke(
        root, "ref", "add", "@Mara", str(front), str(side),
        "--kind", "character", "--description", "red coat",
        "--tag", "hero", "--tag", "act1", "--label", "front", "--label", "side",
    )  # fmt: skip
    assert "Added @Mara (character) with 2 image(s)" in result.stdout

    shown = invoke_json(root, "ref", "show", "mara")
    assert_reference_shape(shown)
    assert shown["name"] == "Mara"
    assert shown["description"] == "red coat"
    assert shown["tags"] == ["act1", "hero"]
    assert [(i["label"], i["format"], i["is_primary"]) for i in shown["images"]] == [
        ("front", "PNG", True),
        ("side", "JPEG", False),
    ]
    assert Path(shown["images"][0]["path"]).read_bytes() == front.read_bytes()

    invoke(root, "ref", "add", "tavern", str(make_image(tmp_path / "t.png", seed=3)),
           "--kind", "location")  # fmt: skip
    listed = invoke_json(root, "ref", "list")
    assert [r["name"] for r in listed] == ["Mara", "tavern"]
    for ref in listed:
        assert_reference_shape(ref)
    assert listed[0] == shown
    assert [r["name"] for r in invoke_json(root, "ref", "list", "--kind", "location")] == ["tavern"]
    assert [r["name"] for r in invoke_json(root, "ref", "list", "--tag", "hero")] == ["Mara"]

    table = invoke(root, "ref", "list").stdout
    assert "@Mara" in table and "@tavern" in table and "2 reference(s)" in table
    human = invoke(root, "ref", "show", "MARA").stdout
    assert "@Mara" in human and "front" in human and "800x1000" in human


def test_list_json_on_an_empty_library(root: Path) -> None:
    assert invoke_json(root, "ref", "list") == []


def test_rename_tag_edit_rm(root: Path, make_image: ImageMaker, tmp_path: Path) -> None:
    invoke(root, "ref", "add", "mara", str(make_image(tmp_path / "m.png")), "--tag", "draft")
    assert invoke_json(root, "ref", "rename", "mara", "@hero")["name"] == "hero"
    tagged = invoke_json(root, "ref", "tag", "hero", "+act1", "+lead", "-draft")
    assert tagged["tags"] == ["act1", "lead"]
    assert "act1, lead" in invoke(root, "ref", "tag", "hero", "-nothing").stdout
    edited = invoke_json(root, "ref", "edit", "hero", "--kind", "style", "--description", "ink")
    assert (edited["kind"], edited["description"]) == ("style", "ink")
    removed = invoke_json(root, "ref", "rm", "hero")
    assert_reference_shape(removed)
    assert removed["name"] == "hero"
    assert invoke_json(root, "ref", "list") == []


def test_image_add_primary_rm(root: Path, make_image: ImageMaker, tmp_path: Path) -> None:
    invoke(root, "ref", "add", "mara", str(make_image(tmp_path / "a.png", seed=1)),
           "--label", "front")  # fmt: skip
    info = invoke_json(
        root, "ref", "image", "add", "mara",
        str(make_image(tmp_path / "b.png", seed=2)), str(make_image(tmp_path / "c.png", seed=3)),
        "--label", "side", "--label", "back",
    )  # fmt: skip
    assert [i["label"] for i in info["images"]] == ["front", "side", "back"]
    info = invoke_json(root, "ref", "image", "primary", "mara", "back")
    assert info["images"][0]["label"] == "back" and info["images"][0]["is_primary"]
    side_id = next(i["id"] for i in info["images"] if i["label"] == "side")
    info = invoke_json(root, "ref", "image", "rm", "mara", f"#{side_id}")
    assert [i["label"] for i in info["images"]] == ["back", "front"]
    info = invoke_json(root, "ref", "image", "rm", "mara", "back")
    assert [(i["label"], i["is_primary"]) for i in info["images"]] == [("front", True)]
    info = invoke_json(
        root, "ref", "image", "add", "mara", str(make_image(tmp_path / "d.png", seed=4)),
        "--label", "new", "--primary",
    )  # fmt: skip
    assert info["images"][0]["label"] == "new"


def test_check_and_add_warnings(root: Path, make_image: ImageMaker, tmp_path: Path) -> None:
    tiny = make_image(tmp_path / "tiny.png", size=(100, 300), seed=5)
    result = CliRunner().invoke(app, ["--project", str(root), "ref", "add", "mara", str(tiny)])
    assert result.exit_code == 0
    assert "warning:" in result.stderr and "tiny.png" in result.stderr
    checked = invoke_json(root, "ref", "check", "mara")
    assert len(checked) == 1
    assert set(checked[0]) == {"image_id", "label", "warnings"}
    codes = " ".join(checked[0]["warnings"]).lower()
    assert "small" in codes and "aspect ratio" in codes
    invoke(root, "ref", "add", "clean", str(make_image(tmp_path / "ok.png", seed=6)))
    assert "no quality warnings" in invoke(root, "ref", "check", "clean").stdout


# -- failures: one line, an exit code, nothing changed -----------------------------------------


@pytest.fixture
def busy(root: Path, make_image: ImageMaker, tmp_path: Path) -> Path:
    """A project holding two references (a failure has something to damage)."""
    with Studio.open(root) as studio:
        studio.add_reference(
            "mara",
            [make_image(tmp_path / "m1.png", seed=1), make_image(tmp_path / "m2.png", seed=2)],
            labels=["front", "side"],
            tags=["hero"],
        )
        studio.add_reference(
            "tavern", [make_image(tmp_path / "t.png", seed=3)], kind="location", labels=["main"]
        )
    return root


def assert_clean_failure(result: Any, code: int) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    assert len(lines[0]) > len("error: ") + 10  # says something
    # One line; at most an indented hint under it.
    assert all(line.startswith("  ") for line in lines[1:]), result.stderr
    assert len(lines) <= 2
    assert result.stdout == ""


Args = Callable[[Path, Path], list[str]]
FAILURES: list[Any] = [
    *(
        pytest.param(
            lambda t, g, k=kind: ["ref", "add", "newref", str(write_bad_image(k, t / f"x.{k}"))],
            ImageError.exit_code,
            id=f"image-{kind}",
        )
        for kind in ("text", "empty", "truncated", "bomb_header", "bomb_real", "ico", "pcx")
    ),
    pytest.param(
        lambda t, g: ["ref", "image", "add", "mara", str(write_bad_image("truncated", t / "x"))],
        ImageError.exit_code,
        id="image-add-truncated",
    ),
    pytest.param(
        lambda t, g: ["ref", "add", "newref", str(g), str(t / "missing.png")],
        ImageError.exit_code,
        id="missing-file",
    ),
    pytest.param(lambda t, g: ["ref", "add", "x", str(g)], InputError.exit_code, id="bad-name"),
    pytest.param(
        lambda t, g: ["ref", "add", "9lives", str(g)], InputError.exit_code, id="bad-name-digit"
    ),
    pytest.param(
        lambda t, g: ["ref", "add", "@MARA", str(g)], InputError.exit_code, id="taken-name"
    ),
    pytest.param(
        lambda t, g: ["ref", "add", "newref", str(g), "--kind", "monster"],
        InputError.exit_code,
        id="bad-kind",
    ),
    pytest.param(
        lambda t, g: ["ref", "rename", "mara", "Tavern"], InputError.exit_code, id="rename-taken"
    ),
    pytest.param(
        lambda t, g: ["ref", "image", "rm", "tavern", "main"],
        InputError.exit_code,
        id="rm-only-image",
    ),
    pytest.param(lambda t, g: ["ref", "tag", "mara", "hero"], InputError.exit_code, id="tag-bare"),
    pytest.param(
        lambda t, g: ["ref", "show", "nobody"], NotFoundError.exit_code, id="show-unknown"
    ),
    pytest.param(lambda t, g: ["ref", "rm", "marra"], NotFoundError.exit_code, id="rm-unknown"),
    pytest.param(
        lambda t, g: ["ref", "image", "add", "nobody", str(g)],
        NotFoundError.exit_code,
        id="image-add-unknown",
    ),
    pytest.param(
        lambda t, g: ["ref", "image", "primary", "mara", "nope"],
        NotFoundError.exit_code,
        id="primary-unknown-image",
    ),
]


@pytest.mark.parametrize(("args", "code"), FAILURES)
def test_failure_is_one_line_and_changes_nothing(
    busy: Path, make_image: ImageMaker, tmp_path: Path, args: Args, code: int
) -> None:
    good = make_image(tmp_path / "in" / "good.png", seed=50)
    argv = args(tmp_path / "in", good)
    before = snapshot_project(busy)
    result = run_cli("--project", str(busy), *argv)
    assert_clean_failure(result, code)
    assert snapshot_project(busy) == before


def test_unknown_reference_suggests(busy: Path) -> None:
    result = run_cli("--project", str(busy), "ref", "show", "@marra")
    assert_clean_failure(result, NotFoundError.exit_code)
    assert "did you mean @mara" in result.stderr


def test_over_the_size_limit(busy: Path, make_image: ImageMaker, tmp_path: Path) -> None:
    toml = busy / "refstudio.toml"
    toml.write_text(toml.read_text().replace("max_image_mb = 20", "max_image_mb = 0.01"))
    big = make_image(tmp_path / "big.png", seed=60)
    before = snapshot_project(busy)
    result = run_cli("--project", str(busy), "ref", "add", "newref", str(big))
    assert_clean_failure(result, ImageError.exit_code)
    assert "limit" in result.stderr and "max_image_mb" in result.stderr
    assert snapshot_project(busy) == before


def test_missing_project(tmp_path: Path, make_image: ImageMaker) -> None:
    good = make_image(tmp_path / "good.png")
    result = run_cli("ref", "add", "mara", str(good), cwd=tmp_path)
    assert_clean_failure(result, ProjectError.exit_code)
    assert "refstudio init" in result.stderr
    assert not (tmp_path / "library.db").exists()


def test_usage_errors_keep_exit_code_2(busy: Path) -> None:
    before = snapshot_project(busy)
    result = run_cli("--project", str(busy), "ref", "add", "mara")  # no image
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    result = run_cli("--project", str(busy), "ref", "frobnicate")
    assert result.returncode == 2
    assert snapshot_project(busy) == before


def test_subprocess_happy_path_prints_json(busy: Path) -> None:
    result = run_cli("--project", str(busy), "ref", "show", "MARA", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert_reference_shape(shown)
    assert shown["name"] == "mara"
    result = run_cli("--project", str(busy), "ref", "list", "--json")
    listed = json.loads(result.stdout)
    assert [r["name"] for r in listed] == ["mara", "tavern"]
    assert listed[0] == shown


def test_user_text_is_not_read_as_markup(
    root: Path, make_image: ImageMaker, tmp_path: Path
) -> None:
    """Descriptions and tags are the user's words: ``[/]`` or ``[bold]`` print as written."""
    photo = make_image(tmp_path / "photo[bold].png", seed=8)
    invoke(root, "ref", "add", "mara", str(photo), "--description", "closing [/] and [red]x",
           "--tag", "[/x]")  # fmt: skip
    listed = invoke(root, "ref", "list").stdout
    assert "closing [/] and [red]x" in listed and "[/x]" in listed
    shown = invoke(root, "ref", "show", "mara").stdout
    assert "closing [/] and [red]x" in shown and "[/x]" in shown and "photo[bold].png" in shown
    assert "[bold]y" in invoke(root, "ref", "tag", "mara", "+[bold]y").stdout
