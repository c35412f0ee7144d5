"""Messages built from other errors read as sentences: no doubled full stop ("response.. The"),
no stop before a semicolon or comma, whatever the transport's own words end with.

Each fault is real: the project's simulator drops the connection, answers 5xx, or refuses the
key; the messages are read back from the library and from the CLI, as a user sees them.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import run_cli

from refstudio import Studio
from refstudio.errors import clause
from refstudio.simulator import Simulator, SimulatorConfig

KEY = "sk-messages"
#: A stop doubled (but not an ellipsis), or a stop right before ; or , — and ". ." too.
BAD_PUNCTUATION = re.compile(r"(?<!\.)\.\.(?!\.)|\.[;,]|\. \.")


def assert_reads_well(text: str) -> None:
    assert text, "an empty message"
    assert not BAD_PUNCTUATION.search(text), text


@contextlib.contextmanager
def simulator(monkeypatch: pytest.MonkeyPatch, **faults: Any) -> Iterator[Simulator]:
    options: dict[str, Any] = {"latency": 0.1, "jitter": 0.0, "key": KEY, "seed": 5, **faults}
    with Simulator(SimulatorConfig(**options)) as server:
        monkeypatch.setenv("WAVESPEED_API_KEY", KEY)
        monkeypatch.setenv("WAVESPEED_BASE_URL", server.base_url)
        monkeypatch.setenv("REFSTUDIO_NO_PROGRESS", "1")
        yield server


@pytest.fixture(params=[
    pytest.param({"drop_rate": 1.0}, id="dropped-connection"),
    pytest.param({"rate_5xx": 1.0}, id="server-error"),
    pytest.param({"key": "sk-another-key"}, id="wrong-key"),
])
def faulty(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with simulator(monkeypatch, **request.param):
        yield


def test_generation_errors_read_as_sentences(faulty: None, project: Studio) -> None:
    root = project.root
    project.close()
    result = run_cli("--project", str(root), "gen", "a quiet harbour", "--provider", "wavespeed",
                     "--resolution", "720p")
    assert result.returncode != 0
    for line in (result.stdout + result.stderr).splitlines():
        if line.strip():
            assert_reads_well(line)
    with Studio.open(root) as studio:
        [gen] = studio.history()
        assert gen.status in ("failed", "unknown")
        assert_reads_well(gen.error)
    shown = run_cli("--project", str(root), "show", str(gen.id))
    assert shown.returncode == 0, shown.stderr
    assert_reads_well(shown.stdout)


def test_dropped_connection_message_names_what_happened(
    project: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    with simulator(monkeypatch, drop_rate=1.0):
        [gen] = project.generate("a quiet harbour", provider="wavespeed", resolution="720p")
    assert gen.status == "unknown"
    assert ("Server disconnected without sending a response. The request may have been "
            "accepted and billed") in gen.error


@pytest.mark.parametrize(
    ("words", "joined"),
    [
        ("Server disconnected without sending a response.", "Server disconnected without "
                                                             "sending a response"),
        ("no stop", "no stop"),
        ("trailing space. ", "trailing space"),
        ("", ""),
    ],
)
def test_clause_drops_the_final_stop(words: str, joined: str) -> None:
    assert clause(words) == joined
    assert clause(ValueError(words)) == joined

