"""The web studio's gates over plain HTTP against a running server: the token outside
loopback, CSRF on every state-changing route, the Host check, escaping, no path from a request
reaching a file, uploads held to ``ref add``'s checks, and no secret in any page."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import encode_image, write_bad_image
from starlette.routing import Route
from web_support import WebServer, csrf_of, session_client

from refstudio import Studio


@pytest.fixture
def root(tmp_path: Path, make_image: object) -> Path:
    with Studio.init(tmp_path / "proj") as studio:
        src = tmp_path / "mara.png"
        src.write_bytes(encode_image((800, 1000), seed=1))
        studio.add_reference("mara", [src], kind="character", tags=["hero"])
    return tmp_path / "proj"


@pytest.fixture
def server(root: Path) -> Iterator[WebServer]:
    with WebServer(root) as running:
        yield running


@pytest.fixture
def guarded(root: Path) -> Iterator[WebServer]:
    """A server whose policy is for a non-loopback address: the token is required."""
    with WebServer(root, policy_host="0.0.0.0") as running:
        yield running


def _count_generations(root: Path) -> int:
    with Studio.open(root) as studio:
        return len(studio.history(limit=None))


def test_a_non_loopback_server_requires_the_token(guarded: WebServer) -> None:
    token = guarded.policy.token
    assert token and len(token) >= 24
    with httpx.Client(base_url=guarded.url, timeout=10) as bare:
        for path in ("/", "/compose", "/api/names?q=ma", "/static/studio.js", "/account"):
            assert bare.get(path).status_code == 401, path
        assert bare.get("/?token=wrong" + token).status_code == 401
        assert bare.get("/", headers={"authorization": "Bearer nope"}).status_code == 401
        assert bare.post("/compose", data={"prompt": "x"}).status_code == 401
    # The printed address: the token once, then a cookie, and the token leaves the address.
    with httpx.Client(base_url=guarded.url, timeout=10) as browser:
        first = browser.get(f"/?token={token}&q=ma")
        assert first.status_code == 303
        assert first.headers["location"] == "/?q=ma"
        assert "HttpOnly" in first.headers["set-cookie"]
        assert "SameSite=Strict" in first.headers["set-cookie"]
        assert browser.get("/").status_code == 200
        # The redirect stays on this server, whatever the path.
        raw = httpx.URL(guarded.url).copy_with(raw_path=f"//evil.example/?token={token}".encode())
        away = browser.get(raw)
        assert away.headers["location"] == "/evil.example/"
    with httpx.Client(base_url=guarded.url, timeout=10,
                      headers={"authorization": f"Bearer {token}"}) as api:
        assert api.get("/api/names?q=ma").json()[0]["name"] == "mara"


def test_every_state_changing_route_checks_the_csrf_token(server: WebServer, root: Path) -> None:
    post_routes = [r for r in server.app.routes
                   if isinstance(r, Route) and r.methods and "POST" in r.methods]
    assert len(post_routes) >= 5
    for route in post_routes:  # each reads its form only after checking the token
        assert getattr(route.endpoint, "csrf_checked", False), route.path
    client, token = session_client(server)
    with closing(client):
        cases = {"/compose": {"prompt": "@mara in the rain", "provider": "offline"},
                 "/refs/mara/primary": {"image": "1"},
                 "/outputs/1/0/promote": {"name": "mara_v2"},
                 "/workflows/none/run": {}}
        for path, data in cases.items():
            assert client.post(path, data=data).status_code == 403, path
            assert client.post(path, data={**data, "csrf_token": "0" * 64}).status_code == 403
        # Another session's token is no good either.
        other, other_token = session_client(server)
        other.close()
        assert other_token != token
        assert client.post("/compose", data={"prompt": "x", "csrf_token": other_token}
                           ).status_code == 403
        # A cross-site post carrying the right token is refused too (Origin / Sec-Fetch-Site).
        evil = client.post("/compose", data={"prompt": "@mara", "csrf_token": token},
                           headers={"origin": "http://evil.example"})
        assert evil.status_code == 403
        assert client.post("/compose", data={"prompt": "@mara", "csrf_token": token},
                           headers={"sec-fetch-site": "cross-site"}).status_code == 403
        assert _count_generations(root) == 0  # nothing refused was recorded
        ok = client.post("/compose", data={"prompt": "@mara in the rain", "n": "1",
                                           "provider": "offline", "csrf_token": token})
        assert ok.status_code == 303 and ok.headers["location"].startswith("/generations?watch=")
    assert _count_generations(root) == 1


def test_loopback_refuses_other_host_names(server: WebServer) -> None:
    """A page whose DNS name was rebound to 127.0.0.1 sends its own Host: refused."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/", headers={"host": f"evil.example:{server.port}"}).status_code == 421
        assert client.get("/", headers={"host": f"localhost:{server.port}"}).status_code == 200


