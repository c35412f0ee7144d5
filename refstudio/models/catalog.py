"""The model registry: every model refstudio can use, found by id or alias.

Built-in models are modules of this package, each exposing ``SPEC``; a provider package or a
plugin adds its own with :func:`register` (or, installed separately, through the
``refstudio.models`` entry-point group: a callable that receives :func:`register`, as ``llm``'s
``register_models`` hook does). Lookup is case-insensitive on ids and aliases, and an unknown
name is an :class:`~refstudio.errors.UnknownModelError` with a did-you-mean.
"""

from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Callable
from importlib.metadata import entry_points

from ..errors import UnknownModelError
from .spec import ModelSpec

__all__ = ["ENTRY_POINT_GROUP", "all_models", "default_model", "get", "register", "unregister"]

ENTRY_POINT_GROUP = "refstudio.models"

#: Modules of this package holding one built-in model each; the first is the default model.
_BUILTINS = ("wavespeed_gen4", "wavespeed_gen4_turbo", "wavespeed_nano_banana",
             "wavespeed_seedream_v4", "wavespeed_kontext_multi", "runway_gen4_image",
             "runway_gen4_image_turbo", "runway_gemini_flash")

_lock = threading.Lock()
_by_id: dict[str, ModelSpec] = {}
_names: dict[str, str] = {}  # lower-cased id or alias -> id
_loaded = False


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add a model. Its id and alias must be new (case-insensitively) unless ``replace``."""
    with _lock:
        _register(spec, replace)
    return spec


def _register(spec: ModelSpec, replace: bool) -> None:
    for name in (spec.id, spec.alias):
        owner = _names.get(name.lower())
        if owner is not None and owner != spec.id and not replace:
            raise ValueError(f"model name {name!r} is taken by {owner}")
        if owner == spec.id and not replace and name == spec.id:
            raise ValueError(f"model {spec.id} is registered already")
    old = _by_id.pop(spec.id, None)
    if old is not None:
        _names.pop(old.alias.lower(), None)
    _by_id[spec.id] = spec
    _names[spec.id.lower()] = spec.id
    _names[spec.alias.lower()] = spec.id


def unregister(model_id: str) -> None:
    """Remove a model registered with :func:`register` (a plugin unloading, a test)."""
    with _lock:
        spec = _by_id.pop(model_id, None)
        if spec is not None:
            _names.pop(spec.id.lower(), None)
            _names.pop(spec.alias.lower(), None)


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        for module in _BUILTINS:
            spec = importlib.import_module(f"{__package__}.{module}").SPEC
            if spec.id not in _by_id:
                _register(spec, False)
        _loaded = True
    # Plugins last, outside the lock: their hook calls register().
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        hook: Callable[[Callable[..., ModelSpec]], object] = ep.load()
        hook(register)


def all_models() -> list[ModelSpec]:
    """Every registered model, built-ins first, in registration order."""
    _ensure_loaded()
    return list(_by_id.values())


def default_model() -> ModelSpec:
    """The model used when none is chosen (Gen-4 Image on WaveSpeed, today's model)."""
    if not _loaded:
        _ensure_loaded()
    return next(iter(_by_id.values()))


def get(name: str | ModelSpec | None) -> ModelSpec:
    """The model with this id or alias (any case); None gives :func:`default_model`.

    Raises UnknownModelError with the closest names.
    """
    if isinstance(name, ModelSpec):
        return name
    if name is None:
        return default_model()
    _ensure_loaded()
    key = str(name).strip().lower()
    found = _names.get(key)
    if found is not None:
        return _by_id[found]
    # `runwayml/gen4-image` without its provider: unique among providers? take it.
    matches = [s for s in _by_id.values() if s.model.lower() == key]
    if len(matches) == 1:
        return matches[0]
    close = difflib.get_close_matches(key, list(_names), n=3, cutoff=0.5)
    shown = [_by_id[_names[c]].alias for c in close]
    hint = (f"did you mean {', '.join(dict.fromkeys(shown))}?" if shown
            else "`refstudio models` lists every model")
    raise UnknownModelError(f"unknown model {str(name)!r}", hint=hint)
