"""The web studio's Account page and history model filter over plain HTTP against a running
server and the real simulator: the balance the simulator serves (``GET /api/v3/balance``) is on
the page, the key never is, an unreachable service is one line, and the history's model select
shows only that model's generations."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import encode_image
from web_support import WebServer

from refstudio import Studio
from refstudio.simulator import Simulator
from refstudio.web.accounts import rows_of

KEY = "sim-key-web-account-0123456789"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    with Studio.init(tmp_path / "proj") as studio:
        src = tmp_path / "mara.png"
        src.write_bytes(encode_image((800, 1000), seed=1))
        studio.add_reference("mara", [src], kind="character")
    return tmp_path / "proj"


@pytest.fixture
def sim(make_sim: Callable[..., Simulator], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> Simulator:
    server = make_sim(latency=0.05, key=KEY, balance=12.34)
    # The key reaches the server the way a user sets it: the environment.
    monkeypatch.setenv("WAVESPEED_API_KEY", KEY)
    monkeypatch.setenv("WAVESPEED_BASE_URL", server.base_url)
    monkeypatch.setenv("REFSTUDIO_OFFLINE_DIR", str(tmp_path / "offline"))
    return server


def _section(html: str, provider: str) -> str:
    match = re.search(rf'<section class="provider-account" aria-label="{provider} account">'
                      r"(.*?)</section>", html, re.S)
    assert match, f"no {provider} section on the page"
    return match.group(1)


def test_the_account_page_shows_the_simulators_balance_and_never_the_key(
        sim: Simulator, root: Path) -> None:
    with WebServer(root) as server:
        page = httpx.get(server.url + "/account", timeout=20)
    assert page.status_code == 200, page.text
    section = _section(page.text, "wavespeed")
    assert "<dt>Balance (US$)</dt><dd>12.34</dd>" in section
    assert 'class="error"' not in section
    assert "runway" not in page.text.lower().split("<h1>account</h1>")[1].split("</dl>", 1)[1]
    assert KEY not in page.text
    # The summary is still there.
    assert "<dt>Spent (estimated)</dt>" in page.text
    assert sim.stats()["submits_received"] == 0  # reading the account sends no work


def test_an_unreachable_service_is_one_line_not_a_500(
        monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("WAVESPEED_API_KEY", KEY)
    monkeypatch.setenv("WAVESPEED_BASE_URL", f"http://127.0.0.1:{port}")
    with WebServer(root) as server:
        page = httpx.get(server.url + "/account", timeout=60)
    assert page.status_code == 200, page.text
    section = _section(page.text, "wavespeed")
    errors = re.findall(r'<p class="error">([^<]*)</p>', section)
    assert len(errors) == 1 and errors[0].startswith("could not read the account: ")
    assert "\n" not in errors[0]
    assert "<dt>Balance" not in section
    assert KEY not in page.text


def test_no_key_means_no_account_to_read(root: Path) -> None:
    with WebServer(root) as server:
        page = httpx.get(server.url + "/account", timeout=20)
    assert page.status_code == 200
    assert "No provider key is set" in page.text
    assert 'class="provider-account"' not in page.text


def test_summary_rows_hide_the_endpoint_and_any_key_and_state_what_is_unknown() -> None:
    rows = rows_of({"provider": "runway", "base_url": "http://x", "api_key": "secret",
                    "credit_balance": 40, "max_monthly_credit_spend": None,
                    "models": {"gen4_image": {"max_concurrent": 2, "max_daily": 50,
                                              "used_today": 3, "remaining_today": 47}}})
    assert rows == [("Credits", "40"), ("Monthly credit limit", "not stated"),
                    ("Per model: gen4_image",
                     "at once 2, per day 50, used today 3, left today 47")]
    assert rows_of({"provider": "x", "note": "this provider's account cannot be read"}) == [
        ("Note", "this provider's account cannot be read")]


def test_the_history_model_select_shows_only_that_models_generations(
        sim: Simulator, root: Path) -> None:
    with Studio.open(root) as studio:
        gen4 = studio.generate("@mara at noon", model="gen4", provider="wavespeed")
        seedream = studio.generate("@mara at dusk", model="seedream-v4", provider="wavespeed")
    assert [g.status for g in gen4 + seedream] == ["completed", "completed"]
    model_id = seedream[0].model_id
    with WebServer(root) as server, httpx.Client(base_url=server.url, timeout=20) as client:
        everything = client.get("/generations").text
        only = client.get("/generations", params={"model": model_id})
        ignored = client.get("/generations", params={"model": "<b>nope</b>"}).text
    assert f'id="gen-{gen4[0].id}"' in everything and f'id="gen-{seedream[0].id}"' in everything
    assert only.status_code == 200
    assert f'id="gen-{seedream[0].id}"' in only.text
    assert f'id="gen-{gen4[0].id}"' not in only.text
    assert f'<option value="{model_id}" selected>' in only.text
    assert 'name="model"' in everything and 'value="wavespeed:runwayml/gen4-image"' in everything
    # A model not in the catalog filters nothing and is never echoed.
    assert f'id="gen-{gen4[0].id}"' in ignored and "<b>nope" not in ignored
