"""The JSON body of ``POST /v1/text_to_image`` for each Runway image model, checked last.

A body is the last point before money is spent, so everything Runway would refuse is refused
here with one line and nothing sent: a reference count outside the model's range (turbo needs
at least one), a name that breaks Runway's tag rule (a template can build one), two tags equal
but for case, a size the model does not make, a seed for a model without one, a ``data:`` URI
over 5 MB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from refstudio.errors import ParameterError, TooManyReferencesError
from refstudio.models import runway_api
from refstudio.models.params import validate_prompt_text
from refstudio.models.request import BoundImage
from refstudio.models.runway_api import check_reference_uri, check_tags

__all__ = ["runway_body"]


def runway_body(
    model: runway_api.RunwayModel,
    prompt: str,
    images: Sequence[BoundImage],
    *,
    aspect_ratio: str,
    resolution: str,
    seed: int | None,
) -> dict[str, Any]:
    """The body for ``model``: ``ratio`` from the common size, each image as ``{uri, tag}`` so
    ``@tag`` in ``promptText`` points at it, ``seed`` only when set (and the model takes one)."""
    validate_prompt_text(prompt)
    if len(images) > model.max_references:
        raise TooManyReferencesError(
            f"{len(images)} reference images; {model.id} takes at most {model.max_references}")
    if len(images) < model.min_references:
        raise ParameterError(
            f"{model.id} needs at least {model.min_references} reference image"
            f"{'s' if model.min_references > 1 else ''}; the prompt mentions {len(images)}",
            hint="mention a reference with @name, or use runway:gen4_image")
    check_tags([image.tag for image in images])
    for image in images:
        check_reference_uri(image.url, image.tag)
    ratio = model.ratio_for(aspect_ratio, resolution)
    if ratio is None:
        raise ParameterError(
            f"{model.id} has no {aspect_ratio} {resolution} size; it makes "
            f"{', '.join(model.ratios)}")
    if seed is not None and not model.takes_seed:
        raise ParameterError(f"{model.id} takes no seed", hint="leave --seed out")
    body: dict[str, Any] = {"model": model.api_name, "promptText": prompt, "ratio": ratio}
    if images:
        body["referenceImages"] = [{"uri": i.url, "tag": i.tag} for i in images]
    if seed is not None:
        body["seed"] = seed
    return body
