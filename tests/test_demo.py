"""The README's first command: `refstudio demo` runs the whole loop with no key, no network."""

from __future__ import annotations

import re
from pathlib import Path

import gen4_facts as gen4
import pytest
from conftest import run_cli

from refstudio import Studio
from refstudio.errors import ConfigError
from refstudio.gallery import build_gallery
from refstudio.providers.wavespeed.client import WaveSpeedProvider


def test_demo_runs_the_loop_through_the_cli(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    done = run_cli("demo", str(target))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(r"simulator: 4 paid submits", done.stdout), done.stdout
    with Studio.open(target) as studio:
        gens = studio.history(limit=None)
        assert [g.status for g in gens] == ["completed"] * 4
        assert all(g.provider == "wavespeed" for g in gens)
        tree = studio.lineage("mara_hearth")
        primary = next(i for i in tree["images"] if i["is_primary"])
        assert primary["origin"] == "generation"
        assert {i["name"] for i in primary["inputs"]} == {"mara", "tavern"}
        for g in gens:
            expected = gen4.output_size(g.params["aspect_ratio"], g.params["resolution"])
            for output in g.outputs:
                assert output.path.is_file()
                assert output.image().size == expected
        # The built-in simulator's work cost nothing, and every page says so.
        assert [g.cost_estimate for g in gens] == [0.0] * 4
        build_gallery(studio)
        assert "4 outputs · $0.00 spent" in (target / "gallery" / "index.html").read_text()
    history = run_cli("-p", str(target), "history")
    assert "4 generation(s), 4 image(s), estimated $0.00" in history.stdout, history.stdout


def test_only_a_loopback_address_can_be_the_free_simulator() -> None:
    assert WaveSpeedProvider("k", "http://127.0.0.1:9", simulated=True).paid is False
    assert WaveSpeedProvider("k", "http://127.0.0.1:9").paid is True
    with pytest.raises(ConfigError, match="loopback"):
        WaveSpeedProvider("k", "https://api.wavespeed.ai", simulated=True)


def test_demo_refuses_an_existing_project(tmp_path: Path) -> None:
    Studio.init(tmp_path / "p").close()
    done = run_cli("demo", str(tmp_path / "p"))
    assert done.returncode == 3
    assert done.stderr.startswith("error:")
