"""Strict checking of a submit body against its model's schema (the one ``GET /api/v3/models``
publishes: :func:`refstudio.models.schema.request_schema`).

Strict on purpose: the real service's tolerance is undocumented, so the simulator refuses
anything the protocol notes do not allow (unknown fields, values out of range, too many or too
few images), and a client bug shows up here rather than on a bill.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from refstudio.models.schema import request_schema
from refstudio.models.spec import ModelSpec, utf16_length

__all__ = ["ValidationError", "parse_history_query", "validate_submit"]


class ValidationError(ValueError):
    """A submit body broke a rule; the message names the field."""


def _check_value(name: str, prop: dict[str, Any], value: Any) -> None:
    kind = prop.get("type")
    if "enum" in prop:
        if value not in prop["enum"] or isinstance(value, bool) != (kind == "boolean"):
            raise ValidationError(f"field '{name}' must be one of "
                                  f"{', '.join(map(str, prop['enum']))}; got {value!r}")
        return
    if kind == "boolean" and not isinstance(value, bool):
        raise ValidationError(f"field '{name}' must be a boolean")
    if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValidationError(f"field '{name}' must be an integer; got {value!r}")
    if kind == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValidationError(f"field '{name}' must be a number; got {value!r}")
    if kind in ("integer", "number"):
        low, high = prop.get("minimum"), prop.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValidationError(f"field '{name}' must be an integer from {low} to {high}; "
                                  f"got {value!r}" if kind == "integer" else
                                  f"field '{name}' must be from {low} to {high}; got {value!r}")
    if kind == "string":
        if not isinstance(value, str):
            raise ValidationError(f"field '{name}' must be a string")
        if "pattern" in prop and not re.fullmatch(prop["pattern"], value):
            raise ValidationError(f"field '{name}' must match {prop['pattern']}; got {value!r}")
        if "x-side-min" in prop:
            sides = [int(v) for v in value.split("*")]
            if not all(prop["x-side-min"] <= v <= prop["x-side-max"] for v in sides):
                raise ValidationError(f"field '{name}' must have sides from {prop['x-side-min']} "
                                      f"to {prop['x-side-max']}; got {value!r}")


def validate_submit(body: Any, spec: ModelSpec) -> dict[str, Any]:
    """Check a submit body against ``spec``'s schema; return what the task is made from:
    ``prompt``, ``references`` (URLs), ``seed`` (None: none given), ``enable_base64_output``,
    ``enable_sync_mode`` and ``input`` (the body with the schema's defaults filled in)."""
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    schema = request_schema(spec)
    props: dict[str, Any] = schema["properties"]
    for key in body:
        if key not in props:
            raise ValidationError(f"unknown field '{key}'")
    for key in schema["required"]:
        if key not in body:
            raise ValidationError(f"field '{key}' is required")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValidationError("field 'prompt' is required and must be a non-empty string")
    limit = props["prompt"].get("maxLength")
    if limit is not None and utf16_length(prompt) > limit:
        raise ValidationError(f"field 'prompt' is longer than {limit} UTF-16 code units")
    refs: list[Any] = []
    field = spec.reference_field
    if field is not None:
        refs = body.get(field, [])
        if not isinstance(refs, list):
            raise ValidationError(f"field '{field}' must be a list of URLs")
        low, high = props[field]["minItems"], props[field]["maxItems"]
        if len(refs) > high:
            raise ValidationError(f"field '{field}' holds {len(refs)} images; at most "
                                  f"{high} are allowed")
        if len(refs) < low:
            raise ValidationError(f"field '{field}' holds {len(refs)} images; at least "
                                  f"{low} are required")
        for i, url in enumerate(refs):
            parts = urlsplit(url) if isinstance(url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValidationError(f"field '{field}[{i}]' must be an http(s) URL")
    filled: dict[str, Any] = {}
    for name, prop in props.items():
        if name in ("prompt", field):
            continue
        if name in body:
            _check_value(name, prop, body[name])
            filled[name] = body[name]
        elif "default" in prop:
            filled[name] = prop["default"]
    seed = body.get("seed")
    return {
        "model": spec.model,
        "prompt": prompt,
        "references": list(refs),
        "seed": None if seed is None or seed == (spec.seed.random if spec.seed else None)
        else seed,
        "enable_base64_output": bool(filled.get("enable_base64_output", False)),
        "enable_sync_mode": bool(filled.get("enable_sync_mode", False)),
        "input": {"prompt": prompt, **({field: list(refs)} if field else {}), **filled},
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
