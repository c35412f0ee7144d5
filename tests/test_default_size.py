"""The project's default size ([defaults] in refstudio.toml) against models that cannot make it:
the model's own default is used and one ``warning:`` line says so (never silent); an explicit
size the model cannot make stays an error (exit 4, nothing sent or stored)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli, snapshot_project

from refstudio import Studio
from refstudio.models import catalog
from refstudio.models.compose import compose
from refstudio.models.sizes import Size
from refstudio.simulator import Simulator

KEY = "sim-key-default-size-0123456789"
#: The ``library`` fixture\'s references (tests/conftest.py).
REFERENCES = ("mara",)


def _set_defaults(root: Path, old: str, new: str) -> None:
    toml = root / "refstudio.toml"
    text = toml.read_text()
    assert old in text
    toml.write_text(text.replace(old, new, 1))


def _size_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if line.startswith("warning:") and "the project's default" in line]


def test_a_default_resolution_the_model_cannot_make_is_said_and_the_model_default_used(
    sim: Simulator, library: Studio
) -> None:
    _set_defaults(library.root, 'resolution = "1080p"', 'resolution = "2k"')
    result = run_cli("gen", "@mara at dusk", "-m", "gen4", "--provider", "wavespeed",
                     cwd=library.root)
    assert result.returncode == 0, result.stderr
    assert _size_warnings(result.stderr) == [
        "warning: gen4 (wavespeed:runwayml/gen4-image) cannot make the project's default "
        "resolution 2k ([defaults] in refstudio.toml); it makes 1920x1080 instead"]
    assert sim.stats()["submits_accepted"] == 1
    [gen] = library.history()
    # The part of the default it can make is kept (16:9); the rest is the model's (1080p),
    # in the body sent and in the image the simulator made from it.
    assert (gen.payload["aspect_ratio"], gen.payload["resolution"]) == ("16:9", "1080p")
    assert (gen.outputs[0].width, gen.outputs[0].height) == (1920, 1080)
    assert gen.cost_estimate == pytest.approx(0.08)  # priced at the size actually made


def test_an_explicit_size_the_model_cannot_make_stays_an_error(
    sim: Simulator, library: Studio
) -> None:
    _set_defaults(library.root, 'resolution = "1080p"', 'resolution = "720p"')
    before = snapshot_project(library.root)
    result = run_cli("gen", "@mara", "-m", "gen4", "--resolution", "2k", "--provider",
                     "wavespeed", cwd=library.root)
    assert result.returncode == 4, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot make resolution 2k" in errors[0]
    assert "Traceback" not in result.stderr and not _size_warnings(result.stderr)
    assert snapshot_project(library.root) == before
    assert sim.stats()["submits_received"] == 0


def test_a_model_without_sizes_says_so_until_the_default_is_taken_out(library: Studio) -> None:
    said = run_cli("render", "@mara", "-m", "nano-banana", cwd=library.root)
    assert said.returncode == 0, said.stderr
    assert _size_warnings(said.stderr) == [
        "warning: nano-banana (wavespeed:google/nano-banana/edit) cannot make the project's "
        "default aspect ratio 16:9 at resolution 1080p ([defaults] in refstudio.toml); it makes "
        "an image the size of its input images instead"]
    kontext = run_cli("render", "@mara", "-m", "kontext-multi", "--json", cwd=library.root)
    assert kontext.returncode == 0, kontext.stderr
    data = json.loads(kontext.stdout)
    assert "the project's default resolution 1080p" in data["warnings"][0]
    assert data["body"]["aspect_ratio"] == "16:9"  # the ratio it can make is kept
    # Lines taken out of [defaults]: refstudio's own fallback is dropped without a word.
    _set_defaults(library.root, 'aspect_ratio = "16:9"\nresolution = "1080p"\n', "")
    quiet = run_cli("render", "@mara", "-m", "nano-banana", cwd=library.root)
    assert quiet.returncode == 0 and not _size_warnings(quiet.stderr), quiet.stderr


def test_a_size_option_chooses_the_size_and_the_default_does_not_apply(library: Studio) -> None:
    _set_defaults(library.root, 'resolution = "1080p"', 'resolution = "720p"')
    with Studio.open(library.root) as studio:  # the settings are read when a project opens
        warned = studio.render("@mara", model="seedream-v4")  # 1280*720: under 1024 a side
        chosen = studio.render("@mara", model="seedream-v4", options={"size": "1024*1536"})
    assert [w for w in warned.warnings if "project's default" in w] == [
        "seedream-v4 (wavespeed:bytedance/seedream-v4/edit) cannot make the project's default "
        "resolution 720p ([defaults] in refstudio.toml); it makes 3641x2048 instead"]
    assert warned.body["size"] == "3641*2048"  # 16:9 kept, at its own default class (2k)
    assert chosen.body["size"] == "1024*1536" and chosen.warnings == ()


def test_compose_names_the_parts_left_out() -> None:
    kontext = catalog.get("kontext-multi")
    composed = compose(kontext, defaults=("16:9", "1080p"))
    assert composed.unmade == Size(None, "1080p")
    assert composed.options.aspect_ratio == "16:9"  # type: ignore[attr-defined]
    assert composed.warning(written=("aspect_ratio",)) is None  # 1080p was not written
    assert compose(kontext, aspect_ratio="1:1", defaults=("16:9", "1080p")).unmade == Size(
        None, "1080p")
    gen4 = catalog.get("gen4")
    assert compose(gen4, defaults=("4:3", "720p")).unmade == Size()
    assert compose(gen4, resolution="720p", defaults=("21:9", "2k")).unmade == Size("21:9")
    # An option for one size field keeps the default for the other (1:1 stays).
    partly = compose(gen4, options={"resolution": "720p"}, defaults=("1:1", "1080p"))
    assert gen4.params(partly.options)["aspect_ratio"] == "1:1" and partly.unmade == Size()


def test_a_workflow_run_says_which_steps_models_cannot_make_the_default(library: Studio,
                                                                        tmp_path: Path) -> None:
    (library.root / "workflows" / "two.toml").write_text(
        '[[step]]\nid = "look"\nprompt = "@mara by the sea"\n'
        'models = ["gen4", "kontext-multi"]\n')
    plan = library.plan_workflow("two")
    assert plan.warnings == [
        'two.toml: step "look": kontext-multi (wavespeed:wavespeed-ai/flux-kontext-pro/multi) '
        "cannot make the project's default resolution 1080p ([defaults] in refstudio.toml); it "
        "makes 1392x752 instead"]
    env = {"REFSTUDIO_OFFLINE_DIR": str(tmp_path / "off")}
    result = run_cli("run", "two", "--provider", "offline", cwd=library.root, env=env)
    assert result.returncode == 0, result.stderr
    assert _size_warnings(result.stderr) == ["warning: " + plan.warnings[0]]
    dry = run_cli("run", "two", "--dry-run", "--json", cwd=library.root, env=env)
    assert json.loads(dry.stdout)["warnings"] == plan.warnings


def test_account_prices_the_size_made_and_says_why(sim: Simulator, library: Studio) -> None:
    _set_defaults(library.root, 'resolution = "1080p"', 'resolution = "2k"')
    result = run_cli("account", "-m", "gen4", "-n", "2", cwd=library.root)
    assert result.returncode == 0, result.stderr
    assert _size_warnings(result.stderr) == [
        "warning: gen4 (wavespeed:runwayml/gen4-image) cannot make the project's default "
        "resolution 2k ([defaults] in refstudio.toml); it makes 1920x1080 instead"]
    data = json.loads(run_cli("account", "-m", "gen4", "--json", cwd=library.root).stdout)
    [entry] = data
    assert entry["estimated_unit_price"] == pytest.approx(0.08)
    assert entry["warnings"] == [_size_warnings(result.stderr)[0].removeprefix("warning: ")]
