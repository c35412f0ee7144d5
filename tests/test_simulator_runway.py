"""The simulator speaks Runway's API: the official ``runwayml`` SDK works against it unchanged,
and it refuses what Runway refuses (version header, ratios per model, tags, references)."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import pytest
import runwayml
from conftest import encode_image
from PIL import Image

from refstudio.models import runway_api
from refstudio.simulator import Simulator

KEY = "rw-sim-key"
SIM_DEFAULTS = {"latency": 0.3, "key": KEY, "seed": 5}
HEADERS = {"Authorization": f"Bearer {KEY}", "X-Runway-Version": runway_api.API_VERSION}


def _client(sim: Simulator) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, headers=HEADERS, timeout=10)


def _upload(sim: Simulator, data: bytes, filename: str = "mara.png") -> str:
    sdk = runwayml.RunwayML(api_key=KEY, base_url=sim.base_url)
    return sdk.uploads.create_ephemeral(file=(filename, data)).uri


def _wait(client: httpx.Client, task_id: str, until: tuple[str, ...]) -> dict[str, Any]:
    seen = []
    for _ in range(200):
        data = client.get(f"/v1/tasks/{task_id}").json()
        seen.append(data["status"])
        if data["status"] in until:
            data["_seen"] = seen
            return data
        time.sleep(0.05)
    raise AssertionError(f"task stuck: {seen[-5:]}")


def test_the_official_sdk_works_unchanged(make_sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Upload, create with a tagged reference, wait (the SDK's own loop), read the output,
    cancel, organisation: every call of the SDK against the simulator."""
    import runwayml.lib.polling as polling

    monkeypatch.setattr(polling, "POLL_TIME", 0.1)  # the SDK's 6 s would make a slow test
    monkeypatch.setattr(polling, "POLL_JITTER", 0.0)
    sim = make_sim()
    sdk = runwayml.RunwayML(api_key=KEY, base_url=sim.base_url)
    uri = sdk.uploads.create_ephemeral(file=("mara.png", encode_image((64, 80)))).uri
    assert uri.startswith("runway://")
    task = sdk.text_to_image.create(
        model="gen4_image", prompt_text="@mara at the window", ratio="1080:1440",
        reference_images=[{"uri": uri, "tag": "mara"}], seed=7)
    done = task.wait_for_task_output()
    assert done.status == "SUCCEEDED"
    png = httpx.get(done.output[0]).content
    with Image.open(io.BytesIO(png)) as img:
        assert img.size == (1080, 1440)
    turbo = sdk.text_to_image.create(
        model="gen4_image_turbo", prompt_text="@mara", ratio="720:720",
        reference_images=[{"uri": uri, "tag": "mara"}])
    sdk.tasks.delete(turbo.id)
    assert sdk.tasks.retrieve(turbo.id).status == "CANCELLED"
    gemini = sdk.text_to_image.create(model="gemini_2.5_flash", prompt_text="a lantern",
                                      ratio="1344:768").wait_for_task_output()
    assert gemini.status == "SUCCEEDED"
    org = sdk.organization.retrieve()
    assert org.usage.models["gen4_image"].daily_generations == 1
    assert org.credit_balance == 100_000 - 8 - 2 - 5
    with pytest.raises(runwayml.NotFoundError):
        sdk.tasks.retrieve("no-such-task")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"model": "gen4_image", "promptText": "x", "ratio": "1344:768"}, "ratio"),
        ({"model": "gemini_2.5_flash", "promptText": "x", "ratio": "1920:1080"}, "ratio"),
        ({"model": "gen4_image_turbo", "promptText": "x", "ratio": "1920:1080"}, "1 to 3"),
        ({"model": "gemini_2.5_flash", "promptText": "x", "ratio": "1024:1024", "seed": 1},
         "seed"),
        ({"model": "gen4_image", "promptText": "", "ratio": "1920:1080"}, "promptText"),
        ({"model": "gen4_image", "promptText": "x" * 1001, "ratio": "1920:1080"}, "promptText"),
        ({"model": "gen4_image", "promptText": "x", "ratio": "1920:1080", "seed": -1}, "seed"),
        ({"model": "gen4", "promptText": "x", "ratio": "1920:1080"}, "model"),
        ({"model": "gen4_image", "promptText": "@mara", "ratio": "1920:1080",
          "referenceImages": [{"uri": "https://example.com/a.png", "tag": "ma"}]}, "tag"),
        ({"model": "gen4_image", "promptText": "x", "ratio": "1920:1080",
          "referenceImages": [{"uri": "https://example.com/a.png", "tag": "mara"},
                              {"uri": "https://example.com/b.png", "tag": "MARA"}]}, "twice"),
        ({"model": "gen4_image", "promptText": "x", "ratio": "1920:1080",
          "referenceImages": [{"uri": "https://10.0.0.1/a.png"}]}, "domain"),
        ({"model": "gen4_image", "promptText": "x", "ratio": "1920:1080",
          "referenceImages": [{"uri": "runway://sim/nope.png"}]}, "upload"),
        ({"model": "gen4_image", "promptText": "x", "ratio": "1920:1080",
          "referenceImages": [{"uri": "data:image/png;base64," + "A" * 5_000_000}]}, "5MB"),
        ({"model": "gen4_image", "promptText": "x", "ratio": "1920:1080", "extra": 1}, "extra"),
    ],
)
def test_bodies_runway_refuses_are_refused(make_sim: Any, body: dict[str, Any],
                                           words: str) -> None:
    sim = make_sim()
    with _client(sim) as client:
        answer = client.post("/v1/text_to_image", json=body)
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"]
    assert sim.stats()["submits_accepted"] == 0


