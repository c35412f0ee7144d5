"""Parameter and prompt-text validation."""

from __future__ import annotations

import pytest

from refstudio import Studio
from refstudio.errors import ParameterError
from refstudio.models import catalog
from refstudio.models.compose import compose_options
from refstudio.models.params import (
    SQLITE_INT_MAX,
    check_generation_id,
    check_limit,
    parse_output_handle,
)
from refstudio.models.sizes import normalize_ratio

GEN4 = catalog.get("gen4")
SEED = GEN4.seed
assert SEED is not None


def test_defaults() -> None:
    assert GEN4.params(compose_options(GEN4)) == {
        "aspect_ratio": "16:9", "resolution": "1080p", "seed": None}


@pytest.mark.parametrize("ratio", ["1:1", "16:9", "9:16", "4:3", "3:4"])
def test_every_aspect_ratio(ratio: str) -> None:
    assert compose_options(GEN4, aspect_ratio=ratio).aspect_ratio == ratio  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("written", "normal"), [("16x9", "16:9"), ("9X16", "9:16"), ("4/3", "4:3"), (" 1 : 1 ", "1:1")]
)
def test_aspect_ratio_spellings(written: str, normal: str) -> None:
    assert normalize_ratio(written) == normal


@pytest.mark.parametrize("bad", ["2:1", "16:10", "", "16", "16:9:1", "wide"])
def test_bad_aspect_ratio_is_refused(bad: str) -> None:
    with pytest.raises(ParameterError) as info:
        compose_options(GEN4, aspect_ratio=bad)
    assert "not W:H" in str(info.value) or "16:9 4:3 1:1 3:4 9:16" in str(info.value)


@pytest.mark.parametrize(
    ("written", "normal"), [("720p", "720p"), ("1080P", "1080p"), ("720", "720p")]
)
def test_resolution(written: str, normal: str) -> None:
    assert compose_options(GEN4, resolution=written).resolution == normal  # type: ignore[attr-defined]


def test_bad_resolution() -> None:
    with pytest.raises(ParameterError,
                       match=r"cannot make resolution 4k; it makes: .* at 1080p 720p"):
        compose_options(GEN4, resolution="4k")


@pytest.mark.parametrize("seed", [SEED.low, 42, SEED.high])
def test_seed_range(seed: int) -> None:
    assert GEN4.seed_of(compose_options(GEN4, seed=seed)) == seed


@pytest.mark.parametrize("seed", [0, -1, SEED.high + 1])
def test_seed_out_of_range(seed: int) -> None:
    with pytest.raises(ParameterError, match="out of range; must be from 1 to 2147483647"):
        compose_options(GEN4, seed=seed)


@pytest.mark.parametrize("seed", [True, 1.5, "7"])
def test_seed_must_be_int(seed: object) -> None:
    with pytest.raises(ParameterError, match="valid integer"):
        compose_options(GEN4, seed=seed)  # type: ignore[arg-type]


def test_prompt_text_ok() -> None:
    assert GEN4.prompt_max is not None
    text = "x" * GEN4.prompt_max
    assert GEN4.check_prompt(text) is text


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_prompt_empty(text: str) -> None:
    with pytest.raises(ParameterError, match="empty"):
        GEN4.check_prompt(text)


def test_prompt_too_long_counts_utf16() -> None:
    # 999 ASCII + one emoji = 1001 UTF-16 units although len() is 1000
    text = "a" * 999 + "\N{GRINNING FACE}"
    assert len(text) == GEN4.prompt_max
    with pytest.raises(ParameterError) as info:
        GEN4.check_prompt(text)
    assert "1001 UTF-16 code units" in str(info.value)
    assert "at most 1000" in str(info.value)


# -- ids, output handles and limits: bounded to SQLite's 64-bit integers ------------------------


@pytest.mark.parametrize(("handle", "parsed"), [("12", (12, 0)), ("#12", (12, 0)),
                                                ("12:1", (12, 1)),
                                                (f"{SQLITE_INT_MAX}:0", (SQLITE_INT_MAX, 0))])
def test_output_handle(handle: str, parsed: tuple[int, int]) -> None:
    assert parse_output_handle(handle) == parsed


@pytest.mark.parametrize("handle", ["9" * 20, "9" * 20 + ":0", "1:" + "9" * 20, "9" * 5000,
                                    "abc", "1:x", ""])
def test_bad_output_handle(handle: str) -> None:
    with pytest.raises(ParameterError):
        parse_output_handle(handle)


def test_ids_and_limits_past_sqlite_refused_by_the_api(project: Studio) -> None:
    """Before: OverflowError from sqlite3 (a traceback in the CLI)."""
    huge = SQLITE_INT_MAX + 1
    for call in (lambda: project.generation(huge), lambda: project.retry_cost(huge),
                 lambda: project.promote(huge, "hero"), lambda: project.history(limit=huge),
                 lambda: project.history(limit=-1)):
        with pytest.raises(ParameterError):
            call()
    assert check_limit(None) is None and check_limit(0) == 0
    assert check_generation_id(SQLITE_INT_MAX) == SQLITE_INT_MAX


@pytest.mark.parametrize("bad", [0, -3, True, 2.5])
def test_run_concurrency_below_one_refused_before_anything(project: Studio, bad: object) -> None:
    """Before: -3 became a run of one step at a time (and 0 the default), silently."""
    (project.root / "workflows" / "w.toml").write_text(
        '[[step]]\nid = "a"\nprompt = "a quiet street"\n', "utf-8")
    with pytest.raises(ParameterError, match="concurrency"):
        project.run_workflow("w", concurrency=bad, provider="offline")  # type: ignore[arg-type]
    assert project.history(limit=None) == []
