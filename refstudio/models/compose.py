"""Turning a command's words into one model's request: which model, its options, seeds, price.

Pure functions over the catalog and the project's settings, shared by render, generate, the
workflow planner and ``compare`` (choosing the *provider* needs the provider registry, a layer
up: :mod:`refstudio.app.modelchoice`):

* :func:`choose_model` - ``--model``, else ``default_model`` in refstudio.toml, else the
  catalog's default;
* :func:`compose_options` - explicit sizes are strict (a size the model cannot make is an
  error), the project's default size applies only where the model can make it;
* :func:`price_per_image` - the project's price table for the model, else the spec's price;
* :func:`seeds_for` - one seed per variant (S, S+1, ...), or None for models without seeds.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from ..errors import InputError, ParameterError, UnknownModelError
from . import catalog
from .sizes import Size
from .spec import ModelOptions, ModelSpec

__all__ = ["choose_model", "compose_options", "parse_option_assignments", "price_per_image",
           "seeds_for"]


def choose_model(name: str | None, configured: str | None = None) -> ModelSpec:
    """The model a command asked for (UnknownModelError with a did-you-mean)."""
    if name is not None:
        return catalog.get(name)
    if configured is not None:
        try:
            return catalog.get(configured)
        except UnknownModelError as exc:
            raise UnknownModelError(f"{exc.message} (default_model in refstudio.toml)",
                                    hint=exc.hint) from None
    return catalog.default_model()


def compose_options(
    spec: ModelSpec,
    *,
    aspect_ratio: str | None = None,
    resolution: str | None = None,
    seed: int | None = None,
    options: Mapping[str, Any] | None = None,
    defaults: tuple[str | None, str | None] = (None, None),
) -> ModelOptions:
    """The model's options for a command: its sizes, seed and model-specific values.

    ``defaults`` are the project's aspect ratio and resolution: used when the model can make
    them (merged with what was given), dropped when it cannot. What was given explicitly is
    never dropped: a size the model cannot make is a ParameterError.
    """
    explicit = Size.of(aspect_ratio, resolution)
    ratio, res = aspect_ratio or defaults[0], resolution or defaults[1]
    # The project's defaults fill what was not given, as much of them as the model can make;
    # what was given is always kept (the last try, and its error, is the explicit size alone).
    tries = [Size.of(ratio, res), Size.of(ratio, resolution), Size.of(aspect_ratio, res)]
    size_values: dict[str, Any] | None = None
    for size in tries:
        try:
            size_values = spec.size.options_for(size, spec)
            break
        except ParameterError:
            continue
    if size_values is None:
        size_values = spec.size.options_for(explicit, spec)
    values: dict[str, Any] = dict(size_values)
    if seed is not None:
        field_name = spec.options.seed_field
        if field_name is None:
            raise ParameterError(f"{spec.alias} ({spec.id}) takes no seed",
                                 hint="leave out --seed for this model")
        values[field_name] = seed
    values.update(options or {})
    return spec.parse_options(values)


def parse_option_assignments(items: list[str] | None) -> dict[str, Any]:
    """``["guidance_scale=5", "output_format=png"]`` -> a dict; numbers become numbers.

    Values are parsed as JSON when they read as JSON (``5``, ``2.5``, ``true``), else kept as
    text, and the model's options check them.
    """
    import json

    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"option {item!r} is not NAME=VALUE (e.g. guidance_scale=5)")
        try:
            parsed: Any = json.loads(value)
            if isinstance(parsed, (dict, list)):
                parsed = value
        except ValueError:
            parsed = value
        result[key.strip()] = parsed
    return result


def price_per_image(
    spec: ModelSpec, options: ModelOptions, prices: Mapping[str, Mapping[str, float]],
) -> float:
    """US dollars per image: the project's table for this model (by id or alias; a key that
    equals one of the options' values, else ``default``), the legacy per-provider table for
    the default model (by resolution), else the spec's own price."""
    values = {str(v) for v in spec.params(options).values() if v is not None}
    for key in (spec.id, spec.alias):
        table = prices.get(key)
        if table:
            hit = next((float(p) for k, p in table.items() if k in values), None)
            if hit is not None:
                return hit
            if "default" in table:
                return float(table["default"])
    if spec is catalog.default_model():
        table = prices.get(spec.provider) or {}
        hit = next((float(p) for k, p in table.items() if k in values), None)
        if hit is not None:
            return hit
    return spec.price_of(options)


def seeds_for(spec: ModelSpec, seed: int | None, n: int) -> list[int | None]:
    """One seed per variant: S, S+1, ... from a given S, else from a random start; all None for
    a model without seeds (its variants differ by the service's chance only)."""
    if spec.seed is None or spec.options.seed_field is None:
        return [None] * n
    low, high = spec.seed.low, spec.seed.high
    if spec.seed.random is not None and spec.seed.random == low:
        low += 1  # the "pick one" value is not a seed we can record
    if seed is not None and seed == spec.seed.random:
        return [seed] * n  # "pick one" for each
    if seed is not None:
        if seed + n - 1 > high:
            raise InputError(f"seed {seed} + {n} variants runs past {high}, the highest seed "
                             f"{spec.alias} takes")
        return [seed + i for i in range(n)]
    first = random.randint(low, max(low, high - n))
    return [first + i for i in range(n)]
