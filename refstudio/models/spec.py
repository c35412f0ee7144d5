"""What a model takes, declared once: :class:`ModelSpec`.

A model is a description, plus at most a small body builder. Everything that must agree about a
model (validation, the resolver's reference limit, the planner, prices, poll learning, the
simulator's strict schema, the offline previews) reads its spec, so nothing outside the model's
own module names its constants.

* ``id`` is ``provider:model`` (``wavespeed:runwayml/gen4-image``, ``runway:gen4_image``); the
  provider's own name for the model is the part after the first colon.
* ``options`` is a pydantic model with ``extra="forbid"`` (in the spirit of ``llm``'s per-model
  ``Options``): allowed values are ``Literal`` types and ``Field`` bounds, defaults are the
  model's. ``params_json`` of a generation is exactly ``options.model_dump(exclude_none=True)``.
* ``size`` maps the common size vocabulary (:class:`Size`: an aspect ratio and a resolution
  class) onto the model's own fields (:mod:`refstudio.models.sizes`), and says what pixel size
  comes back.
* ``binding`` says how the text refers to the images: ``tag`` (``@mara`` in the text, images in
  order of first mention), ``order`` (by position: the text is rewritten to say "image 1"), or
  ``none`` (the model takes no references).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ParameterError, TooFewReferencesError, TooManyReferencesError
from .request import BoundImage
from .sizes import NoSize, Size, SizeForm

__all__ = ["Binding", "ModelOptions", "ModelSpec", "Price", "SeedRange", "utf16_length"]

Binding = Literal["tag", "order", "none"]


class ModelOptions(BaseModel):
    """Base of every model's options: unknown fields are refused, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: Field that carries the seed, when the model takes one (variants step it by one).
    seed_field: ClassVar[str | None] = None


@dataclass(frozen=True)
class SeedRange:
    """The seeds a model accepts; ``random`` is the value meaning "pick one" (e.g. -1), if any."""

    low: int
    high: int
    random: int | None = None


@dataclass(frozen=True)
class Price:
    """US dollars per image: ``base``, or by the value of one option (``by`` option -> value ->
    price; a value missing from the table costs ``base``)."""

    base: float
    by: tuple[str, Mapping[str, float]] | None = None

    def of(self, options: ModelOptions) -> float:
        if self.by is not None:
            name, table = self.by
            value = getattr(options, name, None)
            if value is not None and str(value) in table:
                return float(table[str(value)])
        return self.base


