"""Models in workflows (``model`` / ``models`` per step, ``--model`` for the rest), retry on
another model, and libraries written before the model layer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import run_cli, snapshot_project

from refstudio import Studio
from refstudio.errors import WorkflowError
from refstudio.simulator import Simulator

KEY = "sim-key-models-wf-0123456789"
#: The ``library`` fixture\'s references (tests/conftest.py).
REFERENCES = ("mara", "tavern")

WORKFLOW = """
[[step]]
id = "look"
prompt = "@mara reading in @tavern"
models = ["gen4", "nano-banana", "kontext-multi"]
variants = 2
seed = 100
promote = { name = "mara_read", pick = "first" }

[[step]]
id = "after"
prompt = "@mara_read by the fire"
model = "seedream-v4"
"""


def test_a_step_with_several_models_makes_one_generation_per_model_and_variant(
    sim: Simulator, library: Studio
) -> None:
    (library.root / "workflows" / "try.toml").write_text(WORKFLOW)
    plan = library.plan_workflow("try")
    look = plan.step("look")
    assert look.models == ["wavespeed:runwayml/gen4-image", "wavespeed:google/nano-banana/edit",
                           "wavespeed:wavespeed-ai/flux-kontext-pro/multi"]
    dry = library.run_workflow("try", provider="wavespeed", dry_run=True)
    assert dry.estimated_cost == pytest.approx(2 * (0.08 + 0.039 + 0.04) + 0.027)
    report = library.run_workflow("try", provider="wavespeed")
    assert report.status == "completed", report
    steps = {s.id: s for s in report.steps}
    gens = [library.generation(g) for g in steps["look"].generation_ids]
    assert [g.model_id.split(":")[1] for g in gens] == [
        "runwayml/gen4-image", "runwayml/gen4-image", "google/nano-banana/edit",
        "google/nano-banana/edit", "wavespeed-ai/flux-kontext-pro/multi",
        "wavespeed-ai/flux-kontext-pro/multi"]
    assert [g.seed for g in gens] == [100, 101, None, None, 100, 101]
    assert gens[2].prompt == "mara (image 1) reading in tavern (image 2)"
    # promote picks among all of them: the first is the first model's first variant.
    assert steps["look"].promoted == "mara_read"
    [after] = [library.generation(g) for g in steps["after"].generation_ids]
    assert after.model_id == "wavespeed:bytedance/seedream-v4/edit"
    paid = sim.stats()["submits_accepted"]
    again = library.run_workflow("try", provider="wavespeed")
    assert all(s.status == "reused" for s in again.steps)
    assert sim.stats()["submits_accepted"] == paid


def test_workflow_model_errors_are_found_before_anything_is_paid(
    sim: Simulator, library: Studio
) -> None:
    wf = library.root / "workflows" / "bad.toml"
    before = snapshot_project(library.root)
    cases = [
        ('model = "gen5"', "unknown model 'gen5'"),
        ('models = ["gen4", "nano"]', "unknown model 'nano'"),
        ('model = "gen4"\nmodels = ["gen4"]', "model or models, not both"),
        ('model = "nano-banana"\naspect_ratio = "1:1"', "cannot make aspect ratio 1:1"),
        ('model = "kontext-multi"\noptions = { guidance_scale = 50 }', "from 1 to 20"),
    ]
    for extra, words in cases:
        wf.write_text(f'[[step]]\nid = "s"\nprompt = "@mara"\n{extra}\n')
        with pytest.raises(WorkflowError, match=words):
            library.run_workflow("bad", provider="wavespeed")
    wf.write_text('[[step]]\nid = "s"\nprompt = "a quiet harbour"\nmodel = "seedream-v4"\n')
    with pytest.raises(Exception, match="needs at least 1"):
        library.run_workflow("bad", provider="wavespeed")
    wf.unlink()
    assert snapshot_project(library.root) == before
    assert sim.stats()["submits_received"] == 0


def test_run_model_option_sets_the_model_of_steps_naming_none(library: Studio,
                                                             tmp_path: Path) -> None:
    (library.root / "workflows" / "one.toml").write_text(
        '[[step]]\nid = "s"\nprompt = "@mara in @tavern"\n')
    result = run_cli("run", "one", "--model", "kontext-multi", "--json", cwd=library.root,
                     env={"REFSTUDIO_OFFLINE_DIR": str(tmp_path / "off")})
    assert result.returncode == 0, result.stderr
    [gen] = library.history()
    assert gen.model_id == "wavespeed:wavespeed-ai/flux-kontext-pro/multi"
    assert gen.provider == "offline"


def test_retry_on_another_model_sends_the_prompt_as_written(sim: Simulator,
                                                          library: Studio) -> None:
    [first] = library.generate("@mara in @tavern", model="gen4", provider="wavespeed", seed=5)
    other = library.retry(first.id, model="seedream-v4")
    assert other.id != first.id and other.status == "completed"
    assert other.model_id == "wavespeed:bytedance/seedream-v4/edit"
    assert other.prompt == "mara (image 1) in tavern (image 2)" and other.seed == 5
    back = library.retry(other.id, model="gen4")
    assert back.prompt == "@mara in @tavern" and back.model_id == first.model_id


def test_a_library_from_before_the_model_layer_reads_as_gen4(tmp_path: Path) -> None:
    """m004 gives every existing generation the model it was: Gen-4 Image on WaveSpeed. The
    library is the one refstudio 0.1.0 wrote (tests/fixtures/library_0_1_0), kept as it was."""
    root = tmp_path / "old"
    shutil.copytree(Path(__file__).parent / "fixtures" / "library_0_1_0", root)
    studio = Studio.open(root)
    try:
        old = studio.history()
        assert len(old) == 5
        assert {g.model_id for g in old} == {"wavespeed:runwayml/gen4-image"}
        assert studio.history(model="gen4") == old
        assert studio.history(model="nano-banana") == []
    finally:
        studio.close()
