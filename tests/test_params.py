"""Parameter and prompt-text validation."""

from __future__ import annotations

import pytest

from refstudio import Studio
from refstudio.errors import ParameterError
from refstudio.models import gen4
from refstudio.models.params import (
    SQLITE_INT_MAX,
    check_generation_id,
    check_limit,
    normalize_aspect_ratio,
    parse_output_handle,
    validate_params,
    validate_prompt_text,
)
from refstudio.providers.base import GenParams


def test_defaults() -> None:
    assert validate_params() == GenParams(gen4.DEFAULT_ASPECT_RATIO, gen4.DEFAULT_RESOLUTION, None)


@pytest.mark.parametrize("ratio", gen4.ASPECT_RATIOS)
def test_every_aspect_ratio(ratio: str) -> None:
    assert validate_params(aspect_ratio=ratio).aspect_ratio == ratio


@pytest.mark.parametrize(
    ("written", "normal"), [("16x9", "16:9"), ("9X16", "9:16"), ("4/3", "4:3"), (" 1 : 1 ", "1:1")]
)
def test_aspect_ratio_spellings(written: str, normal: str) -> None:
    assert normalize_aspect_ratio(written) == normal


@pytest.mark.parametrize("bad", ["2:1", "16:10", "", "16", "16:9:1", "wide"])
def test_bad_aspect_ratio_names_allowed(bad: str) -> None:
    with pytest.raises(ParameterError) as info:
        validate_params(aspect_ratio=bad)
    assert "1:1, 16:9, 9:16, 4:3, 3:4" in str(info.value)


@pytest.mark.parametrize(
    ("written", "normal"), [("720p", "720p"), ("1080P", "1080p"), ("720", "720p")]
)
def test_resolution(written: str, normal: str) -> None:
    assert validate_params(resolution=written).resolution == normal


def test_bad_resolution() -> None:
    with pytest.raises(ParameterError, match=r"'4k' is not supported; allowed: 1080p, 720p"):
        validate_params(resolution="4k")


@pytest.mark.parametrize("seed", [gen4.SEED_MIN, 42, gen4.SEED_MAX])
def test_seed_range(seed: int) -> None:
    assert validate_params(seed=seed).seed == seed


@pytest.mark.parametrize("seed", [0, -1, gen4.SEED_MAX + 1])
def test_seed_out_of_range(seed: int) -> None:
    with pytest.raises(ParameterError, match="allowed: 1 to 2147483647"):
        validate_params(seed=seed)


@pytest.mark.parametrize("seed", [True, 1.5, "7"])
def test_seed_must_be_int(seed: object) -> None:
    with pytest.raises(ParameterError, match="must be an integer"):
        validate_params(seed=seed)  # type: ignore[arg-type]


def test_prompt_text_ok() -> None:
    text = "x" * gen4.PROMPT_MAX_UTF16
    assert validate_prompt_text(text) is text


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_prompt_empty(text: str) -> None:
    with pytest.raises(ParameterError, match="empty"):
        validate_prompt_text(text)


def test_prompt_too_long_counts_utf16() -> None:
    # 999 ASCII + one emoji = 1001 UTF-16 units although len() is 1000
    text = "a" * 999 + "\N{GRINNING FACE}"
    assert len(text) == gen4.PROMPT_MAX_UTF16
    with pytest.raises(ParameterError) as info:
        validate_prompt_text(text)
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
