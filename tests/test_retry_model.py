"""``retry --model``: the original's prompt on another model, bound to the reference images the
original was made from (in their order), however the references changed since; a model that
cannot take that many images is refused before anything is stored or sent."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ImageMaker, run_cli, snapshot_project

from refstudio import Studio
from refstudio.simulator import Simulator

KEY = "sim-key-retry-model-0123456789"
#: The ``library`` fixture\'s references (tests/conftest.py).
REFERENCES = ("mara", "tavern", "lamp", "cat")


def _task_images(sim: Simulator, task_id: str | None) -> list[str]:
    """The reference image URLs the simulator received in one task's body (content-addressed:
    the same image always has the same URL)."""
    task = sim.stats()["tasks"][task_id]
    return list(task["reference_images"])


def test_retry_on_another_model_sends_the_original_images_in_order(
    sim: Simulator, library: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    [first] = library.generate("@tavern at dawn, @mara by the door", model="gen4",
                               provider="wavespeed", seed=9)
    assert first.status == "completed", first.error
    original = _task_images(sim, first.request_id)
    was = [b["sha256"] for b in first.bindings]
    # The references change: mara gets a new primary image, tavern loses its old one.
    library.add_images("mara", [make_image(tmp_path / "mara2.png", seed=31)], make_primary=True)
    library.add_images("tavern", [make_image(tmp_path / "tavern2.png", seed=32)])
    old_tavern = library.reference("tavern").images[0]
    library.remove_image("tavern", f"#{old_tavern.id}")
    now = [library.render("@tavern @mara").references[i].sha256 for i in range(2)]
    assert set(now).isdisjoint(was)  # today's @tavern and @mara are other images

    result = run_cli("retry", str(first.id), "--model", "seedream-v4", "--json",
                     cwd=library.root)

    assert result.returncode == 0, result.stderr
    again = json.loads(result.stdout)
    assert again["id"] != first.id and again["model_id"] == "wavespeed:bytedance/seedream-v4/edit"
    assert again["prompt"] == "tavern (image 1) at dawn, mara (image 2) by the door"
    assert [b["sha256"] for b in again["bindings"]] == was
    # What the simulator received: the original's images, in the original's order.
    assert _task_images(sim, again["request_id"]) == original
    assert again["payload"]["images"] == original and again["seed"] == 9


def test_retry_binds_the_recorded_image_of_a_labelled_mention(
    sim: Simulator, library: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    library.add_images("mara", [make_image(tmp_path / "side.png", seed=41)], labels=["side"])
    [first] = library.generate("@mara:side in @tavern", model="gen4", provider="wavespeed")
    side = library.reference("mara").images[-1]
    library.remove_image("mara", "side")  # the label is gone from the library now
    again = library.retry(first.id, model="kontext-multi")
    assert again.status == "completed", again.error
    assert [b["sha256"] for b in again.bindings] == [side.sha256,
                                                     first.bindings[1]["sha256"]]
    assert _task_images(sim, again.request_id) == _task_images(sim, first.request_id)


def test_a_model_that_cannot_take_the_original_images_is_refused(
    sim: Simulator, library: Studio
) -> None:
    [four] = library.generate("@mara @tavern @lamp @cat at noon", model="kontext-multi",
                              provider="wavespeed")
    assert four.status == "completed", four.error
    [scene] = library.generate("a quiet harbour", model="gen4", provider="wavespeed")
    before, sent = snapshot_project(library.root), sim.stats()["submits_received"]

    many = run_cli("retry", str(four.id), "--model", "gen4", cwd=library.root)
    assert many.returncode == 7, many.stderr
    errors = [line for line in many.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"generation #{four.id} was made from 4 reference images" in \
        errors[0] and "gen4 (wavespeed:runwayml/gen4-image) takes at most 3" in errors[0]
    none = run_cli("retry", str(scene.id), "-m", "nano-banana", cwd=library.root)
    assert none.returncode == 7, none.stderr
    assert "needs at least 1 reference image(s)" in none.stderr
    assert "Traceback" not in many.stderr + none.stderr
    assert snapshot_project(library.root) == before
    assert sim.stats()["submits_received"] == sent


def test_recorded_images_lists_what_a_generation_was_made_from(library: Studio,
                                                               tmp_path: Path) -> None:
    [gen] = library.generate("@lamp beside @cat", provider="offline")
    recorded = library.recorded_images(gen.id)
    assert [(r.name, r.sha256) for r in recorded] == [
        (b["name"], b["sha256"]) for b in gen.bindings]
    assert [r.name for r in recorded] == ["lamp", "cat"]
