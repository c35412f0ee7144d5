"""`reconcile`: settling `unknown` generations from WaveSpeed's task history (the simulator).

Each case stages exactly the submit fault it is about (``submit_faults``): a task created whose
answer was lost (500 after creation), a request that never reached the service (502 from a
"gateway", no task), and twins that cannot be told apart. Reconcile must adopt only what is
certainly a generation's own, prove "not accepted" only when the history covers the whole
window with nothing in it, and never send anything itself.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import gen4_facts as gen4
import httpx
import pytest
from conftest import run_cli, snapshot_project
from project_support import wavespeed_from_env

from refstudio import AsyncStudio, Studio
from refstudio.simulator import Simulator, SimulatorConfig

KEY = "sk-reconcile"
#: A submit window closes a little after the answer (clock slack); then time-only matching
#: and "not accepted" proofs can be made.
SETTLE = 3.2


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    with wavespeed_from_env(monkeypatch, KEY, latency=0.3, seed=11) as server:
        yield server


@pytest.fixture
def studio(tmp_path: Path, sim: Simulator) -> Iterator[Studio]:
    s = Studio.init(tmp_path / "proj")
    try:
        yield s
    finally:
        s.close()


def _gen(studio: Studio, prompt: str, **kwargs: Any) -> list[Any]:
    kwargs.setdefault("resolution", "720p")
    return studio.generate(prompt, provider="wavespeed", **kwargs)


def _submits(sim: Simulator) -> tuple[int, int]:
    stats = sim.stats()
    return stats["submits_received"], stats["submits_accepted"]


@pytest.mark.parametrize("history_input", [False, True], ids=["history-by-time", "with-input"])
def test_accepted_but_lost_is_adopted_with_its_outputs(
    sim: Simulator, studio: Studio, history_input: bool
) -> None:
    sim.config.history_input = history_input
    sim.config.submit_faults = ["500_after"]
    [g] = _gen(studio, "a lighthouse keeper at dusk", seed=41)
    assert g.status == "unknown" and "refstudio reconcile" in g.error
    assert g.paid_attempts == 1 and studio.retry_cost(g.id).paid_before == 1
    [task_id] = sim.stats()["tasks"]
    time.sleep(SETTLE)
    sent = _submits(sim)

    [result] = studio.reconcile()
    assert result.verdict == "adopted" and result.task_id == task_id
    assert result.status == "completed"
    info = studio.generation(g.id)
    assert info.status == "completed" and info.request_id == task_id
    assert info.note.startswith("reconciled: matched task " + task_id)
    assert ("by model, submit time and request" in info.note) == history_input
    [output] = info.outputs
    assert output.image().size == gen4.output_size("16:9", "720p")
    assert _submits(sim) == sent  # reconcile sends nothing
    assert studio.reconcile() == []  # nothing left to settle


def test_never_reached_is_not_accepted_and_resume_sends_it_once(
    sim: Simulator, studio: Studio
) -> None:
    sim.config.submit_faults = ["502_lost"]
    [g] = _gen(studio, "a tram in the snow", seed=7)
    assert g.status == "unknown"
    assert studio.spent() == pytest.approx(0.05)  # counted as maybe paid while unknown
    assert sim.stats()["tasks"] == {}
    time.sleep(SETTLE)

    [result] = studio.reconcile()
    assert result.verdict == "not_accepted" and result.status == "pending"
    info = studio.generation(g.id)
    assert info.status == "pending" and info.paid_attempts == 0
    assert info.note.startswith("not accepted: ") and "refstudio resume" in info.note
    assert studio.spent() == 0.0
    cost = studio.retry_cost(g.id)
    assert cost.paid_before == 0 and "nothing was paid for it before" in cost.message
    assert _submits(sim) == (1, 0)  # reconcile itself sent nothing

    resumed = studio.resume()
    assert [x.id for x in resumed] == [g.id]
    assert resumed[0].status == "completed" and resumed[0].outputs
    assert _submits(sim) == (2, 1)  # sent exactly once more, accepted once
    assert resumed[0].params["seed"] == 7 and resumed[0].payload["seed"] == 7
    assert studio.resume() == [] and _submits(sim) == (2, 1)


@pytest.mark.parametrize("history_input", [False, True], ids=["history-by-time", "with-input"])
def test_identical_twins_stay_unknown_with_the_reason(
    sim: Simulator, studio: Studio, history_input: bool
) -> None:
    """Two generations with the same request, sent at the same time; one created a task, one
    never reached the service. Nobody can tell which task is whose: both stay unknown."""
    sim.config.history_input = history_input
    sim.config.submit_faults = ["500_after", "502_lost"]
    root = studio.root

    async def both() -> list[Any]:
        twin = AsyncStudio.open(root)
        try:
            pairs = await asyncio.gather(
                twin.generate("twin lanterns", seed=5, resolution="720p", provider="wavespeed"),
                twin.generate("twin lanterns", seed=5, resolution="720p", provider="wavespeed"),
            )
        finally:
            twin.close()
        return [g for pair in pairs for g in pair]

    gens = asyncio.run(both())
    assert [g.status for g in gens] == ["unknown", "unknown"]
    assert len(sim.stats()["tasks"]) == 1
    time.sleep(SETTLE)
    before = snapshot_project(root)

    results = {r.generation_id: r for r in studio.reconcile()}
    assert set(results) == {g.id for g in gens}
    for g in gens:
        other = next(x.id for x in gens if x.id != g.id)
        result = results[g.id]
        assert result.verdict == "unknown"
        assert f"could also be the answer to #{other}" in result.reason
        assert "an identical request" in result.reason
        info = studio.generation(g.id)
        assert info.status == "unknown" and info.outputs == () and info.request_id is None
        assert "still unknown" in info.note
    assert snapshot_project(root)[0] == before[0]  # no output was stored for either


@pytest.mark.parametrize("history_input", [False, True], ids=["history-by-time", "with-input"])
def test_two_lost_answers_in_one_batch(
    sim: Simulator, studio: Studio, history_input: bool
) -> None:
    """Both tasks exist and both answers were lost in the same moment. By time alone each
    generation has two candidates (left unknown); when the history shows requests each one
    adopts its own (by seed)."""
    sim.config.history_input = history_input
    sim.config.submit_faults = ["500_after", "500_after"]
    gens = _gen(studio, "two kites over a dune", n=2, seed=300)
    assert [g.status for g in gens] == ["unknown", "unknown"]
    tasks = sim.stats()["tasks"]
    by_seed = {t["seed"]: task_id for task_id, t in tasks.items()}
    time.sleep(SETTLE)

    results = {r.generation_id: r for r in studio.reconcile()}
    for g in gens:
        info = studio.generation(g.id)
        if history_input:
            assert results[g.id].verdict == "adopted"
            assert info.status == "completed" and info.request_id == by_seed[g.seed]
        else:
            assert results[g.id].verdict == "unknown"
            assert "2 unclaimed tasks" in results[g.id].reason
            assert info.status == "unknown" and info.request_id is None


def test_another_client_on_the_account_blocks_matching_by_time(
    sim: Simulator, studio: Studio
) -> None:
    """A task this library did not make, created just before, shows the account has another
    client: a lone candidate in the window is then not adopted by time alone."""
    with httpx.Client(base_url=sim.base_url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        other = c.post(f"/api/v3/{gen4.MODEL_ID}", json={"prompt": "someone else's"})
        assert other.status_code == 200
    time.sleep(SETTLE)  # outside our window, inside what reconcile reads
    sim.config.submit_faults = ["500_after"]
    [g] = _gen(studio, "a quiet harbour", seed=9)
    time.sleep(SETTLE)
    [result] = studio.reconcile()
    assert result.verdict == "unknown"
    assert "another client uses the account" in result.reason
    assert other.json()["data"]["id"] in result.reason
    assert studio.generation(g.id).status == "unknown"


def test_a_stranger_task_never_becomes_ours_when_requests_are_shown(
    sim: Simulator, studio: Studio
) -> None:
    """Our request never reached the service; someone else's task sits in our window. With the
    request visible, it is not ours: not accepted, and nothing is attached."""
    sim.config.history_input = True
    sim.config.submit_faults = ["502_lost"]
    with httpx.Client(base_url=sim.base_url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        [g] = _gen(studio, "a lantern festival", seed=12)
        assert c.post(f"/api/v3/{gen4.MODEL_ID}",
                      json={"prompt": "a lantern festival", "seed": 13}).status_code == 200
    time.sleep(SETTLE)
    [result] = studio.reconcile()
    assert result.verdict == "not_accepted"
    assert studio.generation(g.id).outputs == ()


def test_history_no_longer_reaching_back_leaves_it_unknown(
    sim: Simulator, studio: Studio
) -> None:
    sim.config.submit_faults = ["502_lost"]
    [g] = _gen(studio, "an old request", seed=3)
    old = datetime.now(timezone.utc) - timedelta(days=8)
    conn = sqlite3.connect(studio.project.db_path)
    with conn:
        conn.execute("UPDATE generation SET sent_at = ?, sent_until = ? WHERE id = ?",
                     (old.isoformat(" "), (old + timedelta(seconds=1)).isoformat(" "), g.id))
    conn.close()
    [result] = studio.reconcile()
    assert result.verdict == "unknown"
    assert "longer ago than" in result.reason and "7 days" in result.reason
    assert sim.stats()["history_requests"] == 0  # not even asked: it cannot answer
    assert studio.generation(g.id).status == "unknown"


def test_a_window_still_open_is_not_decided_yet(sim: Simulator, studio: Studio) -> None:
    sim.config.submit_faults = ["502_lost"]
    [g] = _gen(studio, "too soon", seed=4)
    [result] = studio.reconcile()  # at once: a task could still show up
    assert result.verdict == "unknown" and "could still appear until" in result.reason
    assert studio.generation(g.id).status == "unknown"
    time.sleep(SETTLE)
    [result] = studio.reconcile()
    assert result.verdict == "not_accepted"


def test_offline_provider_has_no_records_to_check(tmp_path: Path) -> None:
    with Studio.init(tmp_path / "p") as studio:
        studio.provider_options["offline"] = {"cache_dir": tmp_path / "cache"}
        [g] = studio.generate("a preview", provider="offline")
        conn = sqlite3.connect(studio.project.db_path)
        with conn:
            conn.execute("UPDATE generation SET status = 'unknown' WHERE id = ?", (g.id,))
        conn.close()
        [result] = studio.reconcile()
        assert result.verdict == "unknown" and "keeps no task history" in result.reason
        assert studio.generation(g.id).status == "unknown"


def _cli_env(sim: Simulator, tmp_path: Path) -> dict[str, str]:
    return {"WAVESPEED_API_KEY": KEY, "WAVESPEED_BASE_URL": sim.base_url,
            "REFSTUDIO_NO_PROGRESS": "1", "REFSTUDIO_OFFLINE_DIR": str(tmp_path / "off")}


def test_cli_resume_reconciles_then_sends_what_was_never_accepted(
    sim: Simulator, studio: Studio, tmp_path: Path
) -> None:
    root = str(studio.root)
    env = _cli_env(sim, tmp_path)
    sim.config.submit_faults = ["500_after", "502_lost"]
    r = run_cli("--project", root, "gen", "a red door", "-n", "2", "--seed", "60",
                "--resolution", "720p", "--json", env=env)
    assert r.returncode == 11, r.stderr
    gens = json.loads(r.stdout)
    assert [g["status"] for g in gens] == ["unknown", "unknown"]
    [task_id] = sim.stats()["tasks"]
    lost = next(g for g in gens if sim.stats()["tasks"][task_id]["seed"] != g["seed"])
    found = next(g for g in gens if g is not lost)
    time.sleep(SETTLE)
    # Without --json the verdicts read as sentences.
    r = run_cli("--project", root, "reconcile", env=env)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    # Two lost answers at once, and the history does not show requests: by time alone either
    # task could be either generation's.
    for g in (found, lost):
        assert f"#{g['id']} still unknown" in r.stdout
    sim.config.history_input = True  # the other reading of the protocol notes
    r = run_cli("--project", root, "resume", "--json", env=env)
    assert r.returncode == 0, r.stderr
    by_id = {g["id"]: g for g in json.loads(r.stdout)}
    assert by_id[found["id"]]["status"] == "completed"
    assert by_id[found["id"]]["request_id"] == task_id
    assert by_id[found["id"]]["note"].startswith("reconciled:")
    assert by_id[lost["id"]]["status"] == "completed"  # not accepted, so sent: first payment
    stats = sim.stats()
    assert stats["submits_received"] == 3 and stats["submits_accepted"] == 2
    assert len({t["seed"] for t in stats["tasks"].values()}) == 2


def test_cli_reconcile_json(sim: Simulator, studio: Studio, tmp_path: Path) -> None:
    env = _cli_env(sim, tmp_path)
    sim.config.submit_faults = ["502_lost"]
    [g] = _gen(studio, "json please", seed=21)
    time.sleep(SETTLE)
    r = run_cli("--project", str(studio.root), "reconcile", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [{
        "id": g.id, "verdict": "not_accepted", "status": "pending",
        "reason": studio.generation(g.id).note, "task_id": None, "error": "",
    }]
    r = run_cli("--project", str(studio.root), "reconcile", env=env)
    assert r.returncode == 0 and "no unknown generations" in r.stdout


def test_records_of_another_server_say_nothing(sim: Simulator, studio: Studio) -> None:
    """A request lost on one server (say the simulator) is never proven "not accepted" by the
    records of another (say the real service): that would resend it and pay."""
    sim.config.submit_faults = ["502_lost"]
    [g] = _gen(studio, "sent to the first server", seed=31)
    assert studio.generation(g.id).status == "unknown"
    time.sleep(SETTLE)
    with Simulator(SimulatorConfig(latency=0.3, jitter=0.0, key=KEY, seed=12)) as elsewhere:
        studio.provider_options["wavespeed"] = {"api_key": KEY, "base_url": elsewhere.base_url}
        [result] = studio.reconcile()
        assert studio.resume() == []
        assert elsewhere.stats()["submits_received"] == 0
        assert elsewhere.stats()["history_requests"] == 0
    assert result.verdict == "unknown"
    assert f"it was sent to {sim.base_url}" in result.reason and "now points at" in result.reason
    assert studio.generation(g.id).status == "unknown"
    studio.provider_options.clear()
    [result] = studio.reconcile()  # back at the server it was sent to
    assert result.verdict == "not_accepted"
