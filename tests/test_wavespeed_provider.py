"""Tests of the WaveSpeed provider.

Most run against the project's own simulator over real HTTP (``refstudio.simulator``), so the
client and the server are checked against each other. A few cases the simulator cannot produce on
demand (an HTTP-date ``Retry-After``, an error hidden in a 200 envelope, a CDN on another host)
use ``httpx.MockTransport``; a raw socket server stands in for "accepted the body, then hung up".

Every exception raised by the provider in these tests is checked not to carry the API key.
"""

from __future__ import annotations

import asyncio
import io
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any, TypeVar

import gen4_facts as gen4
import httpx
import pytest
from PIL import Image

from refstudio import simulator
from refstudio.errors import (
    AmbiguousSubmitError,
    AuthenticationError,
    ConfigError,
    NotAcceptedError,
    ProtocolError,
    ProviderError,
    RequestRejectedError,
    TransientError,
)
from refstudio.models.request import BoundImage
from refstudio.providers.base import TaskStatus
from refstudio.providers.wavespeed.client import WaveSpeedProvider, parse_retry_after

KEY = "sk-test"
T = TypeVar("T")


# ---------------------------------------------------------------------- helpers


def assert_no_key(exc: BaseException, key: str = KEY) -> None:
    """The key must not show in any text a user or a log could see."""
    for text in (str(exc), repr(exc), getattr(exc, "message", ""), getattr(exc, "hint", "") or ""):
        assert key not in text, f"API key leaked into {type(exc).__name__}: {text!r}"


async def expect(cls: type[ProviderError], coro: Awaitable[Any], key: str = KEY) -> ProviderError:
    """Await ``coro``, expecting exactly ``cls`` (not a sibling), and check the key did not leak."""
    with pytest.raises(ProviderError) as info:
        await coro
    assert type(info.value) is cls, f"expected {cls.__name__}, got {info.value!r}"
    assert_no_key(info.value, key)
    return info.value


def run(fn: Callable[[WaveSpeedProvider], Awaitable[T]], base_url: str, key: str = KEY) -> T:
    """Run ``fn(provider)`` in a fresh event loop with a provider that is always closed."""

    async def main() -> T:
        async with WaveSpeedProvider(key, base_url) as provider:
            return await fn(provider)

    return asyncio.run(main())


def mock_run(
    handler: Callable[[httpx.Request], httpx.Response],
    fn: Callable[[WaveSpeedProvider], Awaitable[T]],
    base_url: str = "https://api.example.test",
) -> T:
    async def main() -> T:
        async with WaveSpeedProvider(
            KEY, base_url, transport=httpx.MockTransport(handler)
        ) as provider:
            return await fn(provider)

    return asyncio.run(main())


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 60)).save(buf, format="PNG")
    return buf.getvalue()


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body(seed: int = 7, **extra: Any) -> dict[str, Any]:
    return {
        "prompt": "a lighthouse at dusk",
        "aspect_ratio": "16:9",
        "resolution": "720p",
        "seed": seed,
        **extra,
    }


async def poll_until_done(
    provider: WaveSpeedProvider, task_id: str, poll_url: str | None, deadline: float = 20.0
) -> TaskStatus:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        status = await provider.fetch_status(task_id, poll_url)
        if status.state in ("completed", "failed"):
            return status
        assert loop.time() < end, f"task {task_id} still {status.state}"
        await asyncio.sleep(0.05)


async def collect(provider: WaveSpeedProvider, output: str) -> bytes:
    return b"".join([chunk async for chunk in provider.download(output)])


# ---------------------------------------------------------------------- construction


def test_missing_key_is_authentication_error_with_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WAVESPEED_API_KEY", raising=False)
    with pytest.raises(AuthenticationError) as info:
        WaveSpeedProvider()
    assert "WAVESPEED_API_KEY" in (info.value.hint or "")
    with pytest.raises(AuthenticationError):
        WaveSpeedProvider("   ")


