"""``show --json`` says which reference each binding is, and stays right as the library changes.

``bindings[].reference_id`` used to be null for every generation. It is recorded when the
generation is recorded, and checked when shown: a renamed reference keeps its id (the binding's
name stays the one written in the prompt), a deleted one gives null, and a new reference that
SQLite gives the deleted one's id is never reported in its place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import ImageMaker, run_cli


def cli(root: Path, *args: str) -> Any:
    done = run_cli("-p", str(root), *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def bindings(root: Path, gen_id: int) -> dict[str, int | None]:
    return {b["name"]: b["reference_id"] for b in cli(root, "show", str(gen_id))["bindings"]}


def test_reference_ids_follow_renames_and_deletions(
    tmp_path: Path, make_image: ImageMaker
) -> None:
    root = tmp_path / "proj"
    assert run_cli("init", str(root)).returncode == 0
    mara = cli(root, "ref", "add", "mara", str(make_image(tmp_path / "m.png", seed=1)),
               "--label", "front")
    cli(root, "ref", "image", "add", "mara", str(make_image(tmp_path / "s.png", seed=2)),
        "--label", "side")
    tavern = cli(root, "ref", "add", "tavern", str(make_image(tmp_path / "t.png", seed=3)))
    [gen] = cli(root, "gen", "@mara:side in @tavern", "--provider", "offline")
    assert bindings(root, gen["id"]) == {"mara": mara["id"], "tavern": tavern["id"]}
    assert {b["reference_id"] for b in gen["bindings"]} == {mara["id"], tavern["id"]}

    # Renamed: the same reference, under the name the prompt used.
    cli(root, "ref", "rename", "mara", "heroine")
    assert bindings(root, gen["id"]) == {"mara": mara["id"], "tavern": tavern["id"]}
    # The bound image removed, the reference still there: still that reference.
    cli(root, "ref", "image", "rm", "heroine", "side")
    assert bindings(root, gen["id"])["mara"] == mara["id"]

    # Deleted: null, and still null when a new reference gets the freed id.
    cli(root, "ref", "rm", "tavern")
    assert bindings(root, gen["id"]) == {"mara": mara["id"], "tavern": None}
    pub = cli(root, "ref", "add", "pub", str(make_image(tmp_path / "p.png", seed=4)))
    assert pub["id"] == tavern["id"]  # SQLite reused it: the case that must not mislead
    assert bindings(root, gen["id"]) == {"mara": mara["id"], "tavern": None}
    history = cli(root, "history")
    assert {b["name"]: b["reference_id"] for b in history[0]["bindings"]} == {
        "mara": mara["id"], "tavern": None}
