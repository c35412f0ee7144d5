"""The model-neutral parts of one request that every layer passes along.

They live in the model layer, below prompts and providers, so the resolver can bind images and
the validator can build parameters without importing a provider.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GenParams:
    """Model parameters of one request, already validated (see :mod:`refstudio.models.params`)."""

    aspect_ratio: str
    resolution: str
    seed: int | None = None


@dataclass(frozen=True)
class BoundImage:
    """One reference image bound into a request: its mention name and its (uploaded) URL."""

    tag: str
    url: str


__all__ = ["BoundImage", "GenParams"]