def test_headers_forbid_inline_script_and_framing(server: WebServer) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page.text and 'src="/static/studio.js"' in page.text


def test_images_only_by_hash_never_by_path(server: WebServer, root: Path) -> None:
    with Studio.open(root) as studio:
        sha = studio.reference("mara").images[0].sha256
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get(f"/media/{sha}").content == encode_image((800, 1000), seed=1)
        thumb = client.get(f"/thumbs/{sha}")
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        for bad in ("/media/..%2f..%2frefstudio.toml", "/media/" + "0" * 64,
                    "/media/%2e%2e/library.db", "/thumbs/../../library.db",
                    f"/media/{sha[:-1]}g", "/static/../library.db",
                    "/static/%2e%2e/server.py"):
            assert client.get(bad).status_code in (404, 400), bad


def test_upload_is_checked_like_ref_add(server: WebServer, root: Path, tmp_path: Path) -> None:
    client, token = session_client(server)
    bad = write_bad_image("bomb_header", tmp_path / "bomb.png")
    with closing(client):
        refused = client.post("/refs", data={"name": "bomb", "csrf_token": token},
                              files={"images": ("bomb.png", bad.read_bytes(), "image/png")})
        assert refused.status_code == 400
        assert "bomb" in refused.text and "error" in refused.text
        text = client.post("/refs", data={"name": "notes", "csrf_token": token},
                           files={"images": ("notes.png", b"just words\n" * 50, "image/png")})
        assert text.status_code == 400
        with Studio.open(root) as studio:
            assert [r.name for r in studio.references()] == ["mara"]
        small = encode_image((300, 300), seed=3)
        added = client.post("/refs", data={"name": "tiny", "kind": "object",
                                           "csrf_token": token},
                            files={"images": ("tiny.png", small, "image/png")})
        assert added.status_code == 303
        page = client.get(added.headers["location"])
        assert "Added @tiny with 1 image(s)" in page.text
        assert "Image is small" in page.text  # the same quality warning `ref add` prints


def test_user_text_is_escaped_and_no_secret_reaches_a_page(root: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           ) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", "ws-secret-key-7f3a9c")
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    with Studio.open(root) as studio:
        studio.update_reference("mara", description=hostile)
    with WebServer(root) as server:
        client, token = session_client(server)
        with closing(client):
            pages = [client.get(p).text for p in ("/", "/refs/mara", "/account",
                                                  "/compose?prompt=" + hostile)]
            for html in pages:
                assert "ws-secret-key" not in html and "7f3a9c" not in html
                assert "<script>alert" not in html and "<img src=x" not in html
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[1]
            assert csrf_of(pages[0]) == token


def test_a_refused_key_is_an_error_on_the_page_not_a_crash(root: Path, make_sim: Any) -> None:
    sim = make_sim(key="the-right-key", latency=0.2)
    options = {"wavespeed": {"api_key": "a-wrong-key", "base_url": sim.base_url}}
    with WebServer(root, provider_options=options) as server:
        client, token = session_client(server)
        with closing(client):
            answer = client.post("/compose", data={"prompt": "@mara", "provider": "wavespeed",
                                                   "csrf_token": token})
            deadline = time.monotonic() + 20
            while True:
                page = client.get("/generations").text
                if 'class="status status-failed" role="status">failed' in page:
                    break
                assert time.monotonic() < deadline, page
                time.sleep(0.2)
            assert answer.status_code == 303
            assert "a-wrong-key" not in page and "Traceback" not in page
            # The card says why, in the provider's words, with what to do.
            assert re.search(r'class="detail">[^<]*401[^<]*API key', page)


def test_a_refused_prompt_is_said_once_on_the_compose_page(server: WebServer,
                                                           root: Path) -> None:
    client, token = session_client(server)
    with closing(client):
        answer = client.post("/compose", data={"prompt": "@marra in the rain", "n": "2",
                                               "provider": "offline", "csrf_token": token})
        assert answer.status_code == 400
        assert "marra" in answer.text and "did you mean @mara?" in answer.text
        assert "@marra in the rain</textarea>" in answer.text  # what was typed is kept
        page = client.get("/generations").text
        assert "Errors in background work" not in page
    assert _count_generations(root) == 0
