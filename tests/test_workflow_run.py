"""The example workflows end to end on the simulator, reruns that pay nothing, a changed [vars]
value that re-pays only what changed, and a manual pick that pauses and continues."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli

from refstudio import Studio
from refstudio.app.demo import draw_sources
from refstudio.simulator import Simulator, SimulatorConfig
from refstudio.workflow import RunReport

#: Every test here runs on SQLite and on PostgreSQL (see conftest.backend).
BACKENDS = ("sqlite", "postgresql")

PROJECTS = Path(__file__).resolve().parent.parent / "projects"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(latency=0.15, jitter=0.05, seed=5)) as server:
        yield server


def copy_example(name: str, target: Path) -> Path:
    """An example project in ``target`` with freshly drawn sources, as a user would have it."""
    shutil.copytree(PROJECTS / name, target,
                    ignore=shutil.ignore_patterns("library.db*", "media", "sources"))
    draw_sources(target / "sources")
    return target


def open_on(root: Path, sim: Simulator) -> Studio:
    studio = Studio.open(root)
    studio.provider_options["wavespeed"] = {"api_key": "k", "base_url": sim.base_url}
    return studio


def check_finished_run(studio: Studio, workflow: str, report: RunReport) -> None:
    """All steps completed; promoted references come from the step; dependencies ran first."""
    assert report.status == "completed", report
    assert all(s.status == "completed" for s in report.steps), report
    plan = studio.plan_workflow(workflow)
    by_id = {s.id: s for s in report.steps}
    for planned in plan.steps:
        step = by_id[planned.id]
        gens = [studio.generation(g) for g in step.generation_ids]
        assert len(gens) == len(planned.seeds)
        assert all(g.status == "completed" and g.step_id == planned.id for g in gens)
        assert sorted(g.seed for g in gens) == planned.seeds
        promote = planned.spec.promote
        if promote is not None:
            assert step.promoted == promote.name
            primary = studio.reference(promote.name).primary
            assert primary is not None and primary.source_output_id is not None
            tree = studio.lineage(promote.name)
            node = next(i for i in tree["images"] if i["is_primary"])
            assert node["origin"] == "generation"
            assert node["generation_id"] in step.generation_ids
        for provider in planned.depends_on:
            earlier = [studio.generation(g) for g in by_id[provider].generation_ids]
            first = min(g.created_at for g in gens)
            assert all(e.completed_at is not None and e.completed_at <= first for e in earlier), (
                f"{planned.id} started before {provider} finished")


@pytest.mark.parametrize("name", ["quickstart", "storyboard"])
def test_example_runs_end_to_end_and_a_rerun_pays_nothing(
    name: str, sim: Simulator, tmp_path: Path
) -> None:
    root = copy_example(name, tmp_path / name)
    with open_on(root, sim) as studio:
        before = sim.stats()["submits_accepted"]
        report = studio.run_workflow(name, provider="wavespeed", concurrency=8)
        check_finished_run(studio, name, report)
        paid = sum(s.submitted for s in report.steps)
        assert paid == sum(len(s.seeds) for s in studio.plan_workflow(name).steps)
        assert sim.stats()["submits_accepted"] - before == paid

        received = sim.stats()["submits_received"]
        again = studio.run_workflow(name, provider="wavespeed", concurrency=8)
        assert again.status == "completed"
        assert [s.status for s in again.steps] == ["reused"] * len(again.steps), again
        assert all(s.submitted == 0 and "not paid again" in s.message for s in again.steps)
        assert [s.generation_ids for s in again.steps] == [s.generation_ids for s in report.steps]
        assert sim.stats()["submits_received"] == received


def test_the_storyboard_refinement_keeps_earlier_steps_on_the_original_image(
    sim: Simulator, tmp_path: Path
) -> None:
    """`arrival` promotes into @mara; the steps above it bind @mara as drawn, the one below it
    binds the promoted shot — on the first run and on every rerun."""
    root = copy_example("storyboard", tmp_path / "sb")
    with open_on(root, sim) as studio:
        report = studio.run_workflow("storyboard", provider="wavespeed")
        by_id = {s.id: s for s in report.steps}
        mara = studio.reference("mara")
        original = next(i for i in mara.images if i.source_file is not None)
        assert mara.primary is not None and mara.primary.id != original.id

        def bound(step: str) -> str:
            gen = studio.generation(by_id[step].generation_ids[0])
            return next(b["sha256"] for b in gen.bindings if b["name"].lower() == "mara")

        for step in ("figurine", "comic", "coat", "arrival"):
            assert bound(step) == original.sha256, step
        assert bound("departure") == mara.primary.sha256


def test_changing_a_var_repays_only_the_steps_whose_prompt_changed(
    sim: Simulator, tmp_path: Path
) -> None:
    root = copy_example("quickstart", tmp_path / "qs")
    with open_on(root, sim) as studio:
        first = studio.run_workflow("quickstart", provider="wavespeed")
        assert first.status == "completed"
        studio.add_reference("courtyard", [root / "sources" / "courtyard.png"], kind="location")
        received = sim.stats()["submits_received"]
        report = studio.run_workflow("quickstart", provider="wavespeed",
                                     variables={"place": "courtyard"})
        statuses = {s.id: s.status for s in report.steps}
        # portrait does not use {{ place }}; scene does, and refine does (and binds the newly
        # promoted @mara_hearth).
        assert statuses == {"portrait": "reused", "scene": "completed", "refine": "completed"}
        submitted = {s.id: s.submitted for s in report.steps}
        assert submitted == {"portrait": 0, "scene": 2, "refine": 1}
        assert sim.stats()["submits_received"] - received == 3
        scene = studio.generation(report.steps[1].generation_ids[0])
        assert "courtyard" in scene.prompt
        assert {b["name"] for b in scene.bindings} == {"mara", "courtyard"}


MANUAL = """
[refs.mara]
images = ["../sources/mara.png"]

