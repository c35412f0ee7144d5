"""The corpus itself: large enough, every category present, ids unique across modules."""

from __future__ import annotations

from types import ModuleType

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
from .harness import standing

MODULES: dict[str, ModuleType] = {
    "images": test_images,
    "names": test_names,
    "mentions": test_mentions,
    "parameters": test_params,
    "templates": test_templates,
    "workflows": test_workflows,
    "project files": test_project_files,
    "packs": test_packs,
    "paths": test_paths,
    "storage": test_storage,
}


def test_the_standing_corpus_holds_150_cases_across_every_category() -> None:
    sizes = {name: len(standing(m.CASES, m.EXTENDED)) for name, m in MODULES.items()}
    assert all(size >= 10 for size in sizes.values()), sizes
    assert sum(sizes.values()) >= 150, sizes
    ids = [case.id for m in MODULES.values() for case in m.CASES]
    assert len(ids) == len(set(ids)), "a case id is used in two modules"
