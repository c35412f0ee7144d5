"""Strict checking of a submit body against the ``runwayml/gen4-image`` schema.

Strict on purpose: the real service's tolerance is undocumented, so the simulator refuses
anything the protocol notes do not allow, and a client bug shows up here rather than on a bill.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from refstudio.models import gen4

__all__ = ["ValidationError", "parse_history_query", "validate_submit"]


class ValidationError(ValueError):
    """A submit body broke a rule; the message names the field."""


_ALLOWED_FIELDS = frozenset(
    {
        "prompt",
        "aspect_ratio",
        "resolution",
        "reference_images",
        "seed",
        "enable_base64_output",
        "enable_sync_mode",
    }
)


def validate_submit(body: Any) -> dict[str, Any]:
    """Check a submit body against the model's schema; return it with defaults filled in."""
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    for key in body:
        if key not in _ALLOWED_FIELDS:
            raise ValidationError(f"unknown field '{key}'")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValidationError("field 'prompt' is required and must be a non-empty string")
    if gen4.utf16_length(prompt) > gen4.PROMPT_MAX_UTF16:
        raise ValidationError(
            f"field 'prompt' is longer than {gen4.PROMPT_MAX_UTF16} UTF-16 code units"
        )
    # The docs disagree on the default aspect ratio; the simulator picks the gen4 module's.
    aspect_ratio = body.get("aspect_ratio", gen4.DEFAULT_ASPECT_RATIO)
    if aspect_ratio not in gen4.ASPECT_RATIOS or not isinstance(aspect_ratio, str):
        raise ValidationError(
            f"field 'aspect_ratio' must be one of {', '.join(gen4.ASPECT_RATIOS)}; "
            f"got {aspect_ratio!r}"
        )
    resolution = body.get("resolution", gen4.DEFAULT_RESOLUTION)
    if resolution not in gen4.RESOLUTIONS or not isinstance(resolution, str):
        raise ValidationError(
            f"field 'resolution' must be one of {', '.join(gen4.RESOLUTIONS)}; got {resolution!r}"
        )
    refs = body.get("reference_images", [])
    if not isinstance(refs, list):
        raise ValidationError("field 'reference_images' must be a list of URLs")
    if len(refs) > gen4.MAX_REFERENCES:
        raise ValidationError(
            f"field 'reference_images' holds {len(refs)} images; at most "
            f"{gen4.MAX_REFERENCES} are allowed"
        )
    for i, url in enumerate(refs):
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValidationError(f"field 'reference_images[{i}]' must be an http(s) URL")
    seed = body.get("seed")
    if seed is not None and (
        isinstance(seed, bool)
        or not isinstance(seed, int)
        or not gen4.SEED_MIN <= seed <= gen4.SEED_MAX
    ):
        raise ValidationError(
            f"field 'seed' must be an integer from {gen4.SEED_MIN} to {gen4.SEED_MAX}; got {seed!r}"
        )
    for flag in ("enable_base64_output", "enable_sync_mode"):
        if flag in body and not isinstance(body[flag], bool):
            raise ValidationError(f"field '{flag}' must be a boolean")
    return {
        "prompt": prompt,
        "aspect_ratio": aspect_ratio,
        "resolution": resolution,
        "reference_images": list(refs),
        "seed": seed,
        "enable_base64_output": bool(body.get("enable_base64_output", False)),
        "enable_sync_mode": bool(body.get("enable_sync_mode", False)),
    }


_HISTORY_FIELDS = frozenset(
    {"page", "page_size", "model", "status", "created_after", "created_before"}
)
_HISTORY_STATUSES = ("created", "processing", "completed", "failed")


def parse_history_query(body: Any) -> dict[str, Any]:
    """Check a history request (``POST /api/v3/predictions``); return its filters.

    ``page`` (>= 1) and ``page_size`` (1..100) are required; ``model``, ``status``,
    ``created_after`` (inclusive) and ``created_before`` (exclusive, ISO 8601) are optional.
    Times come back as epoch seconds.
    """
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    for key in body:
        if key not in _HISTORY_FIELDS:
            raise ValidationError(f"unknown field '{key}'")
    page, size = body.get("page"), body.get("page_size")
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise ValidationError("field 'page' is required and must be an integer >= 1")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 100:
        raise ValidationError("field 'page_size' is required and must be an integer 1..100")
    model, status = body.get("model"), body.get("status")
    if model is not None and not isinstance(model, str):
        raise ValidationError("field 'model' must be a string")
    if status is not None and status not in _HISTORY_STATUSES:
        raise ValidationError(f"field 'status' must be one of {', '.join(_HISTORY_STATUSES)}")
    times: dict[str, float | None] = {}
    for name in ("created_after", "created_before"):
        value = body.get(name)
        times[name] = None if value is None else _parse_time(name, value)
    return {"page": page, "page_size": size, "model": model or None, "status": status, **times}


def _parse_time(name: str, value: Any) -> float:
    if not isinstance(value, str):
        raise ValidationError(f"field '{name}' must be an ISO 8601 date-time string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            f"field '{name}' must be an ISO 8601 date-time (e.g. 2025-05-19T06:09:15Z); "
            f"got {value!r}"
        ) from None
    if when.tzinfo is None:
        raise ValidationError(f"field '{name}' must carry a time zone (e.g. a trailing Z)")
    return when.timestamp()
