"""``compare -o``: an option goes to every compared model that takes it, ``MODEL.NAME`` to one;
costs summed beforehand are priced with each model's own options; an option none takes, a
value out of one model's range, or a model not compared: one error line, nothing sent."""

from __future__ import annotations

import pytest
from conftest import run_cli, snapshot_project

from refstudio import Studio
from refstudio.errors import ParameterError
from refstudio.models import catalog
from refstudio.models.compose import options_per_model
from refstudio.simulator import Simulator

KEY = "sim-key-compare-options-0123456789"
#: The ``library`` fixture\'s references (tests/conftest.py).
REFERENCES = ("mara", "tavern")


def test_options_go_to_the_models_that_take_them() -> None:
    specs = [catalog.get(a) for a in ("gen4", "kontext-multi", "seedream-v4")]
    shared = options_per_model(specs, {"guidance_scale": 7, "seed": 5,
                                       "gen4.resolution": "720p", "kontext-multi.seed": 6})
    assert shared == [{"seed": 5, "resolution": "720p"}, {"guidance_scale": 7, "seed": 6},
                      {"seed": 5}]
    # An id works as well as an alias (ids may hold dots: the option is after the last one).
    by_id = options_per_model(specs, {"wavespeed:runwayml/gen4-image.resolution": "720p"})
    assert by_id == [{"resolution": "720p"}, {}, {}]
    with pytest.raises(ParameterError, match=r"none of the models compared \(gen4, "
                                             r"kontext-multi, seedream-v4\) takes option 'style'"):
        options_per_model(specs, {"style": "noir"})
    with pytest.raises(ParameterError, match="is for nano-banana, which is not one of"):
        options_per_model(specs, {"nano-banana.output_format": "png"})


def test_summed_costs_are_priced_with_each_models_options(sim: Simulator,
                                                          library: Studio) -> None:
    models = ["gen4", "seedream-v4"]
    plain = library.plan_compare("@mara in @tavern", models, n=2, provider="wavespeed")
    cheap = library.plan_compare("@mara in @tavern", models, n=2, provider="wavespeed",
                                 options={"resolution": "720p"})
    assert sum(r.cost_estimate * len(q) for r, q in plain) == pytest.approx(2 * (0.08 + 0.027))
    assert sum(r.cost_estimate * len(q) for r, q in cheap) == pytest.approx(2 * (0.05 + 0.027))
    assert cheap[0][0].body["resolution"] == "720p" and "resolution" not in cheap[1][0].body
    # The budget check runs on the priced sum: refused at full price, sent at 720p.
    before = sim.stats()["submits_received"]
    from refstudio.errors import BudgetExceededError

    with pytest.raises(BudgetExceededError):
        library.compare("@mara in @tavern", models, provider="wavespeed", max_cost=0.1)
    assert sim.stats()["submits_received"] == before
    results = library.compare("@mara in @tavern", models, provider="wavespeed", max_cost=0.1,
                              options={"resolution": "720p"})
    assert [g.cost_estimate for r in results for g in r.generations] == pytest.approx(
        [0.05, 0.027])
    assert results[0].generations[0].payload["resolution"] == "720p"


def test_compare_options_on_the_command_line(sim: Simulator, library: Studio) -> None:
    result = run_cli("compare", "@mara in @tavern", "--models", "gen4,kontext-multi",
                     "--provider", "wavespeed", "-o", "guidance_scale=7",
                     "-o", "gen4.resolution=720p", "--max-cost", "0.1", cwd=library.root)
    assert result.returncode == 0, result.stderr
    assert "wavespeed:runwayml/gen4-image: 1 x $0.050 on wavespeed with resolution=720p" \
        in result.stdout
    assert "flux-kontext-pro/multi: 1 x $0.040 on wavespeed with guidance_scale=7" \
        in result.stdout
    assert "estimated total $0.09" in result.stdout
    gen4, kontext = sorted(library.history(), key=lambda g: g.model_id)
    assert gen4.payload["resolution"] == "720p" and "guidance_scale" not in gen4.payload
    assert kontext.payload["guidance_scale"] == 7 and kontext.status == "completed"


BAD = [
    (["-o", "guidance_scale=7"], "none of the models compared (gen4, nano-banana) takes "
                                 "option 'guidance_scale'"),
    (["-o", "output_format=webp"], "nano-banana option output_format='webp' is not allowed"),
    (["-o", "seed=0"], "gen4 option seed=0 is out of range; must be from 1 to 2147483647"),
    (["-o", "kontext-multi.guidance_scale=7"], "option 'kontext-multi.guidance_scale' is for "
                                               "kontext-multi, which is not one of the models"),
    (["-o", "gen4.output_format=png"], "gen4 (wavespeed:runwayml/gen4-image) has no option "
                                       "'output_format'"),
]


@pytest.mark.parametrize(("args", "words"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_compare_options_are_one_line_and_send_nothing(
    sim: Simulator, library: Studio, args: list[str], words: str
) -> None:
    before = snapshot_project(library.root)
    result = run_cli("compare", "@mara in @tavern", "--models", "gen4,nano-banana",
                     "--provider", "wavespeed", *args, cwd=library.root)
    assert result.returncode == 4, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], result.stderr
    assert "Traceback" not in result.stderr and "estimated total" not in result.stdout
    assert snapshot_project(library.root) == before
    assert sim.stats()["submits_received"] == 0
