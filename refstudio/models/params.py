"""Validation of model parameters and prompt text, before anything is stored or sent.

Decisions: aspect ratios may also be written ``16x9``, ``16X9`` or ``16/9`` (a CLI user types
what a screen spec shows) and are normalised to ``16:9``; resolutions are case-insensitive and
the ``p`` may be left out (``720`` -> ``720p``). Seeds must be real integers (``True`` is not a
seed) in ``gen4.SEED_MIN .. gen4.SEED_MAX``; None means "let the provider pick".
"""

from __future__ import annotations

import math
import re

from ..errors import ParameterError
from . import gen4
from .request import GenParams

__all__ = ["MAX_BATCH", "SQLITE_INT_MAX", "check_batch_size", "check_concurrency",
           "check_cost_limit", "check_generation_id", "check_limit", "normalize_aspect_ratio",
           "parse_output_handle", "validate_params", "validate_prompt_text"]

#: Most variants one command (or one workflow step) asks for. The budget is the real limit;
#: this one keeps a typo (-n 100000) from writing a hundred thousand rows. They are sent at the
#: account's concurrency, never all at once.
MAX_BATCH = 1000

_RATIO_SEPARATORS = re.compile(r"\s*[xX/:]\s*")


def normalize_aspect_ratio(value: str) -> str:
    """``"16x9"``/``"16/9"``/``" 16:9 "`` -> ``"16:9"``; raises ParameterError if not allowed."""
    ratio = _RATIO_SEPARATORS.sub(":", str(value).strip(), count=1)
    if ratio not in gen4.ASPECT_RATIOS:
        raise ParameterError(
            f"aspect ratio {value!r} is not supported; "
            f"allowed: {', '.join(gen4.ASPECT_RATIOS)}",
        )
    return ratio


def _normalize_resolution(value: str) -> str:
    res = str(value).strip().lower()
    if res.isdigit():
        res += "p"
    if res not in gen4.RESOLUTIONS:
        raise ParameterError(
            f"resolution {value!r} is not supported; allowed: {', '.join(gen4.RESOLUTIONS)}"
        )
    return res


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ParameterError(f"seed must be an integer, not {type(seed).__name__} {seed!r}")
    if not gen4.SEED_MIN <= seed <= gen4.SEED_MAX:
        raise ParameterError(
            f"seed {seed} is out of range; allowed: {gen4.SEED_MIN} to {gen4.SEED_MAX}"
        )
    return seed


def validate_params(
    aspect_ratio: str | None = None,
    resolution: str | None = None,
    seed: int | None = None,
) -> GenParams:
    """Check and normalise generation parameters; None takes the model default (seed: none).

    Raises :class:`~refstudio.errors.ParameterError` naming the allowed values.
    """
    return GenParams(
        aspect_ratio=normalize_aspect_ratio(
            gen4.DEFAULT_ASPECT_RATIO if aspect_ratio is None else aspect_ratio
        ),
        resolution=_normalize_resolution(
            gen4.DEFAULT_RESOLUTION if resolution is None else resolution
        ),
        seed=None if seed is None else _check_seed(seed),
    )


def validate_prompt_text(text: str) -> str:
    """Return ``text`` unchanged if a provider would accept it as a prompt.

    It must not be blank and must fit :data:`refstudio.models.gen4.PROMPT_MAX_UTF16` UTF-16
    code units (Runway's unit: an emoji counts 2). Raises
    :class:`~refstudio.errors.ParameterError` giving the count.
    """
    if not isinstance(text, str) or not text.strip():
        raise ParameterError("the prompt is empty", hint="write what the image should show")
    units = gen4.utf16_length(text)
    if units > gen4.PROMPT_MAX_UTF16:
        raise ParameterError(
            f"the prompt is {units} UTF-16 code units long; the model takes at most "
            f"{gen4.PROMPT_MAX_UTF16} ({units - gen4.PROMPT_MAX_UTF16} too many)",
            hint="shorten it; template whitespace is already collapsed",
        )
    return text


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
