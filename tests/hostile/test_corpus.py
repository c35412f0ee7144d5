"""The corpus itself: large enough, every category present, ids unique across modules."""

from __future__ import annotations

from . import (
    test_images,
    test_mentions,
    test_names,
    test_packs,
    test_params,
    test_paths,
    test_project_files,
    test_storage,
    test_templates,
    test_workflows,
)

CATEGORIES = {
    "images": test_images.CASES,
    "names": test_names.CASES,
    "mentions": test_mentions.CASES,
    "parameters": test_params.CASES,
    "templates": test_templates.CASES,
    "workflows": test_workflows.CASES,
    "project files": test_project_files.CASES,
    "packs": test_packs.CASES,
    "paths": test_paths.CASES,
    "storage": test_storage.CASES,
}


def test_the_corpus_holds_at_least_150_cases_in_every_category() -> None:
    sizes = {name: len(cases) for name, cases in CATEGORIES.items()}
    assert all(size >= 5 for size in sizes.values()), sizes
    assert sum(sizes.values()) >= 150, sizes
    ids = [case.id for cases in CATEGORIES.values() for case in cases]
    assert len(ids) == len(set(ids)), "a case id is used in two modules"
