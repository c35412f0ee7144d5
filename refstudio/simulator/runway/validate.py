"""Strict checks of a ``POST /v1/text_to_image`` body, as Runway's API makes them.

Each failure is a :class:`ValidationError` whose text the simulator answers with a 400, so a
client that sends something the real service would refuse finds out here first.
"""

from __future__ import annotations

from typing import Any

from refstudio.models import runway_api
from refstudio.models.spec import utf16_length

__all__ = ["ValidationError", "validate_create"]

_ALLOWED = {"model", "promptText", "ratio", "referenceImages", "seed", "contentModeration"}
_URL_MAX = 2048
#: Runway counts UTF-16 code units (1000 for Gen-4; assumed for Gemini, whose limit is not
#: documented).
PROMPT_MAX_UTF16 = 1000


class ValidationError(ValueError):
    pass


def validate_create(body: Any, *, known_upload: Any) -> dict[str, Any]:
    """The body's fields, checked; ``known_upload(uri)`` says whether a ``runway://`` URI is
    one of this server's live uploads. Raises ValidationError naming the first problem."""
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    name = body.get("model")
    model = runway_api.get(name) if isinstance(name, str) else None
    if model is None:
        raise ValidationError(
            f"model: expected one of {sorted(runway_api.MODELS)}, got {name!r}")
    allowed = _ALLOWED - ({"seed", "contentModeration"} if not model.takes_seed else set())
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValidationError(f"{unknown[0]}: not a field of model {model.api_name}")
    prompt = body.get("promptText")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValidationError("promptText: a non-empty string is required")
    if utf16_length(prompt) > PROMPT_MAX_UTF16:
        raise ValidationError(f"promptText: at most {PROMPT_MAX_UTF16} UTF-16 code units")
    ratio = body.get("ratio")
    if ratio not in model.ratios:
        raise ValidationError(
            f"ratio: {model.api_name} takes one of {', '.join(model.ratios)}, got {ratio!r}")
    refs = body.get("referenceImages", [])
    if not isinstance(refs, list):
        raise ValidationError("referenceImages: expected an array")
    if not model.min_references <= len(refs) <= model.max_references:
        raise ValidationError(
            f"referenceImages: {model.api_name} takes {model.min_references} to "
            f"{model.max_references} images, got {len(refs)}")
    tags: set[str] = set()
    for index, ref in enumerate(refs):
        where = f"referenceImages[{index}]"
        if not isinstance(ref, dict) or set(ref) - {"uri", "tag"}:
            raise ValidationError(f"{where}: expected an object with uri and an optional tag")
        _check_uri(ref.get("uri"), where, known_upload)
        tag = ref.get("tag")
        if tag is not None:
            if not isinstance(tag, str) or not runway_api.TAG_PATTERN.fullmatch(tag):
                raise ValidationError(
                    f"{where}.tag: must be 3-16 characters, start with a letter, and use only "
                    f"letters, digits and underscores, got {tag!r}")
            if tag.lower() in tags:
                raise ValidationError(f"{where}.tag: {tag!r} is used twice")
            tags.add(tag.lower())
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                             or not 0 <= seed <= runway_api.SEED_MAX):
        raise ValidationError(f"seed: an integer from 0 to {runway_api.SEED_MAX}")
    moderation = body.get("contentModeration")
    if moderation is not None and (
        not isinstance(moderation, dict) or set(moderation) - {"publicFigureThreshold"}
        or moderation.get("publicFigureThreshold", "auto") not in ("auto", "low")
    ):
        raise ValidationError("contentModeration: {publicFigureThreshold: 'auto' | 'low'}")
    return {"model": model, "prompt": prompt, "ratio": ratio, "seed": seed,
            "references": [ref["uri"] for ref in refs], "tags": [r.get("tag") for r in refs]}


def _check_uri(uri: Any, where: str, known_upload: Any) -> None:
    if not isinstance(uri, str) or not uri:
        raise ValidationError(f"{where}.uri: a string is required")
    if uri.startswith("runway://"):
        if not known_upload(uri):
            raise ValidationError(f"{where}.uri: unknown or expired upload {uri}")
        return
    if uri.startswith("data:"):
        if not uri.startswith(("data:image/png;", "data:image/jpeg;", "data:image/webp;")):
            raise ValidationError(f"{where}.uri: data URIs must be PNG, JPEG or WebP images")
        if len(uri) > runway_api.DATA_URI_MAX:
            raise ValidationError(f"{where}.uri: data URIs may be at most 5MB")
        return
    if not uri.startswith("https://") or len(uri) > _URL_MAX:
        raise ValidationError(
            f"{where}.uri: an HTTPS URL (at most {_URL_MAX} characters), a runway:// upload "
            "or a data URI is required")
    host = uri[8:].split("/", 1)[0].split(":", 1)[0]
    if not host or host.replace(".", "").isdigit() or host.startswith("["):
        raise ValidationError(f"{where}.uri: URLs must name a domain, not an IP address")
