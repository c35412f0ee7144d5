"""The iterative loop through the Python API: add, generate, promote, generate again, lineage.

Run against the simulator over real HTTP (provider ``wavespeed``) and with the offline provider
and no key. Bad input (promote errors, budget, unknown @name) changes nothing and sends nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gen4_facts as gen4
import pytest
from conftest import ImageMaker, snapshot_project
from project_support import wavespeed_from_env

from refstudio import Studio
from refstudio.errors import (
    BudgetExceededError,
    InvalidNameError,
    MentionError,
    NameTakenError,
    OutputNotFoundError,
)
from refstudio.simulator import Simulator

#: Every test here runs on SQLite and on PostgreSQL (see conftest.backend).
BACKENDS = ("sqlite", "postgresql")

KEY = "sim-key-0123456789abcdef"


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    with wavespeed_from_env(monkeypatch, KEY, latency=0.05) as server:
        yield server


@pytest.fixture(autouse=True)
def _offline_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REFSTUDIO_OFFLINE_DIR", str(tmp_path / "offline-cache"))


def _add_refs(studio: Studio, make_image: ImageMaker, tmp_path: Path) -> None:
    mara = make_image(tmp_path / "in" / "mara.png", size=(800, 1000), seed=1)
    tavern = make_image(tmp_path / "in" / "tavern.png", size=(1200, 800), seed=2)
    studio.add_reference("mara", [mara], kind="character", description="a sailor in a red coat")
    studio.add_reference("tavern", [tavern], kind="location", description="a smoky tavern")


def _reopen(studio: Studio) -> Studio:
    root = studio.root
    studio.close()
    return Studio.open(root)


def _set_budget(root: Path, line: str) -> None:
    toml = root / "refstudio.toml"
    toml.write_text(line + "\n" + toml.read_text())


def _run_loop(studio: Studio, make_image: ImageMaker, tmp_path: Path, provider: str) -> None:
    _add_refs(studio, make_image, tmp_path)
    [first] = studio.generate("@mara in @tavern", aspect_ratio="16:9", resolution="720p", seed=100)
    assert first.status == "completed", first.error
    assert first.provider == provider
    assert [b["name"] for b in first.bindings] == ["mara", "tavern"]
    assert len(first.outputs) == 1
    out = first.outputs[0]
    assert out.path.is_file()
    assert out.image().size == gen4.output_size("16:9", "720p")
    assert (out.width, out.height) == gen4.output_size("16:9", "720p")
    assert first.seed == 100

    old_primary = studio.reference("mara").primary
    assert old_primary is not None
    info = studio.promote(first.id, "mara")
    assert info.name == "mara"
    assert len(info.images) == 2
    primary = [i for i in info.images if i.is_primary]
    assert len(primary) == 1
    assert primary[0].sha256 == out.sha256
    assert primary[0].source_output_id is not None
    assert old_primary.source_output_id is None
    assert primary[0].id != old_primary.id
    assert primary[0].sha256 != old_primary.sha256

    [second] = studio.generate("@mara", aspect_ratio="1:1", resolution="720p", seed=7)
    assert second.status == "completed", second.error
    assert second.bindings[0]["sha256"] == out.sha256  # bound the promoted image
    assert second.outputs[0].image().size == gen4.output_size("1:1", "720p")

    tree = studio.lineage("mara")
    assert tree["name"] == "mara"
    by_primary = {img["is_primary"]: img for img in tree["images"]}
    assert by_primary[False]["origin"] == "file"
    node = by_primary[True]
    assert node["origin"] == "generation"
    assert node["generation_id"] == first.id
    assert node["output_index"] == 0
    assert node["prompt"] == first.prompt
    assert node["seed"] == 100
    assert [(i["name"], i["origin"]) for i in node["inputs"]] == [
        ("mara", "file"),
        ("tavern", "file"),
    ]

    hist = studio.history()
    assert [g.id for g in hist] == [second.id, first.id]
    assert [g.id for g in studio.history(ref="tavern")] == [first.id]
    assert studio.generation(first.id).outputs[0].sha256 == out.sha256


def test_loop_against_simulator(
    sim: Simulator, project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    _run_loop(project, make_image, tmp_path, "wavespeed")
    stats = sim.stats()
    assert stats["submits_accepted"] == 2


def test_loop_offline_without_key(project: Studio, make_image: ImageMaker, tmp_path: Path) -> None:
    _run_loop(project, make_image, tmp_path, "offline")


def test_variants_have_consecutive_seeds(
    project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    _add_refs(project, make_image, tmp_path)
    gens = project.generate("@mara", n=3, seed=500, resolution="720p", aspect_ratio="3:4")
    assert [g.seed for g in gens] == [500, 501, 502]
    assert len({g.id for g in gens}) == 3
    for g in gens:
        assert g.status == "completed"
        assert g.outputs[0].path.is_file()
        assert g.outputs[0].image().size == gen4.output_size("3:4", "720p")


def test_random_seeds_are_recorded(project: Studio, make_image: ImageMaker, tmp_path: Path) -> None:
    _add_refs(project, make_image, tmp_path)
    gens = project.generate("@mara", n=2, resolution="720p")
    assert all(isinstance(g.seed, int) and g.seed >= gen4.SEED_MIN for g in gens)
    assert gens[1].seed == gens[0].seed + 1


def test_output_promote_method_creates_new_reference(
    project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    _add_refs(project, make_image, tmp_path)
    [g] = project.generate("@mara in @tavern", resolution="720p", seed=3)
    info = g.outputs[0].promote("mara_sea", kind="character")
    assert info.name == "mara_sea"
    tree = project.lineage("mara_sea")
    assert tree["images"][0]["generation_id"] == g.id


# ---------------------------------------------------------------- promote errors


@pytest.fixture
def one_gen(project: Studio, make_image: ImageMaker, tmp_path: Path) -> Any:
    _add_refs(project, make_image, tmp_path)
    [g] = project.generate("@mara in @tavern", resolution="720p", seed=9)
    assert g.status == "completed"
    return g


def test_promote_unknown_output_index(project: Studio, one_gen: Any) -> None:
    before = snapshot_project(project.root)
    with pytest.raises(OutputNotFoundError, match="no output 5"):
        project.promote(one_gen.id, "mara", index=5)
    assert snapshot_project(project.root) == before


@pytest.mark.parametrize("bad", ["1abc", "ab", "has space", "x" * 17, "bad-dash"])
def test_promote_invalid_name(project: Studio, one_gen: Any, bad: str) -> None:
    before = snapshot_project(project.root)
    with pytest.raises(InvalidNameError):
        project.promote(one_gen.id, bad)
    assert snapshot_project(project.root) == before


def test_promote_twice_to_same_reference(project: Studio, one_gen: Any) -> None:
    project.promote(one_gen.id, "mara")
    before = snapshot_project(project.root)
    with pytest.raises(NameTakenError, match="already an image of @mara"):
        project.promote(one_gen.id, "mara")
    assert snapshot_project(project.root) == before
    assert len(project.reference("mara").images) == 2


def test_promote_unknown_generation(project: Studio, one_gen: Any) -> None:
    from refstudio.errors import GenerationNotFoundError

    before = snapshot_project(project.root)
    with pytest.raises(GenerationNotFoundError):
        project.promote(one_gen.id + 100, "mara")
    assert snapshot_project(project.root) == before


# ---------------------------------------------------------------- budget and prompt errors


def test_project_budget_refuses_before_submitting(
    sim: Simulator, project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    _add_refs(project, make_image, tmp_path)
    _set_budget(project.root, "budget = 0.1")
    studio = _reopen(project)
    try:
        assert studio.price("wavespeed", "gen4", {"resolution": "1080p"}) == pytest.approx(0.08)
        before = snapshot_project(studio.root)
        with pytest.raises(BudgetExceededError, match="budget"):
            studio.generate("@mara in @tavern", n=2, resolution="1080p")
        assert snapshot_project(studio.root) == before
        assert studio.history() == []
    finally:
        studio.close()
    assert sim.stats()["submits_received"] == 0


def test_max_cost_refuses_before_submitting(
    sim: Simulator, project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    _add_refs(project, make_image, tmp_path)
    before = snapshot_project(project.root)
    with pytest.raises(BudgetExceededError, match="max-cost"):
        project.generate("@mara in @tavern", n=2, resolution="1080p", max_cost=0.1)
    assert snapshot_project(project.root) == before
    assert sim.stats()["submits_received"] == 0
    assert sim.stats().get("uploads", 0) == 0


def test_budget_counts_earlier_spend(
    sim: Simulator, project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    _add_refs(project, make_image, tmp_path)
    _set_budget(project.root, "budget = 0.1")
    studio = _reopen(project)
    try:
        [g] = studio.generate("@mara", resolution="1080p", seed=1)
        assert g.status == "completed"
        assert g.cost_estimate == pytest.approx(0.08)
        with pytest.raises(BudgetExceededError):
            studio.generate("@mara", resolution="1080p", seed=2)
        assert len(studio.history()) == 1
    finally:
        studio.close()
    assert sim.stats()["submits_received"] == 1


def test_unknown_mention_suggests_and_writes_nothing(
    project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    _add_refs(project, make_image, tmp_path)
    before = snapshot_project(project.root)
    with pytest.raises(MentionError) as info:
        project.generate("@marra in @tavern")
    text = str(info.value) + " " + (info.value.hint or "")
    assert "did you mean" in text.lower()
    assert "mara" in text
    assert snapshot_project(project.root) == before
    assert project.history() == []


def test_lineage_two_generations_deep(
    project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    _add_refs(project, make_image, tmp_path)
    [g1] = project.generate("@mara in @tavern", resolution="720p", seed=1)
    project.promote(g1.id, "mara")
    [g2] = project.generate("@mara at sea", resolution="720p", seed=2)
    project.promote(g2.id, "mara")
    tree = project.lineage("mara")
    assert len(tree["images"]) == 3
    [top] = [i for i in tree["images"] if i["is_primary"]]
    assert top["generation_id"] == g2.id
    [via] = top["inputs"]
    assert (via["name"], via["origin"], via["generation_id"]) == ("mara", "generation", g1.id)
    assert [(i["name"], i["origin"]) for i in via["inputs"]] == [
        ("mara", "file"),
        ("tavern", "file"),
    ]
    assert via["inputs"][0]["source_file"].endswith("mara.png")


def test_promote_keep_primary_adds_labelled_view(project: Studio, one_gen: Any) -> None:
    old = project.reference("mara").primary
    info = project.promote(one_gen.id, "mara", keep_primary=True, label="inn")
    assert info.primary is not None and old is not None
    assert info.primary.id == old.id
    assert {i.label for i in info.images} >= {"inn"}


def test_promote_rule_errors_change_nothing(project: Studio, one_gen: Any) -> None:
    from refstudio.errors import InputError

    before = snapshot_project(project.root)
    with pytest.raises(InputError, match="--label"):
        project.promote(one_gen.id, "mara", keep_primary=True)
    with pytest.raises(InputError):
        project.promote(one_gen.id, "newname", kind="spaceship")
    assert snapshot_project(project.root) == before
    project.promote(one_gen.id, "mara", label="inn", keep_primary=True)
    [g2] = project.generate("@mara", resolution="720p", seed=4)
    before = snapshot_project(project.root)
    with pytest.raises(NameTakenError, match="inn"):
        project.promote(g2.id, "mara", label="inn")
    assert snapshot_project(project.root) == before


def test_generate_bad_input_writes_nothing(
    project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    from refstudio.errors import InputError

    _add_refs(project, make_image, tmp_path)
    before = snapshot_project(project.root)
    with pytest.raises(InvalidNameError):
        project.generate("@mara", promote="9bad")
    for n in (0, 1001):
        with pytest.raises(InputError, match="between 1 and 1000"):
            project.generate("@mara", n=n)
    with pytest.raises(InputError, match="seed"):
        project.generate("@mara", n=3, seed=gen4.SEED_MAX - 1)
    assert snapshot_project(project.root) == before


def test_retry_refuses_completed(project: Studio, one_gen: Any) -> None:
    from refstudio.errors import GenerationError

    with pytest.raises(GenerationError, match="completed"):
        project.retry(one_gen.id)


def test_failed_generation_then_retry(
    sim: Simulator, project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    _add_refs(project, make_image, tmp_path)
    sim.config.fail_rate = 1.0
    [g] = project.generate("@mara in @tavern", resolution="720p", seed=5)
    assert g.status == "failed"
    assert g.outputs == ()
    assert g.error
    before = snapshot_project(project.root)
    with pytest.raises(OutputNotFoundError, match="outputs: none"):
        project.promote(g.id, "mara")
    assert snapshot_project(project.root) == before
    assert [x.id for x in project.history(status="failed")] == [g.id]
    assert project.spent() == 0.0

    sim.config.fail_rate = 0.0
    again = project.retry(g.id)
    assert again.id == g.id
    assert again.status == "completed", again.error
    assert again.seed == 5
    assert again.outputs[0].image().size == gen4.output_size("16:9", "720p")
    assert project.history(status="failed") == []
    info = project.promote(g.id, "mara")
    assert info.primary is not None and info.primary.sha256 == again.outputs[0].sha256
    assert project.spent() == pytest.approx(0.05)
