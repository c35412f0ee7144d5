"""Workflow mistakes are caught by the planner, before anything is paid for.

Each case below used to pass ``--dry-run``, and a real run bought the images of the steps before
the mistake showed up (a promotion that could not be made, a pick beyond the outputs, a mention
nothing could bind). Now the plan refuses them: ``run`` and ``run --dry-run`` fail the same way,
no Run or Generation row is written, and the simulator receives no request.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import ImageMaker, run_cli
from project_support import generation_and_run_counts, write_workflow

from refstudio import Studio
from refstudio.errors import WorkflowError
from refstudio.simulator import Simulator, SimulatorConfig


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(latency=0.05, jitter=0.0, seed=4)) as server:
        yield server


@pytest.fixture
def studio(project: Studio, make_image: ImageMaker, sim: Simulator) -> Studio:
    sources = project.root / "sources"
    make_image(sources / "mara.png", seed=1)
    make_image(sources / "mara_side.png", seed=3)
    make_image(sources / "tavern.png", size=(1600, 900), seed=2)
    project.add_reference(
        "mara", [sources / "mara.png", sources / "mara_side.png"], labels=[None, "side"]
    )
    project.add_reference("tavern", [sources / "tavern.png"], kind="location")
    project.provider_options["wavespeed"] = {"api_key": "k", "base_url": sim.base_url}
    sim.reset_stats()
    return project


# A paid step first, so a mistake found only at run time would come after paying for it.
PAID = '[[step]]\nid = "first"\nprompt = "@mara in @tavern"\nvariants = 2\n'


def step(body: str, step_id: str = "later") -> str:
    return f'[[step]]\nid = "{step_id}"\n{body}\n'


# (case id, workflow text, fragments the message must contain)
CASES: list[tuple[str, str, tuple[str, ...]]] = [
    ("promote-name-too-short", PAID + step('prompt = "@mara"\npromote = { name = "mc" }'),
     ('step "later": promote', "invalid reference name 'mc'", "3-16 characters")),
    ("promote-name-bad-character",
     PAID + step('prompt = "@mara"\npromote = { name = "mara-coat" }'),
     ('step "later": promote', "invalid reference name 'mara-coat'")),
    ("promote-name-digit-first", PAID + step('prompt = "@mara"\npromote = { name = "9lives" }'),
     ("invalid reference name '9lives'",)),
    ("promote-kind", PAID + step('prompt = "@mara"\npromote = { name = "mara_coat", '
                                 'kind = "animal" }'),
     ('step "later": promote', "unknown kind 'animal'")),
    ("promote-label", PAID + step('prompt = "@mara"\npromote = { name = "mara_coat", '
                                  'label = "bad label" }'),
     ('step "later": promote', "invalid label 'bad label'")),
    ("keep-primary-without-label",
     PAID + step('prompt = "@mara"\npromote = { name = "mara", keep_primary = true }'),
     ('step "later": promote', "keep_primary", "label")),
    ("keep-primary-after-an-earlier-promotion",
     PAID + step('prompt = "@mara"\npromote = { name = "mara_coat" }', "one")
     + step('prompt = "@tavern"\npromote = { name = "mara_coat", keep_primary = true }', "two"),
     ('step "two": promote', "keep_primary", "@mara_coat", "label")),
    ("pick-beyond-variants",
     PAID + step('prompt = "@mara"\nvariants = 2\npromote = { name = "mara_coat", pick = 7 }'),
     ('step "later": promote', "pick = 7", "2 variant(s)", "0 to 1")),
    ("pick-just-beyond",
     PAID + step('prompt = "@mara"\nvariants = 2\npromote = { name = "mara_coat", pick = 2 }'),
     ("pick = 2", "2 variant(s)")),
    ("pick-beyond-one-variant",
     PAID + step('prompt = "@mara"\npromote = { name = "mara_coat", pick = 1 }'),
     ("pick = 1", "1 variant(s)")),
    ("mentions-what-it-promotes",
     PAID + step('prompt = "@mara_coat on a mannequin"\npromote = { name = "mara_coat" }'),
     ('step "later"', "@mara_coat", "only this step itself promotes")),
    ("label-already-on-reference",
     PAID + step('prompt = "@mara turning"\n'
                 'promote = { name = "mara", label = "side", keep_primary = true }'),
     ('step "later": promote', "@mara already has an image labelled 'side'")),
    ("same-label-twice",
     PAID + step('prompt = "@mara"\npromote = { name = "mara_coat", label = "front" }', "one")
     + step('prompt = "@tavern"\npromote = { name = "mara_coat", label = "front" }', "two"),
     ('step "two": promote', 'step "one" already promotes', "'front'", "@mara_coat")),
    ("unknown-label", PAID + step('prompt = "@mara:back in @tavern"'),
     ('step "later"', "no image labelled 'back'", "side")),
    ("unknown-label-after-promotion",
     PAID + step('prompt = "@tavern"\npromote = { name = "mara_coat", label = "front" }', "coat")
     + step('prompt = "@mara wearing @mara_coat:back"'),
     ('step "later"', "@mara_coat", "no image labelled 'back'", "front")),
    ("two-images-of-one-reference", PAID + step('prompt = "@mara and @mara:side"'),
     ('step "later"', "@mara", "@mara:side", "two different images")),
    ("label-on-a-workflow-ref",
     '[refs.hero]\nimages = ["../sources/mara.png"]\n' + PAID
     + step('prompt = "@hero:side at dusk"'),
     ('step "later"', "@hero", "no image labelled 'side'")),
    ("refs-bad-name", '[refs.x]\nimages = ["../sources/mara.png"]\n' + PAID,
     ("refs.x", "invalid reference name 'x'")),
    ("refs-bad-kind", '[refs.hero]\nimages = ["../sources/mara.png"]\nkind = "animal"\n' + PAID,
     ("refs.hero", "unknown kind 'animal'")),
    ("step-provider-not-the-run's", PAID + step('prompt = "@mara"\nprovider = "offline"'),
     ('step "later"', 'provider = "offline"', 'this run uses "wavespeed"')),
    ("refs-bad-tag", '[refs.hero]\nimages = ["../sources/mara.png"]\ntags = ["a b"]\n' + PAID,
     ("refs.hero", "invalid tag 'a b'")),
]


@pytest.mark.parametrize(("text", "fragments"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_refused_by_the_plan_before_anything_is_paid(
    studio: Studio, sim: Simulator, text: str, fragments: tuple[str, ...]
) -> None:
    path = write_workflow(studio, text)
    before = generation_and_run_counts(studio.root)
    for dry_run in (True, False):
        with pytest.raises(WorkflowError) as caught:
            studio.run_workflow(path, provider="wavespeed", dry_run=dry_run)
        message = caught.value.message
        assert message.startswith("wf.toml: "), message
        for fragment in fragments:
            assert fragment in message, message
    assert generation_and_run_counts(studio.root) == before == (0, 0)
    assert sim.stats()["submits_received"] == 0


# ---------------------------------------------------------------- what stays allowed


@pytest.mark.parametrize(
    "text",
    [
        # a refinement: mentions the existing @mara and promotes a new @mara
        PAID + step('prompt = "@mara, sharper"\npromote = { name = "mara" }'),
        # a label an earlier step gives, a label the reference has, a new labelled view
        PAID + step('prompt = "@tavern"\npromote = { name = "mara_coat", label = "front" }',
                    "coat")
        + step('prompt = "@mara:side wearing @mara_coat:front"\n'
               'promote = { name = "mara", label = "coat", keep_primary = true }'),
        # the last index of the variants, and the workflow's own [refs]
        '[refs.hero]\nimages = ["../sources/mara.png"]\n'
        + step('prompt = "@hero in @tavern"\nvariants = 3\npromote = { name = "hero2", pick = 2 }'),
        # keep_primary on a name nothing has yet: it simply becomes the reference
        PAID + step('prompt = "@mara"\npromote = { name = "mara_coat", keep_primary = true }'),
        # two steps promote one name with different labels
        PAID + step('prompt = "@mara"\npromote = { name = "mara_coat", label = "front" }', "one")
        + step('prompt = "@tavern"\npromote = { name = "mara_coat", label = "back" }', "two"),
    ],
    ids=["refinement", "labels", "last-pick-and-refs", "keep-primary-new-name", "two-labels"],
)
def test_sound_workflows_still_plan(studio: Studio, text: str) -> None:
    path = write_workflow(studio, text)
    report = studio.run_workflow(path, provider="wavespeed", dry_run=True)
    assert report.status == "planned"


def test_a_rerun_may_promote_onto_the_label_it_gave(studio: Studio, sim: Simulator) -> None:
    text = step('prompt = "@mara in @tavern"\n'
                'promote = { name = "mara", label = "tavern", keep_primary = true }', "view")
    path = write_workflow(studio, text)
    first = studio.run_workflow(path, provider="wavespeed")
    assert first.status == "completed", first
    assert any(i.label == "tavern" for i in studio.reference("mara").images)
    # The label is now taken, by this very step: the rerun plans, reuses and pays nothing.
    submits = sim.stats()["submits_received"]
    again = studio.run_workflow(path, provider="wavespeed")
    assert again.status == "completed", again
    assert again.steps[0].status == "reused"
    assert sim.stats()["submits_received"] == submits
    # Another workflow giving the same label is refused before paying.
    other = studio.root / "workflows" / "other.toml"
    other.write_text(text.replace('id = "view"', 'id = "view2"'))
    with pytest.raises(WorkflowError, match="already has an image labelled 'tavern'"):
        studio.run_workflow(other, provider="wavespeed", dry_run=True)


# ---------------------------------------------------------------- the CLI


@pytest.mark.parametrize("case", ["promote-name-too-short", "pick-beyond-variants",
                                  "mentions-what-it-promotes"])
def test_cli_run_and_dry_run_refuse_with_exit_12(
    studio: Studio, sim: Simulator, case: str
) -> None:
    text = next(c[1] for c in CASES if c[0] == case)
    write_workflow(studio, text)
    env = {"WAVESPEED_API_KEY": "k", "WAVESPEED_BASE_URL": sim.base_url}
    for extra in (["--dry-run"], []):
        done = run_cli("--project", str(studio.root), "run", "wf", "--provider", "wavespeed",
                       *extra, env=env)
        assert done.returncode == 12, done.stderr
        assert done.stderr.startswith("error: wf.toml: "), done.stderr
        assert "Traceback" not in done.stderr
    assert generation_and_run_counts(studio.root) == (0, 0)
    assert sim.stats()["submits_received"] == 0
