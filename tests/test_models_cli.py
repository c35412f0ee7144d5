"""The model commands: listing, sync against a drifted catalog, account, compare, and every bad
input refused with one error line, its exit code, nothing sent and nothing stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ImageMaker, run_cli, snapshot_project

from refstudio import Studio
from refstudio.simulator import Simulator

KEY = "sim-key-models-cli-0123456789"
#: The ``library`` fixture\'s references (tests/conftest.py).
REFERENCES = ("mara", "tavern")


def test_models_lists_every_model_with_its_facts(sim: Simulator, library: Studio) -> None:
    result = run_cli("models", "--json", cwd=library.root)
    assert result.returncode == 0, result.stderr
    found = {m["alias"]: m for m in json.loads(result.stdout)}
    assert set(found) >= {"gen4", "gen4-turbo", "nano-banana", "seedream-v4", "kontext-multi"}
    nano = found["nano-banana"]
    assert (nano["provider"], nano["binding"], nano["min_references"],
            nano["max_references"]) == ("wavespeed", "order", 1, 10)
    assert nano["price"] == pytest.approx(0.039) and nano["key_set"] is True
    assert found["gen4"]["default"] is True and not nano["default"]
    shown = run_cli("models", "show", "kontext", cwd=library.root)
    assert shown.returncode == 6 and "did you mean kontext-multi?" in shown.stderr
    shown = run_cli("models", "show", "kontext-multi", cwd=library.root)
    assert shown.returncode == 0
    assert "guidance_scale: number 1..20 (default 3.5)" in shown.stdout


def test_default_model_in_refstudio_toml(library: Studio) -> None:
    toml = library.root / "refstudio.toml"
    toml.write_text('default_model = "seedream-v4"\n' + toml.read_text())
    result = run_cli("render", "@mara in @tavern", "--json", cwd=library.root)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == "wavespeed:bytedance/seedream-v4/edit"
    assert data["prompt"] == "mara (image 1) in @tavern".replace("@tavern", "tavern (image 2)")
    toml.write_text(toml.read_text().replace('"seedream-v4"', '"seedream"'))
    bad = run_cli("render", "@mara", cwd=library.root)
    assert bad.returncode == 6
    assert "default_model in refstudio.toml" in bad.stderr and "seedream-v4" in bad.stderr


def test_render_shows_the_text_and_body_each_model_receives(library: Studio) -> None:
    tag = library.render("@Mara sits in @tavern; @mara smiles", model="gen4")
    assert tag.prompt == "@mara sits in @tavern; @mara smiles"
    order = library.render("@Mara sits in @tavern; @mara smiles", model="kontext-multi")
    assert order.prompt == "mara (image 1) sits in tavern (image 2); mara smiles"
    assert order.body["prompt"] == order.prompt and len(order.body["images"]) == 2
    toml = library.root / "refstudio.toml"
    toml.write_text('order_form = "the {name} in image {n}"\n' + toml.read_text())
    again = Studio.open(library.root)
    try:
        text = again.render("@mara in @tavern", model="nano-banana").prompt
        assert text == "the mara in image 1 in the tavern in image 2"
    finally:
        again.close()


# -- bad input: one line, an exit code, nothing sent, nothing stored --------------------------

BAD = [
    (["-m", "gen5"], 6, "unknown model 'gen5'", "did you mean gen4?"),
    (["-m", "gen4", "-o", "guidance_scale=3"], 4,
     "has no option 'guidance_scale'; it takes: aspect_ratio, resolution, seed", None),
    (["-m", "kontext-multi", "-o", "guidance_scale=30"], 4, "must be from 1 to 20", None),
    (["-m", "gen4", "--seed", "0"], 4, "seed=0 is out of range", None),
    (["-m", "nano-banana", "--aspect-ratio", "1:1"], 4, "cannot make aspect ratio 1:1", None),
    (["-m", "seedream-v4", "--resolution", "720p"], 4, "cannot make resolution 720p", None),
    (["-m", "gen4", "--aspect-ratio", "21:9"], 4, "cannot make aspect ratio 21:9", None),
    (["-m", "nano-banana", "-o", "output_format=webp"], 4, "allowed: 'jpeg' or 'png'", None),
]


@pytest.mark.parametrize(("args", "code", "words", "hint"), BAD,
                         ids=[" ".join(a) for a, *_ in BAD])
def test_bad_model_input_is_one_line_and_changes_nothing(
    sim: Simulator, library: Studio, args: list[str], code: int, words: str, hint: str | None
) -> None:
    before = snapshot_project(library.root)
    result = run_cli("gen", "@mara in @tavern", "--provider", "wavespeed", *args,
                     cwd=library.root)
    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    if hint:
        assert hint in result.stderr
    assert snapshot_project(library.root) == before
    assert sim.stats()["submits_received"] == 0


def test_too_many_and_too_few_references_are_refused_before_sending(
    sim: Simulator, library: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    for i in range(2, 6):
        library.add_reference(f"extra{i}", [make_image(tmp_path / f"e{i}.png", seed=10 + i)])
    before = snapshot_project(library.root)
    many = run_cli("gen", "@mara @tavern @extra2 @extra3", "-m", "gen4", "--provider",
                   "wavespeed", cwd=library.root)
    assert many.returncode == 7
    assert "gen4 (wavespeed:runwayml/gen4-image) takes at most 3" in many.stderr
    six = "@mara @tavern @extra2 @extra3 @extra4 @extra5"
    assert run_cli("render", six, "-m", "kontext-multi", cwd=library.root).returncode == 7
    assert run_cli("render", six, "-m", "seedream-v4", cwd=library.root).returncode == 0
    none = run_cli("gen", "a quiet harbour", "-m", "nano-banana", "--provider", "wavespeed",
                   cwd=library.root)
    assert none.returncode == 7
    assert "needs at least 1 reference image(s); the prompt mentions 0" in none.stderr
    assert snapshot_project(library.root) == before
    assert sim.stats()["submits_received"] == 0


# -- compare, sync, account -------------------------------------------------------------------


def test_compare_sums_costs_first_and_runs_every_model(sim: Simulator, library: Studio) -> None:
    plans = library.plan_compare("@mara in @tavern", ["gen4", "nano-banana", "seedream-v4"],
                                 n=2, provider="wavespeed")
    total = sum(r.cost_estimate * len(reqs) for r, reqs in plans)
    assert total == pytest.approx(2 * (0.08 + 0.039 + 0.027))
    results = library.compare("@mara in @tavern", ["gen4", "nano-banana", "seedream-v4"], n=2,
                              provider="wavespeed", seed=77)
    assert [r.model for r in results] == ["wavespeed:runwayml/gen4-image",
                                          "wavespeed:google/nano-banana/edit",
                                          "wavespeed:bytedance/seedream-v4/edit"]
    assert all(g.status == "completed" for r in results for g in r.generations)
    assert [g.seed for g in results[0].generations] == [77, 78]
    assert [g.seed for g in results[2].generations] == [77, 78]
    assert sim.stats()["submits_accepted"] == 6
    before = sim.stats()["submits_received"]
    from refstudio.errors import BudgetExceededError

    with pytest.raises(BudgetExceededError, match="max-cost"):
        library.compare("@mara", ["gen4", "seedream-v4"], provider="wavespeed", max_cost=0.1)
    assert sim.stats()["submits_received"] == before


def test_compare_on_the_command_line(library: Studio, tmp_path: Path) -> None:
    result = run_cli("compare", "@mara in @tavern", "--models", "gen4,kontext-multi", "-n", "1",
                     cwd=library.root, env={"REFSTUDIO_OFFLINE_DIR": str(tmp_path / "off")})
    assert result.returncode == 0, result.stderr
    assert "estimated total $0.00" in result.stdout
    assert "gen4" in result.stdout and "kontext-multi" in result.stdout
    assert "mara (image 1) in tavern (image 2)" in result.stdout
    assert "gallery/compare.html" in result.stdout


def _studio_on(sim: Simulator, root: Path) -> Studio:
    studio = Studio.open(root)
    studio.provider_options = {"wavespeed": {"api_key": KEY, "base_url": sim.base_url}}
    return studio


def test_models_sync_finds_nothing_against_the_same_catalog(sim: Simulator,
                                                           library: Studio) -> None:
    assert library.sync_models() == []


def test_models_sync_reports_a_drifted_catalog(make_sim: object, library: Studio) -> None:
    drifted = make_sim(key=KEY, catalog_drift=True)  # type: ignore[operator]
    studio = _studio_on(drifted, library.root)
    try:
        drift = {(d.model, d.kind, d.field) for d in studio.sync_models()}
    finally:
        studio.close()
    assert drift == {
        ("runwayml/gen4-image", "new field", "style"),
        ("runwayml/gen4-image", "changed field", "aspect_ratio"),
        ("runwayml/gen4-image-turbo", "removed model", ""),
        ("bytedance/seedream-v4/edit", "changed field", "images"),
        ("wavespeed-ai/flux-kontext-pro/multi", "removed field", "guidance_scale"),
        ("google/nano-banana-2/edit", "new model", ""),
    }
    # It only reports: the built-in model still sends what it always did.
    assert "style" not in library.render("@mara", model="gen4").body


def test_models_sync_on_the_command_line(make_sim: object, library: Studio) -> None:
    drifted = make_sim(key=KEY, catalog_drift=True)  # type: ignore[operator]
    env = {"WAVESPEED_API_KEY": KEY, "WAVESPEED_BASE_URL": drifted.base_url}  # type: ignore[attr-defined]
    result = run_cli("models", "sync", cwd=library.root, env=env)
    assert result.returncode == 0, result.stderr
    assert "runwayml/gen4-image: new field 'style'" in result.stdout
    assert "6 difference(s)" in result.stdout


def test_account_reads_the_balance_and_a_quote(sim: Simulator, library: Studio) -> None:
    before = library.account()
    assert before.balance == pytest.approx(10.0) and before.model is None
    library.generate("@mara", model="gen4", provider="wavespeed")
    info = library.account("nano-banana", n=20)
    assert info.balance == pytest.approx(10.0 - 0.08)
    assert info.quoted_unit_price == pytest.approx(0.039)
    assert info.quoted_total == pytest.approx(0.78)
    assert info.estimated_unit_price == pytest.approx(0.039)
    result = run_cli("account", "-m", "seedream-v4", "-n", "10", cwd=library.root)
    assert result.returncode == 0, result.stderr
    assert "WaveSpeed balance: $9.92" in result.stdout
    assert "quoted $0.0270 per image, $0.27 for 10" in result.stdout
