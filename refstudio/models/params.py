"""Validation of the numbers a user gives any command, before anything is stored or sent.

What a *model* takes (sizes, seeds, options, prompt length) is its spec's business
(:mod:`refstudio.models.spec`); this module checks the rest: budgets, batch sizes, ids, limits.
"""

from __future__ import annotations

import math

from ..errors import ParameterError

__all__ = ["MAX_BATCH", "SQLITE_INT_MAX", "check_batch_size", "check_concurrency",
           "check_cost_limit", "check_generation_id", "check_limit", "parse_output_handle"]

#: Most variants one command (or one workflow step) asks for. The budget is the real limit;
#: this one keeps a typo (-n 100000) from writing a hundred thousand rows. They are sent at the
#: account's concurrency, never all at once.
MAX_BATCH = 1000


def check_cost_limit(value: float | None, name: str = "max_cost") -> float | None:
    """A cost limit in US dollars as given (None: no limit), or ParameterError.

    NaN compares false with everything, so a NaN limit would let any cost through; infinity
    and negative numbers are no budget anyone means. All three are refused before any work.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"{name} must be a number of US dollars, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ParameterError(
            f"{name} must be a finite amount of US dollars, 0 or more, not {value}",
            hint="leave it out for no per-command limit",
        )
    return float(value)


def check_batch_size(n: int, name: str = "n") -> int:
    """The number of variants, or ParameterError outside 1..:data:`MAX_BATCH`."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise ParameterError(f"{name} must be a whole number of variants, not {n!r}")
    if not 1 <= n <= MAX_BATCH:
        raise ParameterError(
            f"{name} must be between 1 and {MAX_BATCH}, not {n}",
            hint=f"send larger sets as several commands of at most {MAX_BATCH}",
        )
    return n


#: SQLite keeps integers in 64 bits: an id, index or limit past this cannot name a row, and
#: handing it to SQLite raises OverflowError. Every such number from a user is checked here.
SQLITE_INT_MAX = 2**63 - 1
_SQLITE_INT_MIN = -(2**63)


def _check_integer(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterError(f"{name} must be a whole number, not {value!r}")
    if not _SQLITE_INT_MIN <= value <= SQLITE_INT_MAX:
        raise ParameterError(f"{name} {value} is out of range (at most {SQLITE_INT_MAX})")
    return value


def check_generation_id(generation_id: int, name: str = "generation id") -> int:
    """A generation id that SQLite can look up (whether it exists is the caller's question)."""
    return _check_integer(generation_id, name)


def check_limit(limit: int | None, name: str = "limit") -> int | None:
    """A number of rows to show: None or 0 for all, else 1..:data:`SQLITE_INT_MAX`."""
    if limit is None:
        return None
    _check_integer(limit, name)
    if limit < 0:
        raise ParameterError(f"{name} must be 0 (all) or more, not {limit}")
    return limit


def parse_output_handle(handle: str) -> tuple[int, int]:
    """``"12"``/``"#12"`` -> ``(12, 0)``, ``"12:1"`` -> ``(12, 1)``: a generation and the index of
    one of its outputs, both in SQLite's integer range; ParameterError otherwise."""
    gen_text, _, index_text = handle.partition(":")
    try:
        gen_id, index = int(gen_text.lstrip("#")), int(index_text) if index_text else 0
    except ValueError:
        raise ParameterError(
            f"{handle!r} is not GEN_ID or GEN_ID:INDEX (e.g. 12 or 12:1)") from None
    return check_generation_id(gen_id), _check_integer(index, "output index")


def check_concurrency(value: int | None, name: str = "concurrency") -> int | None:
    """How many run at once: None for the default, else a whole number of at least 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError(f"{name} must be a whole number of at least 1, not {value!r}",
                             hint="leave it out for the project's setting")
    return value
