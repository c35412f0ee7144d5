"""The Studio verbs a front end pages through (added for the web studio): find_references,
image_file, workflow_names, generation_counts, history(text=), account_summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ImageMaker

from refstudio import Studio
from refstudio.errors import ImageNotFoundError, InputError


@pytest.fixture
def studio(project: Studio, make_image: ImageMaker, tmp_path: Path) -> Studio:
    image = make_image(tmp_path / "a.png", size=(300, 300))
    project.add_references([
        {"name": f"{prefix}{i:02d}", "images": [image], "kind": kind, "tags": [tag],
         "description": f"number {i} of {prefix}"}
        for prefix, kind, tag in (("mara", "character", "hero"), ("tav", "location", "inn"))
        for i in range(25)])
    project.add_reference("odd_name", [image], description="100% sure_thing")
    return project


def test_find_references_pages_in_sql_with_a_total(studio: Studio) -> None:
    page, total = studio.find_references(limit=10)
    assert total == 51 and len(page) == 10
    assert [r.name for r in page] == [f"mara{i:02d}" for i in range(10)]
    last, _ = studio.find_references(offset=50, limit=10)
    assert [r.name for r in last] == ["tav24"]
    found, total = studio.find_references("inn", limit=100)  # a tag
    assert total == 25 and {r.kind for r in found} == {"location"}
    assert studio.find_references("of mara", limit=100)[1] == 25  # the description
    assert studio.find_references("@MARA1", prefix=True)[1] == 10  # any case, @ optional
    assert studio.find_references("ara", prefix=True)[1] == 0
    assert studio.find_references("", kind="location", limit=5)[1] == 25
    assert studio.find_references("", tag="hero")[1] == 25
    # LIKE's wildcards are text here, not patterns.
    assert [r.name for r in studio.find_references("100%")[0]] == ["odd_name"]
    assert studio.find_references("%")[1] == 1 and studio.find_references("_")[1] == 1
    with pytest.raises(InputError):
        studio.find_references("", kind="monster")


def test_image_file_only_for_hashes_the_library_knows(studio: Studio) -> None:
    sha = studio.reference("mara00").images[0].sha256
    path = studio.image_file(sha.upper())
    assert path.is_file() and path.is_relative_to(studio.root / "media")
    for bad in ("0" * 64, sha[:-1], "../library.db", sha + "/..", "", "g" * 64):
        with pytest.raises(ImageNotFoundError):
            studio.image_file(bad)


def test_workflow_names_counts_history_text_and_account(studio: Studio) -> None:
    (studio.root / "workflows" / "b.toml").write_text("[[step]]\nid='x'\nprompt='hi'\n")
    (studio.root / "workflows" / "a.toml").write_text("[[step]]\nid='x'\nprompt='hi'\n")
    (studio.root / "workflows" / "notes.txt").write_text("not a workflow")
    assert studio.workflow_names() == ["a", "b"]
    assert studio.generation_counts() == {}
    studio.generate("@mara01 in the rain", provider="offline", n=2)
    studio.generate("@tav02 at dawn", provider="offline")
    assert studio.generation_counts() == {"completed": 3}
    assert [g.prompt for g in studio.history(text="RAIN")] == ["@mara01 in the rain"] * 2
    assert studio.history(text="100%") == []
    assert len(studio.history(text="at", ref="tav02")) == 1
    summary = studio.account_summary()
    assert summary.provider == "offline" and summary.key.startswith("not set")
    assert summary.spent == "$0.00" and summary.budget == "none"
    # Only what this machine knows: the balance is the provider's to tell (Studio.accounts),
    # not a stale "not reported" placeholder.
    from dataclasses import fields

    assert {f.name for f in fields(summary)} == {
        "provider", "provider_source", "key", "providers", "concurrency", "budget", "spent"}
