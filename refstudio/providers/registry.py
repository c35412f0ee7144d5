"""Finding providers by name through the ``refstudio.providers`` entry-point group.

The built-ins (wavespeed, offline) are registered in pyproject.toml exactly like a third-party
plugin would be, so nothing here special-cases them.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import Any

from ..errors import ConfigError
from .base import Provider

GROUP = "refstudio.providers"


@functools.lru_cache(maxsize=1)
def available() -> dict[str, Any]:
    """Provider name -> entry point, for every installed provider (read once per process:
    scanning the installed distributions costs ~9 ms)."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def provider_class(name: str) -> type[Provider]:
    eps = available()
    if name not in eps:
        raise ConfigError(
            f"unknown provider {name!r}", hint=f"installed providers: {', '.join(sorted(eps))}"
        )
    cls = eps[name].load()
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigError(f"provider {name!r} does not implement refstudio's Provider interface")
    return cls


def default_provider_name(configured: str | None = None) -> str:
    """The explicit choice, else what :func:`refstudio.providers.config.effective_settings`
    decides (the same answer ``refstudio config`` shows: wavespeed when a key is set or saved,
    else offline).
    """
    from .config import effective_settings

    return effective_settings(configured).default_provider


def create(name: str, **kwargs: Any) -> Provider:
    """Instantiate a provider by name."""
    return provider_class(name)(**kwargs)