def test_env_defaults_and_masked_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", "sk-from-env-123456")
    monkeypatch.setenv("WAVESPEED_BASE_URL", "http://127.0.0.1:1/")

    async def main() -> None:
        provider = WaveSpeedProvider()
        try:
            assert provider.base_url == "http://127.0.0.1:1"
            assert provider.name == "wavespeed" and provider.default_model().model == gen4.MODEL_ID
            for text in (repr(provider), str(provider), repr(vars(provider))):
                assert "sk-from-env-123456" not in text
        finally:
            await provider.aclose()
            await provider.aclose()  # closing twice is harmless

    asyncio.run(main())
    monkeypatch.delenv("WAVESPEED_BASE_URL")
    p = WaveSpeedProvider("k")
    assert p.base_url == "https://api.wavespeed.ai"
    asyncio.run(p.aclose())


def test_bad_base_url_is_config_error() -> None:
    with pytest.raises(ConfigError):
        WaveSpeedProvider(KEY, "ftp://example.com")


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-4") == 0.0
    now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    later = format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(42.0)
    past = format_datetime(now - timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(past, now=now.timestamp()) == 0.0


# ---------------------------------------------------------------------- no server at all


def test_unreachable_server_is_not_accepted() -> None:
    base = f"http://127.0.0.1:{free_port()}"

    async def fn(p: WaveSpeedProvider) -> None:
        exc = await expect(NotAcceptedError, p.submit(body()))
        assert exc.status_code is None
        await expect(TransientError, p.fetch_status("abc"))
        await expect(TransientError, p.upload(b"x", filename="a.png", content_type="image/png"))
        await expect(TransientError, collect(p, f"{base}/out.png"))

    run(fn, base)


def _serve_once(handler: Callable[[socket.socket], None]) -> tuple[str, Callable[[], None]]:
    """A one-thread raw TCP server; returns its base URL and a stop function."""
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                handler(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join(2)
        server.close()

    return f"http://127.0.0.1:{server.getsockname()[1]}", close


def _read_request(conn: socket.socket) -> bytes:
    conn.settimeout(2)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return data


def test_body_received_then_connection_dropped_is_ambiguous() -> None:
    """The server read the whole request, then hung up: the task may exist."""
    seen: list[bytes] = []

    def handler(conn: socket.socket) -> None:
        seen.append(_read_request(conn))

    base, close = _serve_once(handler)
    try:

        async def fn(p: WaveSpeedProvider) -> None:
            exc = await expect(AmbiguousSubmitError, p.submit(body()))
            assert "billed" in (exc.hint or "")

        run(fn, base)
    finally:
        close()
    assert len(seen) == 1, "submit must never be re-sent"
    assert b"POST /api/v3/runwayml/gen4-image" in seen[0]
    assert b"Bearer " + KEY.encode() in seen[0]


def _reset(conn: socket.socket) -> None:
    """Close with a TCP reset (RST), as a server does that drops a connection it never read."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_reset_before_the_request_was_sent_is_not_accepted() -> None:
    """The server resets the connection before reading the request: it could not act on it.

    httpcore swallows the failed write and reports the read after it, a bare ``ReadError``,
    exactly like a connection lost after the body arrived; that was mapped to "may have been
    billed" (generation ``unknown``). The body here is larger than the socket buffers, so the
    write is still under way when the reset comes.
    """
    accepted: list[int] = []

    def handler(conn: socket.socket) -> None:
        accepted.append(1)
        time.sleep(0.3)  # read nothing: the client's writes fill the buffers, then stall
        _reset(conn)

    base, close = _serve_once(handler)
    try:

        async def fn(p: WaveSpeedProvider) -> None:
            exc = await expect(NotAcceptedError, p.submit(body(prompt="x" * (32 << 20))))
            assert "not created" in str(exc)

        run(fn, base)
    finally:
        close()
    assert accepted == [1], "submit must never be re-sent"


def test_reset_after_the_body_was_read_is_ambiguous() -> None:
    """The same bare ReadError once the server has read the whole request: it may exist."""
    seen: list[bytes] = []

    def handler(conn: socket.socket) -> None:
        seen.append(_read_request(conn))
        _reset(conn)

    base, close = _serve_once(handler)
    try:

        async def fn(p: WaveSpeedProvider) -> None:
            exc = await expect(AmbiguousSubmitError, p.submit(body()))
            assert "ReadError" in str(exc) or "RemoteProtocolError" in str(exc)

        run(fn, base)
    finally:
        close()
    assert len(seen) == 1 and b"POST /api/v3/runwayml/gen4-image" in seen[0]


# ---------------------------------------------------------------------- mocked HTTP


def envelope(code: int, data: Any = None, message: str = "success") -> dict[str, Any]:
    return {"code": code, "message": message, "data": data if data is not None else {}}


def test_submit_envelope_errors_and_retry_after_date() -> None:
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    answers: list[httpx.Response] = [
        httpx.Response(200, json=envelope(429, message="slow down")),
        httpx.Response(200, json=envelope(500, message="boom")),
        httpx.Response(200, json=envelope(400, message="prompt is required")),
        httpx.Response(200, json=envelope(200, {"status": "created"})),
        httpx.Response(200, text="<html>gateway</html>"),
        httpx.Response(429, headers={"Retry-After": when}, json=envelope(429)),
        httpx.Response(503, json=envelope(503, message="overloaded")),
        httpx.Response(502, text="bad gateway"),
        httpx.Response(504, text="gateway timeout"),
        httpx.Response(403, json=envelope(403, message=f"key {KEY} is disabled")),
        httpx.Response(413, text="too large"),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {KEY}"
        return answers.pop(0)

    async def fn(p: WaveSpeedProvider) -> None:
        await expect(NotAcceptedError, p.submit(body()))
        await expect(AmbiguousSubmitError, p.submit(body()))
        exc = await expect(RequestRejectedError, p.submit(body()))
        assert "prompt is required" in str(exc)
        await expect(ProtocolError, p.submit(body()))  # 200 without data.id
        await expect(ProtocolError, p.submit(body()))  # 200 that is not JSON
        exc = await expect(NotAcceptedError, p.submit(body()))
        assert exc.retry_after is not None and 25 <= exc.retry_after <= 30
        assert exc.status_code == 429
        await expect(NotAcceptedError, p.submit(body()))
        exc = await expect(AmbiguousSubmitError, p.submit(body()))
        assert exc.status_code == 502
        await expect(AmbiguousSubmitError, p.submit(body()))
        exc = await expect(AuthenticationError, p.submit(body()))  # server echoed the key
        assert "****" in str(exc)
        await expect(RequestRejectedError, p.submit(body()))

    mock_run(handler, fn)
    assert not answers


def test_poll_url_on_foreign_host_is_not_followed_and_states_map() -> None:
    seen: list[httpx.URL] = []
    answers = [
        envelope(200, {"id": "t1", "status": "cancelled", "outputs": [], "error": ""}),
        envelope(200, {"id": "t1", "status": "timeout", "outputs": [], "error": "took too long"}),
        envelope(200, {"id": "t1", "status": "failed", "outputs": [], "error": "nsfw prompt"}),
        envelope(200, {"id": "t1", "status": "queued-ish", "outputs": []}),
        envelope(
            200,
            {
                "id": "t1",
                "status": "completed",
                "outputs": ["https://cdn.example.net/a.png"],
                "has_nsfw_contents": [True],
                "timings": {"inference": 1234.4},
                "error": "",
            },
        ),
        envelope(200, {"id": "t1", "status": "completed", "outputs": []}),
        envelope(404, message="task not found"),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json=answers.pop(0))

    async def fn(p: WaveSpeedProvider) -> list[TaskStatus]:
        foreign = "https://evil.example.org/steal"
        out = [await p.fetch_status("t1", foreign) for _ in range(5)]
        await expect(TransientError, p.fetch_status("t1"))
        exc = await expect(RequestRejectedError, p.fetch_status("t1"))
        assert "unknown task" in str(exc)
        return out

    cancelled, timed_out, failed, unknown, done = mock_run(handler, fn)
    assert all(url.host == "api.example.test" for url in seen)
    assert seen[0].path == "/api/v3/predictions/t1/result"
    assert cancelled.state == "failed" and "cancelled" in cancelled.error
    assert timed_out.state == "failed" and "took too long" in timed_out.error
    assert failed.state == "failed" and failed.error == "nsfw prompt"
    assert unknown.state == "processing"
    assert done.state == "completed" and not done.outputs_are_base64
    assert done.nsfw == (True,) and done.inference_ms == 1234 and done.error == ""


def test_download_sends_key_only_to_api_host() -> None:
    headers_by_host: dict[str, str | None] = {}
    image = png_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        headers_by_host[request.url.host] = request.headers.get("authorization")
        if request.url.path == "/gone.png":
            return httpx.Response(404, text="expired")
        return httpx.Response(200, content=image)

    async def fn(p: WaveSpeedProvider) -> None:
        assert await collect(p, "https://cdn.example.net/a.png") == image
        assert await collect(p, "https://api.example.test/media/a.png") == image
        exc = await expect(TransientError, collect(p, "https://cdn.example.net/gone.png"))
        assert exc.status_code == 404
        await expect(ProtocolError, collect(p, "!!not base64!!"))

    mock_run(handler, fn)
    assert headers_by_host["cdn.example.net"] is None
    assert headers_by_host["api.example.test"] == f"Bearer {KEY}"


def test_a_download_given_up_midway_gives_its_connection_back() -> None:
    """The download streams on the network loop; a consumer cancelled while a chunk is on its
    way must leave no connection slot taken (with one connection, the next request would wait
    forever) and must not raise anything but the cancellation."""
    answers = iter([b"stall", b"ok"])

    def handler(conn: socket.socket) -> None:
        _read_request(conn)
        if next(answers) == b"stall":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"
                         b"Content-Length: 10000000\r\n\r\n" + b"\x89PNG" + bytes(100_000))
            time.sleep(1.0)  # the rest never comes while the client waits
            return
        body = b'{"code": 200, "message": "ok", "data": {"id": "t1", "status": "processing"}}'
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    base, close = _serve_once(handler)
    try:

        async def main() -> None:
            async with WaveSpeedProvider(KEY, base, max_connections=1) as p:
                reading = asyncio.create_task(collect(p, f"{base}/out.png"))
                await asyncio.sleep(0.3)
                reading.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await reading
                status = await asyncio.wait_for(p.fetch_status("t1"), timeout=10)
                assert status.state == "processing"

        asyncio.run(main())
    finally:
        close()


def test_upload_error_mapping() -> None:
    answers = [
        httpx.Response(401, json=envelope(401, message="invalid key")),
        httpx.Response(429, headers={"Retry-After": "2"}, text="slow"),
        httpx.Response(500, text="oops"),
        httpx.Response(415, json=envelope(415, message="unsupported type")),
        httpx.Response(200, json=envelope(200, {"type": "image"})),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v3/media/upload/binary"
        assert b'name="file"; filename="a.png"' in request.read()
        return answers.pop(0)

    async def fn(p: WaveSpeedProvider) -> None:
        up = p.upload
        args: dict[str, Any] = {"filename": "a.png", "content_type": "image/png"}
        await expect(AuthenticationError, up(b"png", **args))
        exc = await expect(TransientError, up(b"png", **args))
        assert exc.retry_after == 2.0
        await expect(TransientError, up(b"png", **args))
        await expect(RequestRejectedError, up(b"png", **args))
        await expect(ProtocolError, up(b"png", **args))

    mock_run(handler, fn)


# ---------------------------------------------------------------------- the simulator


def sim_config(**overrides: Any) -> Any:
    settings: dict[str, Any] = {
        "latency": 0.2,
        "jitter": 0.0,
        "key": KEY,
        "fail_rate": 0.0,
        "rate_429": 0.0,
        "rate_5xx": 0.0,
        "drop_rate": 0.0,
        "seed": 1,
        "retry_after": 1.0,
    }
    settings.update(overrides)
    return simulator.SimulatorConfig(**settings)


@pytest.fixture
def sim() -> Iterator[Any]:
    with simulator.Simulator(sim_config()) as server:
        yield server


def test_upload_submit_poll_download_roundtrip(sim: Any) -> None:
    reference = png_bytes(32, 32)

    async def fn(p: WaveSpeedProvider) -> bytes:
        uploaded = await p.upload(reference, filename="mara.png", content_type="image/png")
        assert uploaded.url.startswith("http") and uploaded.expires_at is None
        spec = gen4.SPEC
        built = p.build_body(
            spec, "@mara on a cliff", [BoundImage("mara", uploaded.url)],
            spec.parse_options({"aspect_ratio": "16:9", "resolution": "720p", "seed": 7}),
        )
        assert built["reference_images"] == [uploaded.url]
        assert "enable_sync_mode" not in built
        task = await p.submit(built)
        assert task.task_id
        status = await poll_until_done(p, task.task_id, task.poll_url)
        assert status.state == "completed", status
        assert len(status.outputs) == 1 and not status.outputs_are_base64
        assert status.nsfw == (False,)
        return await collect(p, status.outputs[0])

    data = run(fn, sim.base_url)
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        assert img.size == gen4.output_size("16:9", "720p") == (1280, 720)
    stats = sim.stats()
    assert stats["uploads"] == 1 and stats["submits_accepted"] == 1 and stats["polls"] >= 1
    assert stats["external_references"] == 0  # the server resolved our own upload URL


def test_poll_without_poll_url_uses_result_path(sim: Any) -> None:
    async def fn(p: WaveSpeedProvider) -> TaskStatus:
        task = await p.submit(body(aspect_ratio="1:1"))
        return await poll_until_done(p, task.task_id, None)

    status = run(fn, sim.base_url)
    assert status.state == "completed"


def test_base64_output(sim: Any) -> None:
    async def fn(p: WaveSpeedProvider) -> bytes:
        task = await p.submit(body(aspect_ratio="3:4", enable_base64_output=True))
        status = await poll_until_done(p, task.task_id, task.poll_url)
        assert status.state == "completed" and status.outputs_are_base64
        assert not status.outputs[0].startswith("http")
        return await collect(p, status.outputs[0])

    data = run(fn, sim.base_url)
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (720, 960)


def test_wrong_key_is_authentication_error(sim: Any) -> None:
    wrong = "sk-wrong-key-0000"

    async def fn(p: WaveSpeedProvider) -> None:
        exc = await expect(AuthenticationError, p.submit(body()), key=wrong)
        assert exc.status_code == 401
        await expect(AuthenticationError, p.fetch_status("whatever"), key=wrong)
        await expect(
            AuthenticationError,
            p.upload(b"x", filename="a.png", content_type="image/png"),
            key=wrong,
        )

    run(fn, sim.base_url, key=wrong)
    assert sim.stats()["submits_accepted"] == 0


def test_invalid_request_is_rejected(sim: Any) -> None:
    async def fn(p: WaveSpeedProvider) -> None:
        exc = await expect(RequestRejectedError, p.submit(body(prompt="")))
        assert exc.status_code == 400 and str(exc)
        exc = await expect(RequestRejectedError, p.fetch_status("no-such-task"))
        assert exc.status_code == 404

    run(fn, sim.base_url)
    assert sim.stats()["submits_accepted"] == 0


def test_rate_limited_is_not_accepted_with_retry_after() -> None:
    with simulator.Simulator(sim_config(rate_429=1.0, retry_after=3.0)) as server:

        async def fn(p: WaveSpeedProvider) -> None:
            exc = await expect(NotAcceptedError, p.submit(body()))
            assert exc.status_code == 429 and exc.retry_after == 3.0
            exc = await expect(TransientError, p.fetch_status("abc"))
            assert exc.status_code == 429 and exc.retry_after == 3.0

        run(fn, server.base_url)
        assert server.stats()["submits_accepted"] == 0


def test_5xx_is_not_accepted_or_ambiguous() -> None:
    """With every submit failing 5xx: 503 means no task; 500/502/504 mean maybe a task."""
    with simulator.Simulator(sim_config(rate_5xx=1.0)) as server:

        async def fn(p: WaveSpeedProvider) -> list[ProviderError]:
            errors: list[ProviderError] = []
            for i in range(30):
                with pytest.raises((NotAcceptedError, AmbiguousSubmitError)) as info:
                    await p.submit(body(seed=i + 1))
                assert_no_key(info.value)
                errors.append(info.value)
            return errors

        errors = run(fn, server.base_url)
        stats = server.stats()
    codes = {type(e): set() for e in errors}
    for e in errors:
        codes[type(e)].add(e.status_code)
    assert codes.get(NotAcceptedError) == {503}
    assert codes.get(AmbiguousSubmitError, set()) <= {500, 502, 504}
    assert AmbiguousSubmitError in codes, "expected some 500/502/504 in 30 tries"
    # Every ambiguous answer stood for a task the server really created.
    created = len(stats["tasks"])
    assert created == sum(isinstance(e, AmbiguousSubmitError) for e in errors)


def test_dropped_connection_is_ambiguous() -> None:
    with simulator.Simulator(sim_config(drop_rate=1.0)) as server:

        async def fn(p: WaveSpeedProvider) -> None:
            await expect(AmbiguousSubmitError, p.submit(body()))

        run(fn, server.base_url)
        assert len(server.stats()["tasks"]) == 1, "the task exists although we got no answer"


def test_failed_task_reports_error() -> None:
    with simulator.Simulator(sim_config(fail_rate=1.0)) as server:

        async def fn(p: WaveSpeedProvider) -> TaskStatus:
            task = await p.submit(body())
            return await poll_until_done(p, task.task_id, task.poll_url)

        status = run(fn, server.base_url)
    assert status.state == "failed" and status.error and not status.outputs


def test_read_timeout_on_submit_is_ambiguous() -> None:
    """A sync-mode POST held longer than our read timeout: the task exists, we got no answer."""
    with simulator.Simulator(sim_config(latency=2.0)) as server:

        async def main() -> None:
            timeout = httpx.Timeout(connect=2.0, read=0.3, write=2.0, pool=2.0)
            async with WaveSpeedProvider(KEY, server.base_url, timeout=timeout) as p:
                exc = await expect(AmbiguousSubmitError, p.submit(body(enable_sync_mode=True)))
                assert "ReadTimeout" in str(exc)

        asyncio.run(main())
        assert server.stats()["submits_accepted"] == 1


def test_many_tasks_share_one_pool(sim: Any) -> None:
    async def one(p: WaveSpeedProvider, seed: int) -> bytes:
        task = await p.submit(body(seed=seed, aspect_ratio="1:1"))
        status = await poll_until_done(p, task.task_id, task.poll_url)
        return await collect(p, status.outputs[0])

    async def fn(p: WaveSpeedProvider) -> list[bytes]:
        return await asyncio.gather(*(one(p, seed) for seed in range(1, 21)))

    images = run(fn, sim.base_url)
    assert len(images) == 20 and all(img.startswith(b"\x89PNG") for img in images)
    stats = sim.stats()
    assert stats["submits_accepted"] == 20 and stats["downloads"] == 20
