"""Helpers several test modules share: a simulator the environment names as WaveSpeed, a
project's first references, and a workflow file with the rows a run would leave.

Each module keeps its own fixtures (and its own simulator KEY, so a key can never be taken for
another module's); these helpers are what the fixtures and tests do alike.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ImageMaker

from refstudio import Studio
from refstudio.simulator import Simulator, SimulatorConfig


@contextlib.contextmanager
def wavespeed_from_env(
    monkeypatch: pytest.MonkeyPatch, key: str, *, offline_dir: Path | None = None,
    **settings: Any,
) -> Iterator[Simulator]:
    """A simulator taking ``key`` (no jitter unless ``settings`` say so), named as WaveSpeed
    the way a user does it: ``WAVESPEED_API_KEY`` and ``WAVESPEED_BASE_URL``. With
    ``offline_dir``, offline previews go there. Stopped on exit."""
    with Simulator(SimulatorConfig(**{"jitter": 0.0, **settings, "key": key})) as server:
        monkeypatch.setenv("WAVESPEED_API_KEY", key)
        monkeypatch.setenv("WAVESPEED_BASE_URL", server.base_url)
        if offline_dir is not None:
            monkeypatch.setenv("REFSTUDIO_OFFLINE_DIR", str(offline_dir))
        yield server


def add_references(
    project: Studio, make_image: ImageMaker, folder: Path, names: Iterable[str],
    **image: Any,
) -> Studio:
    """One reference per name, each of one image drawn into ``folder`` (seeds 1, 2, ...;
    ``image`` passes e.g. ``size`` on to ``make_image``); returns ``project``."""
    for i, name in enumerate(names):
        project.add_reference(name, [make_image(folder / f"{name}.png", seed=i + 1, **image)])
    return project


def write_workflow(studio: Studio, text: str, name: str = "wf.toml") -> Path:
    """``text`` as the project's workflow file ``name``; returns its path."""
    path = studio.root / "workflows" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def generation_and_run_counts(root: Path) -> tuple[int, int]:
    """How many Generation and Run rows the project's SQLite library holds."""
    conn = sqlite3.connect(root / "library.db")
    try:
        gens = conn.execute("SELECT count(*) FROM generation").fetchone()[0]
        runs = conn.execute("SELECT count(*) FROM run").fetchone()[0]
    finally:
        conn.close()
    return gens, runs
