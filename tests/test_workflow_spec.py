"""Workflow files that are wrong are refused by the check, before anything is paid for.

Each error names the file and the key or step; nothing is written to the database (no Run, no
Generation) and nothing reaches the simulator (``submits_received`` stays 0).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import ImageMaker, run_cli
from project_support import generation_and_run_counts, write_workflow

from refstudio import Studio
from refstudio.errors import BudgetExceededError, RefstudioError, WorkflowError
from refstudio.simulator import Simulator, SimulatorConfig


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(latency=0.05, jitter=0.0, seed=3)) as server:
        yield server


@pytest.fixture
def studio(project: Studio, make_image: ImageMaker, sim: Simulator) -> Studio:
    make_image(project.root / "sources" / "mara.png", seed=1)
    make_image(project.root / "sources" / "tavern.png", size=(1600, 900), seed=2)
    project.add_reference("mara", [project.root / "sources" / "mara.png"])
    project.add_reference("tavern", [project.root / "sources" / "tavern.png"], kind="location")
    project.provider_options["wavespeed"] = {"api_key": "k", "base_url": sim.base_url}
    sim.reset_stats()
    return project


GOOD_STEP = '[[step]]\nid = "a"\nprompt = "@mara in @tavern"\n'

# (case id, workflow text, error class, fragments the message must contain)
CASES: list[tuple[str, str, type[RefstudioError], tuple[str, ...]]] = [
    ("unknown-top-level", 'colour = "red"\n' + GOOD_STEP, WorkflowError,
     ("wf.toml", "colour", "unknown key")),
    ("unknown-in-step", GOOD_STEP + "sed = 3\n", WorkflowError,
     ("wf.toml", 'step[0] (id "a")', "sed", "unknown key")),
    ("unknown-in-promote", GOOD_STEP + 'promote = { name = "mara2", pik = "first" }\n',
     WorkflowError, ("wf.toml", 'step[0] (id "a").promote.pik', "unknown key")),
    ("prompt-and-template", GOOD_STEP + 'template = "t"\n', WorkflowError,
     ("wf.toml", 'step "a"', "exactly one of prompt, template")),
    ("neither-prompt-nor-template", '[[step]]\nid = "a"\n', WorkflowError,
     ("wf.toml", 'step "a"', "exactly one of prompt, template")),
    ("duplicate-id", GOOD_STEP + GOOD_STEP, WorkflowError,
     ("wf.toml", 'step id "a" is used twice')),
    ("after-unknown", GOOD_STEP + 'after = ["nope"]\n', WorkflowError,
     ("wf.toml", 'step "a"', 'unknown step "nope"')),
    ("cycle",
     '[[step]]\nid = "one"\nprompt = "@mara with @beta_coat"\npromote = { name = "alpha_hat" }\n'
     '[[step]]\nid = "two"\nprompt = "@mara with @alpha_hat"\npromote = { name = "beta_coat" }\n',
     WorkflowError, ("wf.toml", "one", "two", "cycle")),
    ("unprovided-mention", '[[step]]\nid = "a"\nprompt = "@marra in @tavern"\n', WorkflowError,
     ("wf.toml", 'step "a"', "@marra", "no step promotes it")),
    ("too-many-references",
     '[[step]]\nid = "a"\nprompt = "@mara and @tavern"\npromote = { name = "third" }\n'
     '[[step]]\nid = "b"\nprompt = "@mara @tavern @third @fourth"\n'
     '[[step]]\nid = "c"\nprompt = "@mara"\npromote = { name = "fourth" }\n',
     RefstudioError, ("wf.toml", 'step "b"', "4 references", "at most 3")),
    ("bad-aspect-ratio", GOOD_STEP + 'aspect_ratio = "2:1"\n', WorkflowError,
     ("wf.toml", 'step "a"', "2:1")),
    ("bad-seed", GOOD_STEP + "seed = 0\n", WorkflowError, ("wf.toml", 'step "a"', "seed")),
    ("bad-variants", GOOD_STEP + "variants = 0\n", WorkflowError,
     ("wf.toml", 'step[0] (id "a").variants')),
    ("bad-step-id", '[[step]]\nid = "9lives"\nprompt = "@mara"\n', WorkflowError,
     ("wf.toml", "step[0]", "id")),
    ("bad-toml", "[[step]\nid = 1\n", WorkflowError, ("wf.toml",)),
    ("undefined-variable", '[[step]]\nid = "a"\nprompt = "@mara {{ mood }}"\n', WorkflowError,
     ("wf.toml", 'step "a"', "mood")),
]


@pytest.mark.parametrize(("text", "error", "fragments"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_a_bad_workflow_is_refused_before_anything_is_written_or_sent(
    studio: Studio, sim: Simulator, text: str, error: type[RefstudioError],
    fragments: tuple[str, ...],
) -> None:
    path = write_workflow(studio, text)
    before = generation_and_run_counts(studio.root)
    with pytest.raises(error) as caught:
        studio.run_workflow(path, provider="wavespeed")
    message = str(caught.value.message)
    for fragment in fragments:
        assert fragment in message, message
    with pytest.raises(error):
        studio.plan_workflow(path)
    assert generation_and_run_counts(studio.root) == before
    assert sim.stats()["submits_received"] == 0


def test_an_unprovided_mention_suggests_the_close_names(studio: Studio) -> None:
    path = write_workflow(studio, '[[step]]\nid = "a"\nprompt = "@mara_cot"\n'
                                  '[[step]]\nid = "b"\nprompt = "@mara"\n'
                                  'promote = { name = "mara_coat" }\n')
    with pytest.raises(WorkflowError) as caught:
        studio.plan_workflow(path)
    assert caught.value.hint is not None
    assert "did you mean" in caught.value.hint and "@mara_coat" in caught.value.hint


def test_over_max_cost_is_refused_before_anything_is_written(
    studio: Studio, sim: Simulator
) -> None:
    # 4 x $0.05 at 720p (default prices)
    path = write_workflow(studio, GOOD_STEP + "variants = 4\n")
    before = generation_and_run_counts(studio.root)
    with pytest.raises(BudgetExceededError) as caught:
        studio.run_workflow(path, provider="wavespeed", max_cost=0.01)
    assert "max-cost" in caught.value.message and "nothing was sent" in caught.value.message
    assert generation_and_run_counts(studio.root) == before
    assert sim.stats()["submits_received"] == 0
    # The same plan within the budget is accepted (a dry run writes nothing either).
    report = studio.run_workflow(path, provider="wavespeed", max_cost=100, dry_run=True)
    assert report.status == "planned" and report.estimated_cost > 0.01
    assert generation_and_run_counts(studio.root) == before


def test_a_step_promoting_a_name_waits_for_the_steps_above_that_mention_it(
    studio: Studio,
) -> None:
    path = write_workflow(studio, '[[step]]\nid = "early"\nprompt = "@mara reading"\n'
                                  '[[step]]\nid = "refine"\nprompt = "@tavern"\n'
                                  'promote = { name = "mara" }\n'
                                  '[[step]]\nid = "late"\nprompt = "@mara dancing"\n')
    plan = studio.plan_workflow(path)
    assert plan.step("refine").depends_on == {"early"}
    assert plan.step("late").depends_on == {"refine"}
    assert plan.levels == [["early"], ["refine"], ["late"]]


CLI_CASES = [
    ("unknown-key", GOOD_STEP + "sed = 3\n", 12, "sed"),
    ("too-many-references", CASES[9][1], 7, "at most 3"),
]


@pytest.mark.parametrize(("text", "code", "fragment"), [c[1:] for c in CLI_CASES],
                         ids=[c[0] for c in CLI_CASES])
def test_cli_exit_codes_for_bad_workflows(
    studio: Studio, sim: Simulator, text: str, code: int, fragment: str
) -> None:
    write_workflow(studio, text)
    before = generation_and_run_counts(studio.root)
    done = run_cli("--project", str(studio.root), "run", "wf", "--provider", "wavespeed",
                   env={"WAVESPEED_API_KEY": "k", "WAVESPEED_BASE_URL": sim.base_url})
    assert done.returncode == code, done.stderr
    assert done.stderr.startswith("error:") and "wf.toml" in done.stderr
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr
    assert generation_and_run_counts(studio.root) == before
    assert sim.stats()["submits_received"] == 0


def test_cli_over_max_cost_exits_8(studio: Studio, sim: Simulator) -> None:
    write_workflow(studio, GOOD_STEP + "variants = 2\n")
    done = run_cli("--project", str(studio.root), "run", "wf", "--provider", "wavespeed",
                   "--max-cost", "0.01",
                   env={"WAVESPEED_API_KEY": "k", "WAVESPEED_BASE_URL": sim.base_url})
    assert done.returncode == 8, done.stderr
    assert "max-cost" in done.stderr
    assert generation_and_run_counts(studio.root) == (0, 0)
    assert sim.stats()["submits_received"] == 0


def test_an_unknown_workflow_name_lists_the_ones_there(studio: Studio) -> None:
    write_workflow(studio, GOOD_STEP, name="story.toml")
    with pytest.raises(WorkflowError) as caught:
        studio.run_workflow("stroy", dry_run=True)
    assert "stroy" in caught.value.message
    assert caught.value.hint is not None and "story" in caught.value.hint
