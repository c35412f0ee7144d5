"""The model-neutral part of one request that every layer passes along.

It lives in the model layer, below prompts and providers, so the resolver can bind images and a
model's body builder can read them without importing a provider.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BoundImage:
    """One reference image bound into a request: its mention name and its (uploaded) URL."""

    tag: str
    url: str


__all__ = ["BoundImage"]
