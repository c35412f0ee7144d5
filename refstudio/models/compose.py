"""Turning a command's words into one model's request: which model, its options, seeds, price.

Pure functions over the catalog and the project's settings, shared by render, generate, the
workflow planner and ``compare`` (choosing the *provider* needs the provider registry, a layer
up: :mod:`refstudio.app.modelchoice`):

* :func:`choose_model` - ``--model``, else ``default_model`` in refstudio.toml, else the
  catalog's default;
* :func:`compose` - explicit sizes are strict (a size the model cannot make is an error);
  the project's default size applies where the model can make it, and what it cannot make
  is left out *and said* (:meth:`Composed.warning`): never silently;
* :func:`options_per_model` - ``-o`` options shared among the models of a ``compare``;
* :func:`price_per_image` - the project's price table for the model, else the spec's price;
* :func:`seeds_for` - one seed per variant (S, S+1, ...), or None for models without seeds.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, ParameterError, UnknownModelError
from . import catalog
from .sizes import Size
from .spec import ModelOptions, ModelSpec

__all__ = ["Composed", "choose_model", "compose", "compose_options", "options_per_model",
           "parse_option_assignments", "price_per_image", "seeds_for"]


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


@dataclass(frozen=True)
class Composed:
    """A command's options for one model, and what of the project's default size it left out.

    ``unmade`` holds the parts of the project's default size (``[defaults]`` in refstudio.toml)
    the model cannot make, left out so the model's own default applies; empty when every part
    was used, or did not apply (an explicit size, or ``-o`` naming all the model's size fields).
    """

    spec: ModelSpec
    options: ModelOptions
    unmade: Size = field(default_factory=Size)

    def warning(self, written: Collection[str] = ("aspect_ratio", "resolution")) -> str | None:
        """One line saying which default the model cannot make and what it makes instead, or
        None when nothing was left out. ``written``: the parts of the default that refstudio.toml
        sets itself; a left-out part the project never wrote (refstudio's own fallback) goes
        unsaid, so deleting a line from ``[defaults]`` silences it."""
        said = Size(self.unmade.aspect_ratio if "aspect_ratio" in written else None,
                    self.unmade.resolution if "resolution" in written else None)
        if said == Size():
            return None
        pixels = self.spec.output_size(self.options)
        made = ("an image the size of its input images" if pixels is None
                else f"{pixels[0]}x{pixels[1]}")
        return (f"{self.spec.alias} ({self.spec.id}) cannot make the project's default {said} "
                f"([defaults] in refstudio.toml); it makes {made} instead")


def compose(
    spec: ModelSpec,
    *,
    aspect_ratio: str | None = None,
    resolution: str | None = None,
    seed: int | None = None,
    options: Mapping[str, Any] | None = None,
    defaults: tuple[str | None, str | None] = (None, None),
) -> Composed:
    """The model's options for a command: its sizes, seed and model-specific values.

    ``defaults`` are the project's aspect ratio and resolution: each part is used when the
    model can make it (with what was given), left out when it cannot (:attr:`Composed.unmade`
    says which, so the caller can say so). What was given explicitly is never dropped: a size
    the model cannot make is a ParameterError. Options naming every size field of the model
    (``-o size=1024*1024``) choose the size themselves: the defaults do not apply then.
    """
    explicit = Size.of(aspect_ratio, resolution)
    if spec.size.fields and set(spec.size.fields) <= set(options or {}):
        defaults = (None, None)  # every size field given: nothing of the defaults would stay
    ratio, res = aspect_ratio or defaults[0], resolution or defaults[1]
    # The project's defaults fill what was not given, as much of them as the model can make;
    # what was given is always kept (the last try, and its error, is the explicit size alone).
    tries = [Size.of(ratio, res), Size.of(ratio, resolution), Size.of(aspect_ratio, res),
             explicit]
    size_values: dict[str, Any] | None = None
    used = explicit
    for size in tries:
        try:
            size_values = spec.size.options_for(size, spec)
        except ParameterError:
            continue
        used = size
        break
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
    unmade = Size(ratio if used.aspect_ratio is None and aspect_ratio is None else None,
                  res if used.resolution is None and resolution is None else None)
    return Composed(spec, spec.parse_options(values), unmade)


def compose_options(
    spec: ModelSpec,
    *,
    aspect_ratio: str | None = None,
    resolution: str | None = None,
    seed: int | None = None,
    options: Mapping[str, Any] | None = None,
    defaults: tuple[str | None, str | None] = (None, None),
) -> ModelOptions:
    """:func:`compose` without the note of what was left out (sizes, seed, options)."""
    return compose(spec, aspect_ratio=aspect_ratio, resolution=resolution, seed=seed,
                   options=options, defaults=defaults).options


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


def options_per_model(
    specs: Sequence[ModelSpec], options: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """Share ``NAME=VALUE`` options among several models (``compare``): one dict per spec.

    ``NAME`` goes to every model that takes it; ``MODEL.NAME`` (an alias or id, then the
    option) to that one model only, and wins there over a plain ``NAME``. An option none of
    the models takes, or a ``MODEL`` not among them, is a ParameterError naming the models;
    whether a value is in range is each model's own check (:meth:`ModelSpec.parse_options`).
    """
    shared: dict[str, Any] = {}
    targeted: list[dict[str, Any]] = [{} for _ in specs]
    names = ", ".join(s.alias for s in specs)
    for key, value in (options or {}).items():
        model, dot, name = key.rpartition(".")  # option names have no dots; ids may
        if not dot:
            shared[key] = value
            continue
        spec = catalog.get(model)
        if spec not in specs:
            raise ParameterError(f"option {key!r} is for {spec.alias}, which is not one of the "
                                 f"models compared ({names})")
        targeted[specs.index(spec)][name] = value
    for key in shared:
        if not any(key in spec.options.model_fields for spec in specs):
            raise ParameterError(
                f"none of the models compared ({names}) takes option {key!r}",
                hint="`refstudio models show MODEL` lists a model's options")
    return [{k: v for k, v in shared.items() if k in spec.options.model_fields} | own
            for spec, own in zip(specs, targeted, strict=True)]


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