def utf16_length(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (Runway's prompt unit: an emoji counts 2)."""
    return len(text.encode("utf-16-le")) // 2


BodyBuilder = Callable[["ModelSpec", str, Sequence[BoundImage], ModelOptions], dict[str, Any]]


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """One model as a provider serves it. See the module docstring for the vocabulary.

    Compared and hashed by identity: the registry holds one spec per id."""

    id: str
    alias: str
    display_name: str
    options: type[ModelOptions]
    price: Price
    #: Body field holding the reference image URLs (None: the model takes no images).
    reference_field: str | None = None
    min_references: int = 0
    max_references: int = 0
    binding: Binding = "none"
    size: SizeForm = field(default_factory=NoSize)
    seed: SeedRange | None = None
    #: Longest prompt, in UTF-16 code units (None: the service documents no limit).
    prompt_max: int | None = None
    #: Other names the service lists the model under (for ``models sync``).
    also_known_as: tuple[str, ...] = ()
    #: Shapes the JSON body; None means :func:`default_body` (prompt, images, options).
    body_builder: BodyBuilder | None = None
    #: One line for ``refstudio models show``: what to know before choosing it.
    notes: str = ""

    def __post_init__(self) -> None:
        provider, sep, model = self.id.partition(":")
        if not sep or not provider or not model:
            raise ValueError(f"model id {self.id!r} is not provider:model")
        if self.binding == "none" and self.max_references:
            raise ValueError(f"{self.id}: binding 'none' takes no references")
        if not 0 <= self.min_references <= self.max_references and self.binding != "none":
            raise ValueError(f"{self.id}: reference range {self.min_references}.."
                             f"{self.max_references}")

    # -- names --------------------------------------------------------------------------------

    @property
    def provider(self) -> str:
        """The service whose protocol the body is for (``wavespeed``, ``runway``)."""
        return self.id.partition(":")[0]

    @property
    def model(self) -> str:
        """The provider's own name for the model (``runwayml/gen4-image``): the URL path part
        on WaveSpeed, the ``model`` field on Runway."""
        return self.id.partition(":")[2]

    def __str__(self) -> str:
        return self.id

    # -- options ------------------------------------------------------------------------------

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(self.options.model_fields)

    def parse_options(self, raw: Mapping[str, Any] | None = None) -> ModelOptions:
        """Validated options from user values (None: the model's defaults).

        Raises :class:`~refstudio.errors.ParameterError` naming the option and the allowed
        values, or the options the model takes when it does not take this one.
        """
        raw = dict(raw or {})
        unknown = [k for k in raw if k not in self.options.model_fields]
        if unknown:
            takes = ", ".join(self.option_names) or "no options"
            raise ParameterError(
                f"{self.alias} ({self.id}) has no option {unknown[0]!r}; it takes: {takes}",
                hint=f"`refstudio models show {self.alias}` lists them with their values",
            )
        try:
            return self.options(**raw)
        except ValidationError as exc:
            raise ParameterError(_describe_validation(self, exc)) from None

    def options_for(
        self, size: Size | None = None, options: Mapping[str, Any] | None = None,
        *, seed: int | None = None,
    ) -> ModelOptions:
        """Options from the common vocabulary (a size, a seed) plus model-specific values.

        Explicit ``options`` win over what the size maps to. A size the model cannot make is a
        ParameterError naming the sizes it can; a seed on a model without one is refused too.
        """
        values: dict[str, Any] = {}
        if size is not None:
            values.update(self.size.options_for(size, self))
        if seed is not None:
            field_name = self.options.seed_field
            if field_name is None:
                raise ParameterError(f"{self.alias} ({self.id}) takes no seed")
            values[field_name] = seed
        values.update(options or {})
        return self.parse_options(values)

    def params(self, options: ModelOptions) -> dict[str, Any]:
        """The options as stored in a generation's ``params_json`` and hashed into its request
        identity: unset ones left out, except the seed (``"seed": null`` means "the provider
        picks", as rows written before the model layer say)."""
        values = options.model_dump(mode="json")
        seed = self.options.seed_field
        return {k: v for k, v in values.items() if v is not None or k == seed}

    def seed_of(self, options: ModelOptions) -> int | None:
        name = self.options.seed_field
        return None if name is None else getattr(options, name, None)

    # -- what comes back, what it costs -------------------------------------------------------

    def output_size(self, options: ModelOptions) -> tuple[int, int] | None:
        """(width, height) of the image returned, or None when it follows the inputs."""
        return self.size.output_size(options)

    def price_of(self, options: ModelOptions) -> float:
        return self.price.of(options)

    # -- references and the prompt ------------------------------------------------------------

    def check_references(self, count: int, names: Sequence[str] = ()) -> None:
        """Refuse a reference count the model cannot take, naming its limit."""
        if count > self.max_references:
            shown = f" ({', '.join('@' + n for n in names)})" if names else ""
            if self.max_references == 0:
                raise TooManyReferencesError(
                    f"{count} reference image(s){shown}; {self.alias} ({self.id}) takes none")
            raise TooManyReferencesError(
                f"{count} reference images{shown}; {self.alias} ({self.id}) takes at most "
                f"{self.max_references}",
                hint="mention fewer references, or choose a model that takes more "
                "(`refstudio models`)",
            )
        if count < self.min_references:
            raise TooFewReferencesError(
                f"{self.alias} ({self.id}) needs at least {self.min_references} reference "
                f"image(s); the prompt mentions {count}",
                hint="mention a reference with @name, or choose a model that works from text "
                "alone (`refstudio models`)",
            )

    def check_prompt(self, text: str) -> str:
        """Return ``text`` if the model takes it as a prompt; ParameterError giving the count."""
        if not isinstance(text, str) or not text.strip():
            raise ParameterError("the prompt is empty", hint="write what the image should show")
        if self.prompt_max is not None:
            units = utf16_length(text)
            if units > self.prompt_max:
                raise ParameterError(
                    f"the prompt is {units} UTF-16 code units long; {self.alias} takes at most "
                    f"{self.prompt_max} ({units - self.prompt_max} too many)",
                    hint="shorten it; template whitespace is already collapsed",
                )
        return text

    # -- the body -----------------------------------------------------------------------------

    def build_body(
        self, prompt: str, images: Sequence[BoundImage],
        options: ModelOptions | Mapping[str, Any],
    ) -> dict[str, Any]:
        """The exact JSON body the provider receives: prompt, images in order, options.

        ``images`` carry their tag (the reference's name) and uploaded URL; WaveSpeed bodies
        send only the URLs, a Runway body sends both.

        Validates again (prompt, reference count, options), because a body is the last point
        before money is spent. Pure: the same inputs always give the same body.
        """
        if not isinstance(options, ModelOptions):
            options = self.parse_options(options)
        elif not isinstance(options, self.options):
            raise ParameterError(f"options of another model given to {self.id}")
        self.check_prompt(prompt)
        self.check_references(len(images))
        for image in images:
            if not image.url:
                raise ParameterError(f"reference @{image.tag} has no URL (was it uploaded?)")
        builder = self.body_builder or default_body
        return builder(self, prompt, images, options)


def default_body(
    spec: ModelSpec, prompt: str, images: Sequence[BoundImage], options: ModelOptions
) -> dict[str, Any]:
    """``{"prompt", <reference_field>: [urls] (only when there are some), **options}``, unset
    options left out. Fits every WaveSpeed model shipped so far."""
    body: dict[str, Any] = {"prompt": prompt}
    if images and spec.reference_field:
        body[spec.reference_field] = [image.url for image in images]
    body.update({k: v for k, v in spec.params(options).items() if v is not None})
    return body


def _describe_validation(spec: ModelSpec, exc: ValidationError) -> str:
    """One line from pydantic's first complaint: which option, what is allowed."""
    err = exc.errors()[0]
    name = ".".join(str(p) for p in err.get("loc", ())) or "options"
    given = err.get("input")
    ctx = err.get("ctx") or {}
    kind = err.get("type", "")
    if kind == "literal_error":
        allowed = ctx.get("expected", "")
        return f"{spec.alias} option {name}={given!r} is not allowed; allowed: {allowed}"
    if any(k in ctx for k in ("ge", "gt", "le", "lt")):
        # The whole range, not just the side that was crossed.
        prop = spec.options.model_json_schema().get("properties", {}).get(name, {})
        prop = next((p for p in prop.get("anyOf", []) if "minimum" in p or "maximum" in p),
                    prop)
        low, high = prop.get("minimum"), prop.get("maximum")
        if low is not None and high is not None:
            must = f"from {low} to {high}"
        else:
            must = " and ".join(f"{w} {ctx[k]}" for k, w in (
                ("ge", "at least"), ("gt", "more than"), ("le", "at most"), ("lt", "less than"))
                if k in ctx)
        return f"{spec.alias} option {name}={given!r} is out of range; must be {must}"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{spec.alias} option {name}={given!r}: {msg}"