[[step]]
id = "pose"
prompt = "@mara standing on one leg, arms wide"
variants = 2
seed = 100
promote = { name = "x_pick", kind = "character", pick = "manual" }

[[step]]
id = "scene"
prompt = "@x_pick on a tightrope over a canyon"
seed = 200
"""


def test_a_manual_pick_pauses_and_the_next_run_continues(sim: Simulator, tmp_path: Path) -> None:
    root = tmp_path / "manual"
    Studio.init(root).close()
    draw_sources(root / "sources")
    (root / "workflows").mkdir(exist_ok=True)
    (root / "workflows" / "pick.toml").write_text(MANUAL)
    env = {"WAVESPEED_API_KEY": "k", "WAVESPEED_BASE_URL": sim.base_url}

    received = sim.stats()["submits_received"]
    done = run_cli("--project", str(root), "run", "pick", "--provider", "wavespeed", "--json",
                   env=env)
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)
    assert first["status"] == "paused"
    pose, scene = first["steps"]
    assert pose["status"] == "paused" and pose["submitted"] == 2
    assert "refstudio promote" in pose["message"] and "x_pick" in pose["message"]
    assert scene["status"] == "blocked" and "pose" in scene["message"]
    assert scene["generation_ids"] == []
    assert sim.stats()["submits_received"] - received == 2

    with open_on(root, sim) as studio:
        assert "x_pick" not in [r.name for r in studio.references()]
        chosen = pose["generation_ids"][1]
        studio.promote(chosen, "x_pick")
        received = sim.stats()["submits_received"]
        report = studio.run_workflow("pick", provider="wavespeed")
        assert report.status == "completed"
        pose2, scene2 = report.steps
        assert pose2.status == "reused" and pose2.submitted == 0
        assert pose2.promoted == "x_pick"
        assert scene2.status == "completed" and scene2.submitted == 1
        assert sim.stats()["submits_received"] - received == 1
        gen = studio.generation(scene2.generation_ids[0])
        [binding] = gen.bindings
        assert binding["name"] == "x_pick"
        primary = studio.reference("x_pick").primary
        assert primary is not None and binding["sha256"] == primary.sha256
        node = next(i for i in studio.lineage("x_pick")["images"] if i["is_primary"])
        assert node["generation_id"] == chosen
