"""The simulator's history endpoint (``POST /api/v3/predictions``) and its lost-submit faults.

The history is the one place that can tell whether an ambiguous submit created a task, so the
simulator must list exactly the tasks that exist, newest first, filtered and paged like the
documented endpoint, including tasks whose submit answer was lost.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import gen4_facts as gen4
import httpx
import pytest

from refstudio.simulator import Simulator, SimulatorConfig

SUBMIT = f"/api/v3/{gen4.MODEL_ID}"
HISTORY = "/api/v3/predictions"
AUTH = {"Authorization": "Bearer test-key"}


SIM_DEFAULTS = {"latency": 0.05, "seed": 99}


def _client(sim: Simulator) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=10)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


def test_history_lists_every_task_newest_first_with_documented_fields(make_sim: Any) -> None:
    sim = make_sim()
    with _client(sim) as c:
        ids = []
        for i in range(5):
            r = c.post(SUBMIT, json={"prompt": f"harbour {i}", "seed": 10 + i})
            assert r.status_code == 200
            ids.append(r.json()["data"]["id"])
            time.sleep(0.002)  # distinct creation times
        time.sleep(0.1)
        r = c.post(HISTORY, json={"page": 1, "page_size": 100})
        assert r.status_code == 200
        body = r.json()
        assert body["code"] == 200 and body["message"] == "success"
        data = body["data"]
        assert data["page"] == 1 and data["total"] == 5
        assert [item["id"] for item in data["items"]] == ids[::-1]
        item = data["items"][0]
        assert set(item) == {"id", "model", "status", "outputs", "has_nsfw_contents", "error",
                             "created_at", "urls", "timings", "executionTime"}
        assert item["model"] == gen4.MODEL_ID and item["status"] == "completed"
        assert item["urls"]["get"].endswith(f"/api/v3/predictions/{item['id']}/result")
        assert item["outputs"] and item["executionTime"] == item["timings"]["inference"]
        # The documented history does not show the request; browsing is not noticing.
        assert "input" not in item
        assert all(t["first_seen_completed_at"] is None for t in sim.stats()["tasks"].values())
        assert "date" in r.headers  # clients align clocks with it


def test_history_pages_and_filters(make_sim: Any) -> None:
    sim = make_sim()
    with _client(sim) as c:
        times = []
        for i in range(7):
            times.append(time.time())
            assert c.post(SUBMIT, json={"prompt": f"p{i}"}).status_code == 200
            time.sleep(0.01)
        pages = [c.post(HISTORY, json={"page": p, "page_size": 3}).json()["data"]
                 for p in (1, 2, 3, 4)]
        assert [len(p["items"]) for p in pages] == [3, 3, 1, 0]
        assert {p["total"] for p in pages} == {7}
        seen = [item["id"] for p in pages for item in p["items"]]
        assert len(set(seen)) == 7
        # created_after is inclusive, created_before exclusive.
        window = {"created_after": _iso(times[2]), "created_before": _iso(times[5])}
        data = c.post(HISTORY, json={"page": 1, "page_size": 100, **window}).json()["data"]
        assert data["total"] == 3
        assert data["items"][0]["id"] == seen[2] and data["items"][-1]["id"] == seen[4]
        other = c.post(HISTORY, json={"page": 1, "page_size": 100,
                                      "model": "google/nano-banana/edit"})
        assert other.json()["data"] == {"page": 1, "total": 0, "items": []}
        mine = c.post(HISTORY, json={"page": 1, "page_size": 100, "model": gen4.MODEL_ID})
        assert mine.json()["data"]["total"] == 7
        running = c.post(HISTORY, json={"page": 1, "page_size": 100, "status": "failed"})
        assert running.json()["data"]["total"] == 0


@pytest.mark.parametrize("body, field", [
    ({"page_size": 10}, "page"),
    ({"page": 1}, "page_size"),
    ({"page": 1, "page_size": 101}, "page_size"),
    ({"page": 0, "page_size": 10}, "page"),
    ({"page": 1, "page_size": 10, "created_after": "yesterday"}, "created_after"),
    ({"page": 1, "page_size": 10, "created_before": "2025-01-01T00:00:00"}, "created_before"),
    ({"page": 1, "page_size": 10, "status": "done"}, "status"),
    ({"page": 1, "page_size": 10, "colour": "red"}, "colour"),
])
def test_history_refuses_bad_queries(make_sim: Any, body: dict[str, Any], field: str) -> None:
    sim = make_sim()
    with _client(sim) as c:
        r = c.post(HISTORY, json=body)
    assert r.status_code == 400 and r.json()["code"] == 400
    assert field in r.json()["message"]


def test_history_needs_the_key(make_sim: Any) -> None:
    sim = make_sim(key="only-this")
    with httpx.Client(base_url=sim.base_url, timeout=10) as c:
        r = c.post(HISTORY, json={"page": 1, "page_size": 1},
                   headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


def test_staged_faults_and_lost_submits_show_in_history(make_sim: Any) -> None:
    sim = make_sim(submit_faults=["500_after", "502_lost", "drop_after", "drop_lost", "503"],
                   history_input=True)
    with _client(sim) as c:
        lost = c.post(SUBMIT, json={"prompt": "accepted, answer lost", "seed": 1})
        assert lost.status_code == 500
        assert c.post(SUBMIT, json={"prompt": "never reached", "seed": 2}).status_code == 502
        for prompt in ("dropped after", "dropped before"):
            with pytest.raises(httpx.RemoteProtocolError):
                c.post(SUBMIT, json={"prompt": prompt, "seed": 3})
        assert c.post(SUBMIT, json={"prompt": "turned away", "seed": 4}).status_code == 503
        assert c.post(SUBMIT, json={"prompt": "fine", "seed": 5}).status_code == 200
        items = c.post(HISTORY, json={"page": 1, "page_size": 100}).json()["data"]["items"]
    # Exactly the tasks that exist: created-then-failed answers are there, lost ones are not.
    assert [i["input"]["prompt"] for i in items] == ["fine", "dropped after",
                                                     "accepted, answer lost"]
    assert items[-1]["input"] == {"prompt": "accepted, answer lost", "seed": 1,
                                  "aspect_ratio": gen4.DEFAULT_ASPECT_RATIO,
                                  "resolution": gen4.DEFAULT_RESOLUTION, "reference_images": [],
                                  "enable_base64_output": False, "enable_sync_mode": False}
    stats = sim.stats()
    assert stats["submits_lost"] == 2 and stats["submits_5xx_accepted"] == 1
    assert stats["submits_dropped_accepted"] == 1 and len(stats["tasks"]) == 3


def test_rate_lost_answers_502_or_504_and_creates_nothing(make_sim: Any) -> None:
    sim = make_sim(rate_lost=1.0)
    with _client(sim) as c:
        codes = {c.post(SUBMIT, json={"prompt": f"p{i}"}).status_code for i in range(6)}
        assert codes <= {502, 504}
        assert c.post(HISTORY, json={"page": 1, "page_size": 10}).json()["data"]["total"] == 0
    assert sim.stats()["submits_lost"] == 6


def test_bad_staged_fault_is_refused() -> None:
    with pytest.raises(ValueError, match="submit fault"):
        SimulatorConfig(submit_faults=["explode"])
