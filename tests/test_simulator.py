"""The WaveSpeed simulator, exercised over real HTTP with httpx, Pillow and the official SDK."""

from __future__ import annotations

import base64
import io
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gen4_facts as gen4
import httpx
import pytest
from conftest import run_cli
from PIL import Image

from refstudio.simulator import Simulator, SimulatorConfig

SUBMIT = f"/api/v3/{gen4.MODEL_ID}"
AUTH = {"Authorization": "Bearer test-key"}


# ---- helpers ------------------------------------------------------------------------------
SIM_DEFAULTS = {"latency": 0.1, "seed": 1234}


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(latency=0.05, jitter=0.0, seed=7)) as sim:
        yield sim


@pytest.fixture
def client(shared_sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_sim.base_url, headers=AUTH, timeout=10) as c:
        yield c


def _client(sim: Simulator, **kwargs: Any) -> httpx.Client:
    kwargs.setdefault("headers", AUTH)
    kwargs.setdefault("timeout", 10)
    return httpx.Client(base_url=sim.base_url, **kwargs)


def _png(color: tuple[int, int, int], size: tuple[int, int] = (120, 90), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


def _wait(c: httpx.Client, poll_url: str, deadline: float = 10.0) -> dict[str, Any]:
    """Poll until a terminal status; return the final ``data``."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        r = c.get(poll_url)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["code"] == 200
        if body["data"]["status"] in ("completed", "failed"):
            return body["data"]
        time.sleep(0.02)
    raise AssertionError("task did not finish")


def _submit(c: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"prompt": "@mara in @tavern", "aspect_ratio": "16:9", "resolution": "720p"} | fields
    r = c.post(SUBMIT, json=body)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def _image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return im.size


def _count(data: bytes, color: tuple[int, int, int]) -> int:
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
    return sum(n for n, c in rgb.getcolors(rgb.width * rgb.height) or [] if c == color)


# ---- happy paths --------------------------------------------------------------------------
@pytest.mark.parametrize(("aspect_ratio", "resolution"), sorted(gen4.OUTPUT_SIZES))
def test_each_size_round_trip(client: httpx.Client, aspect_ratio: str, resolution: str) -> None:
    created = _submit(client, aspect_ratio=aspect_ratio, resolution=resolution, seed=42)
    assert created["status"] == "created"
    assert created["outputs"] == [] and created["error"] == ""
    assert created["model"] == gen4.MODEL_ID
    assert created["created_at"].endswith("Z")
    assert created["urls"]["get"].endswith(f"/api/v3/predictions/{created['id']}/result")
    done = _wait(client, created["urls"]["get"])
    assert done["status"] == "completed"
    assert done["has_nsfw_contents"] == [False]
    assert done["timings"]["inference"] >= 0
    r = client.get(done["outputs"][0])
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert int(r.headers["content-length"]) == len(r.content)
    assert _image_size(r.content) == gen4.output_size(aspect_ratio, resolution)


def test_status_moves_through_created_processing_completed(make_sim: Any) -> None:
    sim = make_sim(latency=0.6)
    with _client(sim) as c:
        task = _submit(c)
        seen = []
        while not seen or seen[-1] != "completed":
            seen.append(c.get(task["urls"]["get"]).json()["data"]["status"])
            time.sleep(0.01)
        assert seen[0] == "created"
        assert "processing" in seen
        # The alternative poll path from the docs answers the same.
        alt = c.get(f"/api/v3/predictions/{task['id']}").json()["data"]
        assert alt["status"] == "completed" and alt["outputs"]


def test_base64_output(client: httpx.Client) -> None:
    task = _submit(client, aspect_ratio="3:4", enable_base64_output=True)
    done = _wait(client, task["urls"]["get"])
    (payload,) = done["outputs"]
    assert not payload.startswith("data:")
    assert _image_size(base64.b64decode(payload, validate=True)) == (720, 960)


def test_same_seed_same_image(client: httpx.Client) -> None:
    urls = [_wait(client, _submit(client, seed=99)["urls"]["get"])["outputs"][0] for _ in range(2)]
    assert client.get(urls[0]).content == client.get(urls[1]).content


def test_plain_outputs_are_flat_images_of_the_size_coloured_by_seed(make_sim: Any) -> None:
    sim = make_sim(latency=0.0, plain_outputs=True)
    with _client(sim) as c:
        images = [c.get(_wait(c, _submit(c, seed=seed, aspect_ratio="4:3")["urls"]["get"])
                        ["outputs"][0]).content for seed in (1, 2, 1)]
    assert images[0] == images[2] != images[1]
    for data in images:
        assert _image_size(data) == gen4.output_size("4:3", "720p")
        with Image.open(io.BytesIO(data)) as im:
            assert len(im.convert("RGB").getcolors() or []) == 1


# ---- uploads ------------------------------------------------------------------------------
def _upload_binary(c: httpx.Client, data: bytes, name: str = "ref.png") -> str:
    r = c.post("/api/v3/media/upload/binary", files={"file": (name, data, "image/png")})
    assert r.status_code == 200, r.text
    d = r.json()["data"]
    assert d["type"] == "image" and d["filename"] == name and d["size"] == len(data)
    return d["download_url"]


def _upload_ticket(c: httpx.Client, data: bytes, name: str = "ref.jpg") -> str:
    r = c.post(
        "/api/v3/media/uploads",
        json={"filename": name, "size": len(data), "content_type": "image/jpeg"},
    )
    assert r.status_code == 200, r.text
    d = r.json()["data"]
    assert d["upload"]["method"] == "PUT"
    # Like a presigned URL: the PUT carries only the ticket's headers, no Bearer token.
    put = httpx.put(d["upload"]["url"], content=data, headers=d["upload"]["headers"], timeout=10)
    assert put.status_code == 200
    return d["download_url"]


def test_binary_upload_serves_bytes_back(client: httpx.Client) -> None:
    data = _png((1, 2, 3))
    url = _upload_binary(client, data)
    assert url == _upload_binary(client, data)  # content-addressed
    r = client.get(url)
    assert r.content == data
    assert r.headers["content-type"] == "image/png"


def test_ticket_upload_then_put(client: httpx.Client) -> None:
    data = _png((9, 8, 7), fmt="JPEG")
    url = _upload_ticket(client, data)
    r = client.get(url)
    assert r.content == data and r.headers["content-type"] == "image/jpeg"


def test_chunked_put_is_accepted(client: httpx.Client) -> None:
    data = _png((3, 3, 3))
    d = client.post("/api/v3/media/uploads", json={"filename": "x.png", "size": len(data)}).json()[
        "data"
    ]

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(data), 50):
            yield data[i : i + 50]

    assert httpx.put(d["upload"]["url"], content=chunks(), timeout=10).status_code == 200
    assert client.get(d["download_url"]).content == data


def test_uploads_reject_non_images(client: httpx.Client) -> None:
    r = client.post("/api/v3/media/upload/binary", files={"file": ("a.png", b"hello", "image/png")})
    assert r.status_code == 400 and r.json()["code"] == 400
    r = client.post("/api/v3/media/upload/binary", files={"other": ("a.png", _png((0, 0, 0)))})
    assert r.status_code == 400 and "file" in r.json()["message"]
    d = client.post("/api/v3/media/uploads", json={"filename": "a.png", "size": 5}).json()["data"]
    assert httpx.put(d["upload"]["url"], content=b"hello", timeout=10).status_code == 400
    r = client.post(
        "/api/v3/media/uploads", json={"filename": "a.txt", "content_type": "text/plain"}
    )
    assert r.status_code == 400


@pytest.mark.parametrize("n_refs", [1, 3])
def test_references_are_composed_into_output(client: httpx.Client, n_refs: int) -> None:
    colors = [(0, 255, 0), (255, 0, 255), (0, 0, 255)][:n_refs]
    urls = [
        _upload_binary(client, _png(col, (300, 300)))
        if i % 2 == 0
        else _upload_ticket(client, _png(col, (300, 300), fmt="PNG"), name="r.png")
        for i, col in enumerate(colors)
    ]
    done = _wait(client, _submit(client, reference_images=urls, seed=5)["urls"]["get"])
    png = client.get(done["outputs"][0]).content
    for col in colors:
        assert _count(png, col) > 1000, f"reference {col} not visible in output"


# ---- validation and auth ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"foo": 1}, "foo"),
        ({"aspect_ratio": "2:1"}, "aspect_ratio"),
        ({"resolution": "4k"}, "resolution"),
        ({"reference_images": ["https://x.test/a.png"] * 4}, "reference_images"),
        ({"reference_images": ["ftp://x.test/a.png"]}, "reference_images"),
        ({"reference_images": "https://x.test/a.png"}, "reference_images"),
        ({"seed": 0}, "seed"),
        ({"seed": gen4.SEED_MAX + 1}, "seed"),
        ({"seed": "5"}, "seed"),
        ({"seed": True}, "seed"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"prompt": "x" * 1001}, "prompt"),
        ({"enable_base64_output": "yes"}, "enable_base64_output"),
        ({"enable_sync_mode": 1}, "enable_sync_mode"),
    ],
)
def test_strict_validation(client: httpx.Client, patch: dict[str, Any], field: str) -> None:
    body = {"prompt": "p", "aspect_ratio": "1:1"} | patch
    r = client.post(SUBMIT, json=body)
    assert r.status_code == 400
    assert r.json()["code"] == 400
    assert field in r.json()["message"]


def test_bad_json_and_missing_prompt(client: httpx.Client) -> None:
    assert client.post(SUBMIT, content=b"{nope").status_code == 400
    assert client.post(SUBMIT, json=[1, 2]).status_code == 400
    r = client.post(SUBMIT, json={"aspect_ratio": "1:1"})
    assert r.status_code == 400 and "prompt" in r.json()["message"]


def test_webhook_query_is_accepted(client: httpx.Client) -> None:
    r = client.post(SUBMIT, params={"webhook": "https://hooks.test/x"}, json={"prompt": "p"})
    assert r.status_code == 200


def test_unknown_task_and_endpoint(client: httpx.Client) -> None:
    assert client.get("/api/v3/predictions/deadbeef/result").status_code == 404
    assert client.get("/_sim/outputs/deadbeef/0.png").status_code == 404
    r = client.get("/api/v3/nope")
    assert r.status_code == 404 and r.json()["code"] == 404


def test_auth(make_sim: Any) -> None:
    sim = make_sim(key="secret")
    with httpx.Client(base_url=sim.base_url, timeout=10) as c:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "secret"}):
            r = c.post(SUBMIT, json={"prompt": "p"}, headers=headers)
            assert r.status_code == 401 and r.json()["code"] == 401
            assert c.get("/api/v3/predictions/x/result", headers=headers).status_code == 401
        ok = c.post(SUBMIT, json={"prompt": "p"}, headers={"Authorization": "Bearer secret"})
        assert ok.status_code == 200
    any_key = make_sim()
    with httpx.Client(base_url=any_key.base_url, timeout=10) as c:
        assert (
            c.post(SUBMIT, json={"prompt": "p"}, headers={"Authorization": "Bearer"}).status_code
            == 401
        )
        assert (
            c.post(SUBMIT, json={"prompt": "p"}, headers={"Authorization": "Bearer z"}).status_code
            == 200
        )


# ---- faults -------------------------------------------------------------------------------
def test_429_with_retry_after_creates_nothing(make_sim: Any) -> None:
    sim = make_sim(rate_429=1.0, retry_after=2.5)
    with _client(sim) as c:
        r = c.post(SUBMIT, json={"prompt": "p"})
        assert r.status_code == 429 and r.json()["code"] == 429
        assert float(r.headers["retry-after"]) == 2.5
        poll = c.get("/api/v3/predictions/anything/result")
        assert poll.status_code == 429 and "retry-after" in poll.headers
    stats = sim.stats()
    assert stats["submits_rejected_429"] == 1
    assert stats["submits_accepted"] == 0 and stats["tasks"] == {}


def test_rate_per_minute(make_sim: Any) -> None:
    sim = make_sim(rate_per_minute=2)
    with _client(sim) as c:
        assert [c.post(SUBMIT, json={"prompt": "p"}).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        assert float(c.post(SUBMIT, json={"prompt": "p"}).headers["retry-after"]) > 50
    assert len(sim.stats()["tasks"]) == 2


def test_5xx_before_and_after_acceptance(make_sim: Any) -> None:
    sim = make_sim(rate_5xx=1.0)
    with _client(sim) as c:
        codes = [c.post(SUBMIT, json={"prompt": f"p{i}"}).status_code for i in range(20)]
    assert set(codes) <= {500, 502, 503, 504}
    stats = sim.stats()
    not_accepted, accepted = stats["submits_5xx_not_accepted"], stats["submits_5xx_accepted"]
    assert not_accepted == codes.count(503) and accepted == 20 - codes.count(503)
    assert not_accepted > 0 and accepted > 0
    # The ambiguous ones are real tasks that run to completion.
    assert len(stats["tasks"]) == accepted
    assert {t["submit_outcome"] for t in stats["tasks"].values()} == {"5xx"}
    time.sleep(0.15)
    assert {t["status"] for t in sim.stats()["tasks"].values()} == {"completed"}


def test_poll_5xx(make_sim: Any) -> None:
    sim = make_sim(rate_5xx=1.0)
    with _client(sim) as c:
        assert c.get("/api/v3/predictions/x/result").status_code in (500, 502, 503)


def test_dropped_submit_still_creates_task(make_sim: Any) -> None:
    sim = make_sim(drop_rate=1.0)
    with _client(sim) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            c.post(SUBMIT, json={"prompt": "p"})
        with pytest.raises(httpx.RemoteProtocolError):
            c.get("/api/v3/predictions/x/result")
    stats = sim.stats()
    assert stats["submits_dropped_accepted"] == 1
    (task,) = stats["tasks"].values()
    assert task["submit_outcome"] == "dropped"


def test_failed_tasks(make_sim: Any) -> None:
    sim = make_sim(fail_rate=1.0)
    with _client(sim) as c:
        done = _wait(c, _submit(c)["urls"]["get"])
        assert done["status"] == "failed" and done["error"] and done["outputs"] == []
        assert c.get(f"/_sim/outputs/{done['id']}/0.png").status_code == 404


# ---- sync mode ----------------------------------------------------------------------------
def test_sync_mode(make_sim: Any) -> None:
    sim = make_sim(latency=0.2)
    with _client(sim) as c:
        start = time.monotonic()
        data = _submit(c, enable_sync_mode=True)
        assert time.monotonic() - start >= 0.15
        assert data["status"] == "completed" and len(data["outputs"]) == 1
        assert _image_size(c.get(data["outputs"][0]).content) == (1280, 720)


def test_sync_mode_times_out_but_task_lives(make_sim: Any) -> None:
    sim = make_sim(latency=0.5, sync_timeout=0.1)
    with _client(sim) as c:
        data = _submit(c, enable_sync_mode=True)
        assert data["status"] == "processing"
        assert "Sync mode timed out" in data["error"]
        assert _wait(c, data["urls"]["get"])["status"] == "completed"


# ---- stats --------------------------------------------------------------------------------
def test_stats_detection_lag_and_reset(make_sim: Any) -> None:
    sim = make_sim(latency=0.1)
    with _client(sim) as c:
        task = _submit(c)
        assert c.get(task["urls"]["get"]).json()["data"]["status"] != "completed"
        time.sleep(0.35)  # finished ~0.25 s ago; the next poll detects it late
        assert c.get(task["urls"]["get"]).json()["data"]["status"] == "completed"
        c.get(task["urls"]["get"])  # a later poll must not move the first sighting
        stats = c.get("/_sim/stats").json()
    t = stats["tasks"][task["id"]]
    assert t["polls"] == 3 and t["status"] == "completed"
    assert t["server_time"] == pytest.approx(0.1)
    assert t["completed_at"] == pytest.approx(t["created_at"] + 0.1)
    assert 0.15 < t["detection_lag"] < 1.0
    assert t["first_seen_completed_at"] == pytest.approx(t["completed_at"] + t["detection_lag"])
    assert stats["mean_detection_lag"] == stats["max_detection_lag"] == t["detection_lag"]
    assert stats["polls_per_task"] == 3 and stats["polls"] == 3
    with _client(sim) as c:
        assert c.post("/_sim/reset").status_code == 200
        stats = sim.stats()
        assert stats["polls"] == 0 and stats["tasks"] == {} and stats["mean_detection_lag"] is None
        # A task from before the reset still answers.
        assert c.get(task["urls"]["get"]).json()["data"]["status"] == "completed"


def test_account_concurrency_queues_tasks_and_stats_count_what_clients_did(
    make_sim: Any,
) -> None:
    """Like WaveSpeed's default account level: 2 tasks run at once, a third waits its turn; the
    stats say how many tasks, requests and connections a client had going at once."""
    sim = make_sim(latency=0.4, account_concurrency=2)
    with _client(sim) as a, _client(sim) as b:
        tasks = [_submit(c) for c in (a, b, a)]
        ends = [_wait(a, t["urls"]["get"]) for t in tasks]
        stats = sim.stats()
    assert all(e["status"] == "completed" for e in ends)
    first, second, third = (stats["tasks"][t["id"]] for t in tasks)
    assert third["started_at"] == pytest.approx(first["completed_at"], abs=0.01)
    assert third["completed_at"] == pytest.approx(third["started_at"] + third["server_time"])
    assert second["started_at"] == pytest.approx(second["created_at"])
    assert stats["max_tasks_in_flight"] == 3  # the queued one counts: it was accepted
    assert stats["max_open_connections"] == 2
    # One request at a time; the next may arrive just before the last one's handler is done.
    assert stats["max_requests_in_progress"] in (1, 2)
    with pytest.raises(ValueError):
        SimulatorConfig(account_concurrency=0)


# ---- load ---------------------------------------------------------------------------------
def test_200_concurrent_clients(make_sim: Any) -> None:
    sim = make_sim(latency=0.3, jitter=0.1)
    n = 200
    barrier = threading.Barrier(n)
    statuses: list[list[int]] = [[] for _ in range(n)]
    errors: list[BaseException] = []
    # Building an SSL context costs tens of ms (certifi); 200 of them would dominate the test.
    tls = ssl.create_default_context()

    def worker(i: int) -> None:
        try:
            with _client(sim, timeout=30, verify=tls) as c:
                barrier.wait(timeout=20)
                r = c.post(
                    SUBMIT,
                    json={"prompt": f"client {i}", "aspect_ratio": "1:1", "resolution": "720p"},
                )
                statuses[i].append(r.status_code)
                poll_url = r.json()["data"]["urls"]["get"]
                while True:
                    p = c.get(poll_url)
                    statuses[i].append(p.status_code)
                    data = p.json()["data"]
                    if data["status"] == "completed":
                        break
                    time.sleep(0.1)
                d = c.get(data["outputs"][0])
                statuses[i].append(d.status_code)
                assert _image_size(d.content) == (720, 720)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - start
    assert not errors, errors[:3]
    assert all(s and set(s) == {200} for s in statuses)
    stats = sim.stats()
    assert stats["submits_accepted"] == n and stats["downloads"] == n
    print(f"200 clients: submit+poll+download in {elapsed:.2f} s")


# ---- the official SDK, unchanged --------------------------------------------------------------
def test_official_sdk_runs_against_simulator(make_sim: Any, tmp_path: Path) -> None:
    from wavespeed import Client

    sim = make_sim(latency=0.2)
    sdk = Client(api_key="sdk-key", base_url=sim.base_url)
    ref = tmp_path / "mara.png"
    ref.write_bytes(_png((0, 255, 0), (200, 200)))
    url = sdk.upload(str(ref))
    assert url.startswith(sim.base_url + "/_sim/uploads/")
    out = sdk.run(
        gen4.MODEL_ID,
        {
            "prompt": "@mara waves",
            "aspect_ratio": "9:16",
            "resolution": "720p",
            "reference_images": [url],
            "seed": 3,
        },
        poll_interval=0.05,
        timeout=10,
    )
    (output_url,) = out["outputs"]
    with httpx.Client(timeout=10) as c:
        png = c.get(output_url).content
    assert _image_size(png) == (720, 1280)
    assert _count(png, (0, 255, 0)) > 1000
    sync = sdk.run(gen4.MODEL_ID, {"prompt": "sync"}, enable_sync_mode=True, timeout=10)
    assert len(sync["outputs"]) == 1
    stats = sim.stats()
    assert stats["uploads"] == 1 and stats["submits_accepted"] == 2


# ---- configuration and lifecycle ----------------------------------------------------------
@pytest.mark.parametrize(
    "bad",
    [
        {"fail_rate": 1.5},
        {"rate_429": -0.1},
        {"latency": -1.0},
        {"latency": float("nan")},
        {"port": 65536},
        {"port": -1},
        {"key": " "},
        {"rate_per_minute": -1},
    ],
)
def test_config_rejects_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimulatorConfig(**bad)


@pytest.mark.parametrize(("flags", "said"), [
    (("--fail-rate", "2"), "--fail-rate must be between 0 and 1"),
    (("--port", "99999"), "--port must be between 0 and 65535"),
    (("--latency", "nan"), "--latency must be 0 or more"),
])
def test_cli_bad_flags_are_one_error_line(flags: tuple[str, ...], said: str) -> None:
    """Before: a ValueError/OverflowError traceback, exit 1."""
    result = run_cli("simulator", *flags)
    assert result.returncode == 4, result.stderr
    assert result.stderr.startswith(f"error: {said}"), result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_cli_port_in_use_is_one_error_with_a_hint() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("simulator", "--port", str(port))
    assert result.returncode == 4, result.stderr
    assert result.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use",
        "  --port 0 picks a free port"]


def test_stop_is_idempotent_and_releases_port() -> None:
    sim = Simulator(SimulatorConfig(latency=0.0, jitter=0.0)).start()
    url = sim.base_url
    with httpx.Client(base_url=url, headers=AUTH, timeout=5) as c:
        assert c.get("/_sim/stats").status_code == 200
        sim.stop()
        sim.stop()
        with pytest.raises(httpx.TransportError):
            c.get("/_sim/stats")
    with pytest.raises(RuntimeError):
        _ = sim.base_url


def test_run_forever_prints_url_and_stops_on_ctrl_c() -> None:
    root = Path(__file__).resolve().parents[1]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    )
    code = (
        "from refstudio.simulator import run_forever, SimulatorConfig\n"
        "run_forever(SimulatorConfig(latency=0))"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "http://127.0.0.1:" in line
            url = line.split()[-1]
            with httpx.Client(timeout=5) as c:
                assert c.get(f"{url}/_sim/stats").status_code == 200
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
