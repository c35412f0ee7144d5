"""``refstudio render`` and ``Studio.render`` on the seed's usage patterns, and their errors.

Rendering sends nothing and writes nothing: the database and the project folder are compared
before and after every call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gen4_facts as gen4
import pytest
from conftest import ImageMaker, run_cli, snapshot_project

from refstudio import Studio
from refstudio.errors import (
    MentionError,
    ParameterError,
    TemplateError,
    TooManyReferencesError,
)

ENV = {"REFSTUDIO_NO_PROGRESS": "1"}


def _listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.fixture
def studio(project: Studio, make_image: ImageMaker, tmp_path: Path) -> Iterator[Studio]:
    inputs = tmp_path / "in"
    project.add_reference(
        "mara",
        [make_image(inputs / "mara.png", size=(600, 800), seed=1)],
        description="a tall sailor in a red coat",
        tags=["red-coat"],
    )
    project.add_reference(
        "tavern", [make_image(inputs / "tavern.png", size=(800, 600), seed=2)], kind="location"
    )
    project.add_reference(
        "courtyard", [make_image(inputs / "yard.png", size=(800, 600), seed=3)], kind="location"
    )
    project.add_reference("otto", [make_image(inputs / "otto.png", size=(600, 800), seed=4)])
    templates = project.root / "templates"
    (templates / "style.j2").write_text("cinematic still,")
    (templates / "scene.j2").write_text(
        '{% include "style.j2" %} @mara, {{ refs.mara.description }}, in @{{ place }} {{ mood }}\n'
    )
    (templates / "broken.j2").write_text("@mara\n{% if %}\n")
    (templates / "undef.j2").write_text("@mara {{ nope }}")
    (templates / "escape.j2").write_text("{{ ''.__class__.__mro__ }}")
    yield project


@pytest.fixture
def unchanged(studio: Studio) -> Iterator[None]:
    before = (snapshot_project(studio.root), _listing(studio.root), len(studio.history()))
    yield
    after = (snapshot_project(studio.root), _listing(studio.root), len(studio.history()))
    assert after == before


# ---------------------------------------------------------------- the seed's patterns


@pytest.mark.usefixtures("unchanged")
def test_single_reference(studio: Studio) -> None:
    r = studio.render("@mara as a watercolor portrait", provider="wavespeed")
    assert r.prompt == "@mara as a watercolor portrait"
    assert [b.name for b in r.references] == ["mara"]
    assert (r.references[0].width, r.references[0].height) == (600, 800)
    assert r.provider == "wavespeed"
    assert r.body["prompt"] == "@mara as a watercolor portrait"
    assert len(r.body["reference_images"]) == 1
    assert r.body["aspect_ratio"] == gen4.DEFAULT_ASPECT_RATIO
    assert r.body["resolution"] == gen4.DEFAULT_RESOLUTION
    assert r.cost_estimate == pytest.approx(0.08)


@pytest.mark.usefixtures("unchanged")
def test_character_in_location(studio: Studio) -> None:
    r = studio.render(
        "@mara sitting in @tavern with dramatic lighting",
        provider="wavespeed",
        aspect_ratio="9:16",
        resolution="720p",
        seed=12,
    )
    assert [b.name for b in r.references] == ["mara", "tavern"]
    assert len(r.body["reference_images"]) == 2
    assert r.body["reference_images"][0] != r.body["reference_images"][1]
    assert r.body["aspect_ratio"] == "9:16"
    assert r.body["resolution"] == "720p"
    assert r.body["seed"] == 12
    assert r.cost_estimate == pytest.approx(0.05)


@pytest.mark.usefixtures("unchanged")
def test_same_reference_twice_binds_once(studio: Studio) -> None:
    r = studio.render("@mara and @MARA in @tavern", provider="wavespeed")
    assert [b.name for b in r.references] == ["mara", "tavern"]
    assert len(r.body["reference_images"]) == 2


@pytest.mark.usefixtures("unchanged")
def test_scene_without_references(studio: Studio) -> None:
    r = studio.render("show the courtyard from above", provider="wavespeed")
    assert r.references == ()
    assert r.prompt == "show the courtyard from above"
    assert "reference_images" not in r.body
    assert r.body["aspect_ratio"] == gen4.DEFAULT_ASPECT_RATIO


@pytest.mark.usefixtures("unchanged")
def test_template_with_include_refs_and_vars(studio: Studio, tmp_path: Path) -> None:
    vars_file = tmp_path / "vars.toml"
    vars_file.write_text('place = "courtyard"\nmood = "at dusk"\n')
    r = studio.render(
        template="scene", variables={"place": "tavern"}, vars_file=vars_file, provider="wavespeed"
    )
    # --var wins over --vars
    assert r.prompt == "cinematic still, @mara, a tall sailor in a red coat, in @tavern at dusk"
    assert [b.name for b in r.references] == ["mara", "tavern"]
    assert len(r.body["reference_images"]) == 2
    assert r.source == "scene"


@pytest.mark.usefixtures("unchanged")
def test_inline_jinja_builds_mentions(studio: Studio) -> None:
    r = studio.render("@{{ hero }} in @{{ place }}", variables={"hero": "mara", "place": "tavern"})
    assert r.prompt == "@mara in @tavern"
    assert [b.name for b in r.references] == ["mara", "tavern"]


# ---------------------------------------------------------------- errors through the API


@pytest.mark.usefixtures("unchanged")
def test_template_syntax_error_names_file_and_line(studio: Studio) -> None:
    with pytest.raises(TemplateError) as info:
        studio.render(template="broken")
    assert "broken.j2:2" in str(info.value)
    assert info.value.line == 2


@pytest.mark.usefixtures("unchanged")
def test_undefined_variable(studio: Studio) -> None:
    with pytest.raises(TemplateError, match="nope"):
        studio.render(template="undef")
    with pytest.raises(TemplateError, match="undefined"):
        studio.render(template="scene", variables={"place": "tavern"})  # no mood


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("how", ["inline", "file"])
def test_sandbox_escape_is_refused(studio: Studio, how: str) -> None:
    with pytest.raises(TemplateError) as info:
        if how == "inline":
            studio.render("{{ ''.__class__.__mro__ }}")
        else:
            studio.render(template="escape")
    assert "<class" not in str(info.value)
    assert "not allowed" in str(info.value)
    assert "__class__" in str(info.value)


@pytest.mark.usefixtures("unchanged")
def test_missing_template_lists_available(studio: Studio) -> None:
    with pytest.raises(TemplateError) as info:
        studio.render(template="nosuch")
    message = str(info.value)
    assert "nosuch" in message
    for name in ("scene.j2", "style.j2"):
        assert name in message


@pytest.mark.usefixtures("unchanged")
def test_too_many_references_names_all(studio: Studio) -> None:
    with pytest.raises(TooManyReferencesError) as info:
        studio.render("@mara meets @otto in @tavern near @courtyard")
    for name in ("@mara", "@otto", "@tavern", "@courtyard"):
        assert name in str(info.value)


@pytest.mark.usefixtures("unchanged")
def test_unknown_reference_and_bad_params(studio: Studio) -> None:
    with pytest.raises(MentionError, match="marra"):
        studio.render("@marra at sea")
    with pytest.raises(ParameterError, match="16:9"):
        studio.render("@mara", aspect_ratio="21:9")
    with pytest.raises(ParameterError, match="1080p"):
        studio.render("@mara", resolution="4k")


# ---------------------------------------------------------------- the CLI


def render_cli(root: Path, *args: str) -> Any:
    return run_cli("--project", str(root), "render", *args, env=ENV)


@pytest.mark.usefixtures("unchanged")
def test_cli_render_json_patterns(studio: Studio) -> None:
    cases = [
        ("@mara as a watercolor portrait", 1),
        ("@mara in @tavern", 2),
        ("show the courtyard from above", 0),
    ]
    for prompt, count in cases:
        r = render_cli(studio.root, prompt, "--provider", "wavespeed", "--json")
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert data["prompt"] == prompt
        assert len(data["references"]) == count
        assert len(data["body"].get("reference_images", [])) == count
        assert data["body"]["aspect_ratio"] == gen4.DEFAULT_ASPECT_RATIO
        assert data["provider"] == "wavespeed"


@pytest.mark.usefixtures("unchanged")
def test_cli_render_human(studio: Studio) -> None:
    r = render_cli(studio.root, "@mara in @tavern")
    assert r.returncode == 0, r.stderr
    assert "@mara" in r.stdout and "@tavern" in r.stdout
    assert "aspect_ratio" in r.stdout
    r = render_cli(studio.root, "show the courtyard from above")
    assert r.returncode == 0, r.stderr
    assert "no references" in r.stdout


@pytest.mark.usefixtures("unchanged")
def test_cli_render_template_vars(studio: Studio, tmp_path: Path) -> None:
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps({"place": "courtyard", "mood": "in the rain"}))
    r = render_cli(studio.root, "--template", "scene.j2", "--vars", str(vars_file), "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["prompt"] == (
        "cinematic still, @mara, a tall sailor in a red coat, in @courtyard in the rain"
    )
    r = render_cli(
        studio.root,
        "--template",
        "scene",
        "--var",
        "place=tavern",
        "--var",
        "mood=at dawn",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["prompt"].endswith("in @tavern at dawn")


def _cli_fails(root: Path, code: int, *args: str) -> str:
    r = render_cli(root, *args)
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    return r.stderr


@pytest.mark.usefixtures("unchanged")
def test_cli_render_errors(studio: Studio) -> None:
    root = studio.root
    assert "broken.j2:2" in _cli_fails(root, 7, "--template", "broken")
    assert "nope" in _cli_fails(root, 7, "--template", "undef")
    err = _cli_fails(root, 7, "{{ ''.__class__.__mro__ }}")
    assert "<class" not in err
    assert "not allowed" in err
    err = _cli_fails(root, 7, "--template", "nosuch")
    assert "scene.j2" in err and "style.j2" in err
    err = _cli_fails(root, 7, "@mara meets @otto in @tavern near @courtyard")
    for name in ("@mara", "@otto", "@tavern", "@courtyard"):
        assert name in err
    assert "did you mean" in _cli_fails(root, 7, "@marra at sea").lower()
    err = _cli_fails(root, 4, "@mara", "--aspect-ratio", "2:1")
    assert all(a in err for a in gen4.ASPECT_RATIOS)
    _cli_fails(root, 4, "@mara", "--template", "scene")  # both a prompt and a template
