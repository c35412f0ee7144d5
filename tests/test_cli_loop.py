"""The loop through the ``refstudio`` command: init, ref add, gen, promote, gen, lineage, history.

Offline provider (no key), subprocess runs through ``main()``'s error mapping, JSON asserted.
Bad input exits with its distinct code, says what is wrong, and never shows a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gen4_facts as gen4
import pytest
from conftest import ImageMaker, media_stored, run_cli, snapshot_project

from refstudio.simulator import Simulator, SimulatorConfig

KEY = "sim-key-0123456789abcdef"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "REFSTUDIO_NO_PROGRESS": "1",
        "REFSTUDIO_OFFLINE_DIR": str(tmp_path / "offline-cache"),
    }


@pytest.fixture
def proj(tmp_path: Path, make_image: ImageMaker, env: dict[str, str]) -> Path:
    root = tmp_path / "proj"
    r = run_cli("init", str(root), "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["project"] == str(root.resolve())
    mara = make_image(tmp_path / "in" / "mara.png", size=(800, 1000), seed=1)
    tavern = make_image(tmp_path / "in" / "tavern.png", size=(1200, 800), seed=2)
    r = cli(
        root,
        env,
        "ref",
        "add",
        "mara",
        str(mara),
        "--kind",
        "character",
        "--description",
        "a sailor in a red coat",
    )
    assert r.returncode == 0, r.stderr
    r = cli(root, env, "ref", "add", "tavern", str(tavern), "--kind", "location")
    assert r.returncode == 0, r.stderr
    return root


def cli(root: Path, env: dict[str, str], *args: str) -> Any:
    return run_cli("--project", str(root), *args, env=env)


def ok_json(root: Path, env: dict[str, str], *args: str) -> Any:
    r = cli(root, env, *args, "--json")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout)


def fails(r: Any, code: int) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert "error" in r.stderr.lower()
    return r.stderr


def test_full_loop_offline(proj: Path, env: dict[str, str]) -> None:
    gens = ok_json(
        proj,
        env,
        "gen",
        "@mara in @tavern",
        "-n",
        "2",
        "--seed",
        "40",
        "--resolution",
        "720p",
        "--aspect-ratio",
        "4:3",
    )
    assert len(gens) == 2
    assert [g["seed"] for g in gens] == [40, 41]
    for g in gens:
        assert g["status"] == "completed"
        assert g["provider"] == "offline"
        assert [b["name"] for b in g["bindings"]] == ["mara", "tavern"]
        [out] = g["outputs"]
        assert media_stored(out["path"])
        assert (out["width"], out["height"]) == gen4.output_size("4:3", "720p")
    second = gens[1]

    # promote the second generation's output into a new version of mara
    info = ok_json(proj, env, "promote", f"{second['id']}:0", "mara")
    assert info["name"] == "mara"
    assert len(info["images"]) == 2
    [primary] = [i for i in info["images"] if i["is_primary"]]
    assert primary["sha256"] == second["outputs"][0]["sha256"]

    [again] = ok_json(proj, env, "gen", "@mara on a ship", "--seed", "5", "--resolution", "720p")
    assert again["status"] == "completed"
    assert again["bindings"][0]["sha256"] == primary["sha256"]

    tree = ok_json(proj, env, "lineage", "mara")
    assert tree["name"] == "mara"
    [node] = [i for i in tree["images"] if i["is_primary"]]
    assert node["origin"] == "generation"
    assert node["generation_id"] == second["id"]
    assert node["seed"] == 41
    assert [(i["name"], i["origin"]) for i in node["inputs"]] == [
        ("mara", "file"),
        ("tavern", "file"),
    ]
    [old] = [i for i in tree["images"] if not i["is_primary"]]
    assert old["origin"] == "file"

    hist = ok_json(proj, env, "history")
    assert [g["id"] for g in hist] == [again["id"], second["id"], gens[0]["id"]]
    assert all(g["status"] == "completed" for g in hist)
    only_tavern = ok_json(proj, env, "history", "--ref", "tavern")
    assert [g["id"] for g in only_tavern] == [second["id"], gens[0]["id"]]

    shown = ok_json(proj, env, "show", str(second["id"]))
    assert shown["id"] == second["id"]
    assert shown["prompt"] == second["prompt"]
    assert shown["outputs"] == second["outputs"]
    assert shown["payload"]["prompt"] == "@mara in @tavern"

    # the human-readable forms work too
    r = cli(proj, env, "lineage", "mara")
    assert r.returncode == 0, r.stderr
    assert f"generation #{second['id']}:0" in r.stdout
    r = cli(proj, env, "history")
    assert r.returncode == 0, r.stderr
    assert "3 generation(s)" in r.stdout


def test_gen_promote_flag(proj: Path, env: dict[str, str]) -> None:
    [g] = ok_json(
        proj, env, "gen", "@mara in @tavern", "--resolution", "720p", "--promote", "mara_inn"
    )
    tree = ok_json(proj, env, "lineage", "mara_inn")
    assert tree["images"][0]["generation_id"] == g["id"]


def test_gen_human_output_names_paths(proj: Path, env: dict[str, str]) -> None:
    r = cli(proj, env, "gen", "@mara", "--resolution", "720p", "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert "offline" in r.stderr.lower()  # the one-line notice
    assert "seed 3" in r.stdout
    assert ".png" in r.stdout


# ---------------------------------------------------------------- bad input


def test_unknown_reference(proj: Path, env: dict[str, str]) -> None:
    before = snapshot_project(proj)
    err = fails(cli(proj, env, "gen", "@marra in @tavern"), 7)
    assert "did you mean" in err.lower()
    assert "@mara" in err
    assert snapshot_project(proj) == before


def test_bad_aspect_ratio(proj: Path, env: dict[str, str]) -> None:
    before = snapshot_project(proj)
    err = fails(cli(proj, env, "gen", "@mara", "--aspect-ratio", "2:1"), 4)
    for allowed in gen4.ASPECT_RATIOS:
        assert allowed in err
    assert snapshot_project(proj) == before


def test_offline_work_is_free_whatever_the_price_table(proj: Path, env: dict[str, str]) -> None:
    toml = proj / "refstudio.toml"
    text = toml.read_text().replace(
        '[prices.offline]\n"720p" = 0.0\n"1080p" = 0.0',
        '[prices.offline]\n"720p" = 0.0\n"1080p" = 0.08',
    )
    assert '"1080p" = 0.08' in text.split("[prices.offline]")[1]
    toml.write_text("budget = 0.1\n" + text)
    gens = ok_json(proj, env, "gen", "@mara", "-n", "2", "--resolution", "1080p")
    assert [(g["status"], g["cost_estimate"]) for g in gens] == [("completed", 0.0)] * 2


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(latency=0.05, jitter=0.0, key=KEY)) as server:
        yield server


def test_over_budget_wavespeed_sends_nothing(
    proj: Path, env: dict[str, str], sim: Simulator
) -> None:
    env = {**env, "WAVESPEED_API_KEY": KEY, "WAVESPEED_BASE_URL": sim.base_url}
    toml = proj / "refstudio.toml"
    toml.write_text("budget = 0.1\n" + toml.read_text())
    before = snapshot_project(proj)
    fails(cli(proj, env, "gen", "@mara in @tavern", "-n", "2", "--resolution", "1080p"), 8)
    err = fails(cli(proj, env, "gen", "@mara", "--max-cost", "0.01"), 8)
    assert "max-cost" in err
    assert snapshot_project(proj) == before
    assert sim.stats()["submits_received"] == 0


def test_promote_missing_output(proj: Path, env: dict[str, str]) -> None:
    [g] = ok_json(proj, env, "gen", "@mara", "--resolution", "720p")
    before = snapshot_project(proj)
    err = fails(cli(proj, env, "promote", f"{g['id']}:3", "mara"), 6)
    assert "no output 3" in err
    fails(cli(proj, env, "promote", str(g["id"] + 50), "mara"), 6)
    fails(cli(proj, env, "promote", f"{g['id']}", "9bad"), 4)
    fails(cli(proj, env, "promote", "abc", "mara"), 4)
    assert snapshot_project(proj) == before


def test_promote_twice(proj: Path, env: dict[str, str]) -> None:
    [g] = ok_json(proj, env, "gen", "@mara", "--resolution", "720p")
    ok_json(proj, env, "promote", str(g["id"]), "mara")
    before = snapshot_project(proj)
    err = fails(cli(proj, env, "promote", str(g["id"]), "mara"), 4)
    assert "already" in err
    assert snapshot_project(proj) == before


def test_show_missing_generation(proj: Path, env: dict[str, str]) -> None:
    fails(cli(proj, env, "show", "999"), 6)


def test_config_masks_key(tmp_path: Path, env: dict[str, str]) -> None:
    secret = "ws-secret-abcdefghijklmnop-WXYZ"
    env = {**env, "WAVESPEED_API_KEY": secret}
    r = run_cli("config", env=env)
    assert r.returncode == 0, r.stderr
    assert secret not in r.stdout + r.stderr
    assert "****WXYZ" in r.stdout
    r = run_cli("config", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert secret not in r.stdout + r.stderr
    data = json.loads(r.stdout)
    assert data["wavespeed_api_key"] == "****WXYZ"
    assert data["default_provider"] == "wavespeed"
    r = run_cli("config", "--json", env=env | {"WAVESPEED_API_KEY": ""})
    assert json.loads(r.stdout)["default_provider"] == "offline"


def test_failed_gen_show_and_retry(proj: Path, env: dict[str, str], sim: Simulator) -> None:
    env = {**env, "WAVESPEED_API_KEY": KEY, "WAVESPEED_BASE_URL": sim.base_url}
    sim.config.fail_rate = 1.0
    r = cli(proj, env, "gen", "@mara", "--resolution", "720p", "--seed", "9", "--json")
    assert r.returncode == 11, r.stderr
    assert "Traceback" not in r.stderr
    [g] = json.loads(r.stdout)
    assert g["status"] == "failed"
    assert ok_json(proj, env, "show", str(g["id"]))["status"] == "failed"
    assert [x["id"] for x in ok_json(proj, env, "history", "--status", "failed")] == [g["id"]]
    fails(cli(proj, env, "promote", str(g["id"]), "mara"), 6)

    sim.config.fail_rate = 0.0
    r = run_cli("--project", str(proj), "retry", str(g["id"]), env=env, input="n\n")
    # No terminal to ask: refused like a usage error, saying what it would cost.
    assert r.returncode == 2
    assert "accepted it before" in r.stderr and "--yes" in r.stderr
    assert sim.stats()["submits_received"] == 1
    again = ok_json(proj, env, "retry", str(g["id"]), "--yes")
    assert again["status"] == "completed"
    assert again["seed"] == 9
    assert sim.stats()["submits_received"] == 2
    # a completed generation is not retried
    err = fails(cli(proj, env, "retry", str(g["id"]), "--yes"), 11)
    assert "completed" in err
    r = cli(proj, env, "resume")
    assert r.returncode == 0, r.stderr
    assert "nothing to resume" in r.stdout