def test_version_header_and_key_are_required(make_sim: Any) -> None:
    sim = make_sim()
    body = {"model": "gen4_image", "promptText": "x", "ratio": "1920:1080"}
    no_version = httpx.post(f"{sim.base_url}/v1/text_to_image", json=body,
                            headers={"Authorization": f"Bearer {KEY}"})
    assert no_version.status_code == 400
    assert "X-Runway-Version" in no_version.json()["error"]
    wrong_key = httpx.post(f"{sim.base_url}/v1/text_to_image", json=body,
                           headers={**HEADERS, "Authorization": "Bearer other"})
    assert wrong_key.status_code == 401
    assert sim.stats()["submits_accepted"] == 0


def test_throttled_then_running_with_progress_then_succeeded(make_sim: Any) -> None:
    sim = make_sim(latency=0.6, runway_concurrency=1)
    body = {"model": "gen4_image", "promptText": "x", "ratio": "1280:720"}
    with _client(sim) as client:
        first = client.post("/v1/text_to_image", json=body).json()["id"]
        second = client.post("/v1/text_to_image", json=body).json()["id"]
        assert client.get(f"/v1/tasks/{second}").json()["status"] == "THROTTLED"
        done = _wait(client, second, ("SUCCEEDED",))
        assert "RUNNING" in done["_seen"] and done["cost"] == {"credits": 5}
        assert _wait(client, first, ("SUCCEEDED",))["status"] == "SUCCEEDED"
    tasks = sim.stats()["tasks"]
    assert tasks[second]["started_at"] >= tasks[first]["completed_at"] - 1e-6


def test_failure_codes_daily_limit_and_faults(make_sim: Any) -> None:
    sim = make_sim(runway_daily_limit=2, runway_task_faults=["SAFETY.INPUT.TEXT"],
                   submit_faults=["ok", "500_after"])
    body = {"model": "gen4_image", "promptText": "x", "ratio": "1920:1080"}
    with _client(sim) as client:
        failed = client.post("/v1/text_to_image", json=body).json()["id"]
        data = _wait(client, failed, ("FAILED",))
        assert data["failureCode"] == "SAFETY.INPUT.TEXT"
        assert data["cost"] == {"credits": 8}  # SAFETY.INPUT is not refunded
        ambiguous = client.post("/v1/text_to_image", json=body)
        assert ambiguous.status_code == 500
        spent = client.post("/v1/text_to_image", json=body)
        assert spent.status_code == 429
        assert 0 < int(spent.headers["Retry-After"]) <= 24 * 3600
        org = client.get("/v1/organization").json()
    assert org["usage"]["models"]["gen4_image"]["dailyGenerations"] == 2
    stats = sim.stats()
    assert stats["submits_accepted"] == 2 and stats["submits_5xx_accepted"] == 1
    assert stats["submits_rejected_daily_limit"] == 1


def test_upload_form_must_carry_the_presigned_fields(make_sim: Any) -> None:
    sim = make_sim()
    with _client(sim) as client:
        ticket = client.post("/v1/uploads", json={"filename": "a.png", "type": "ephemeral"}).json()
        forged = httpx.post(ticket["uploadUrl"], data={"key": "other"},
                            files={"file": ("a.png", encode_image((32, 32)))})
        assert forged.status_code == 403
        gif = httpx.post(ticket["uploadUrl"], data=ticket["fields"],
                         files={"file": ("a.png", encode_image((32, 32), "GIF"))})
        assert gif.status_code == 400
        good = httpx.post(ticket["uploadUrl"], data=ticket["fields"],
                          files={"file": ("a.png", encode_image((32, 32)))})
        assert good.status_code == 204
        uri = ticket["runwayUri"]
        answer = client.post("/v1/text_to_image", json={
            "model": "gen4_image_turbo", "promptText": "@mara", "ratio": "720:720",
            "referenceImages": [{"uri": uri, "tag": "mara"}]})
    assert answer.status_code == 200, answer.text
    assert _upload(sim, encode_image((32, 32), "JPEG"), "b.jpg").startswith("runway://")
