"""Request bodies for Gen-4 Image, one function per provider protocol (see shared/protocol/).

Pure functions: the same (prompt, images, params) always gives the same body, which is what the
engine stores as "the exact provider payload" and hashes to avoid paying twice. Both validate
again what they are given (prompt length, at most three images, tag rule, parameters), because
a body is the last point before money is spent.

``prompt`` is the text to send (:attr:`refstudio.prompts.ResolvedPrompt.text_to_send`), and
``images`` come in order of first mention.
"""

from __future__ import annotations

from typing import Any

from ..errors import ParameterError, TooManyReferencesError
from ..models import gen4
from ..models.params import validate_params, validate_prompt_text
from ..models.request import BoundImage, GenParams

__all__ = ["RUNWAY_MODEL", "runway_body", "wavespeed_body"]

RUNWAY_MODEL = "gen4_image"


def _check(prompt: str, images: list[BoundImage], params: GenParams) -> GenParams:
    """Validate a request's parts; return the parameters normalised."""
    validate_prompt_text(prompt)
    if len(images) > gen4.MAX_REFERENCES:
        tags = ", ".join("@" + i.tag for i in images)
        raise TooManyReferencesError(
            f"{len(images)} reference images ({tags}); the model takes at most "
            f"{gen4.MAX_REFERENCES}"
        )
    seen: dict[str, str] = {}
    for image in images:
        if not gen4.NAME_PATTERN.fullmatch(image.tag):
            raise ParameterError(
                f"reference tag {image.tag!r} breaks the model's tag rule: 3-16 characters, "
                "a letter first, then letters, digits or '_'"
            )
        key = image.tag.lower()
        if key in seen:
            raise ParameterError(
                f"reference tags {seen[key]!r} and {image.tag!r} are the same ignoring case; "
                "each reference is sent once"
            )
        seen[key] = image.tag
        if not image.url:
            raise ParameterError(f"reference @{image.tag} has no URL (was it uploaded?)")
    return validate_params(params.aspect_ratio, params.resolution, params.seed)


def wavespeed_body(
    prompt: str,
    images: list[BoundImage],
    params: GenParams,
    *,
    base64_output: bool = False,
) -> dict[str, Any]:
    """The JSON body of ``POST /api/v3/runwayml/gen4-image`` on WaveSpeedAI.

    ``aspect_ratio`` is always sent (WaveSpeed's docs disagree on its default); ``reference_images``
    only when there are some, ``seed`` only when set, ``enable_base64_output`` only when True.
    ``enable_sync_mode`` is never sent: it hides the task id until the end, so a dropped
    connection would lose a paid image. Raises ParameterError / TooManyReferencesError.
    """
    p = _check(prompt, images, params)
    body: dict[str, Any] = {
        "prompt": prompt,
        "aspect_ratio": p.aspect_ratio,
        "resolution": p.resolution,
    }
    if images:
        body["reference_images"] = [i.url for i in images]
    if p.seed is not None:
        body["seed"] = p.seed
    if base64_output:
        body["enable_base64_output"] = True
    return body


def runway_body(prompt: str, images: list[BoundImage], params: GenParams) -> dict[str, Any]:
    """The JSON body of ``POST /v1/text_to_image`` on Runway's own API (model ``gen4_image``).

    ``ratio`` is the output's pixel size (``"1920:1080"``), from aspect ratio and resolution;
    each image goes as ``{uri, tag}`` so ``@tag`` in ``promptText`` points at it. Raises
    ParameterError / TooManyReferencesError.
    """
    p = _check(prompt, images, params)
    width, height = gen4.output_size(p.aspect_ratio, p.resolution)
    body: dict[str, Any] = {
        "model": RUNWAY_MODEL,
        "promptText": prompt,
        "ratio": f"{width}:{height}",
    }
    if images:
        body["referenceImages"] = [{"uri": i.url, "tag": i.tag} for i in images]
    if p.seed is not None:
        body["seed"] = p.seed
    return body
