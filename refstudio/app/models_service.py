"""The model verbs of :class:`refstudio.Studio`: list and describe models, compare several on
one prompt, check the built-in descriptions against the service's catalog, read the account.

``compare`` sends paid work; ``sync_models`` and ``account`` only read (free).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InputError, ParameterError
from ..models import catalog
from ..models.spec import ModelSpec

if TYPE_CHECKING:
    from ..engine import Event, PreparedRequest
    from ..library.results import GenerationInfo
    from ..models.schema import Drift
    from .generation import Generations, RenderResult
    from .project import Project

__all__ = ["AccountInfo", "CompareResult", "ModelInfo", "Models"]


@dataclass(frozen=True)
class ModelInfo:
    """One model as ``refstudio models`` shows it."""

    id: str
    alias: str
    name: str
    provider: str
    binding: str
    min_references: int
    max_references: int
    sizes: str
    price: float  # US dollars per image at the model's defaults (the project's table first)
    key_set: bool
    default: bool
    notes: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # name -> JSON Schema of its values

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class CompareResult:
    """One model's part of a ``compare``: what it received and what came back."""

    model: str
    rendered: RenderResult
    generations: list[GenerationInfo]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "prompt": self.rendered.prompt,
                "cost_estimate": self.rendered.cost_estimate * len(self.generations),
                "generations": [g.to_dict() for g in self.generations]}


@dataclass(frozen=True)
class AccountInfo:
    """What the service says about the account: balance and, if asked, a quoted price."""

    provider: str
    balance: float
    model: str | None = None
    n: int = 0
    quoted_unit_price: float | None = None  # None: the service quotes no price
    estimated_unit_price: float | None = None  # the built-in / project price
    #: A project default size the model cannot make (the price is for its own default).
    warnings: tuple[str, ...] = ()

    @property
    def quoted_total(self) -> float | None:
        return None if self.quoted_unit_price is None else self.quoted_unit_price * self.n

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "warnings": list(self.warnings),
                "quoted_total": self.quoted_total}


class Models:
    """Model verbs over one project; ``generations`` renders, prices and sends."""

    def __init__(self, project: Project, generations: Generations) -> None:
        self.project = project
        self.generations = generations

    # -- describing ---------------------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        """Every registered model: provider, binding, reference range, sizes, price, key."""
        return [self._info(spec) for spec in catalog.all_models()]

    def model(self, name: str) -> ModelInfo:
        """One model by id or alias (UnknownModelError with a did-you-mean), with its options."""
        from ..models.schema import request_schema

        spec = catalog.get(name)
        props = request_schema(spec)["properties"]
        options = {k: props[k] for k in spec.option_names if k in props}
        return self._info(spec, options)

    def _info(self, spec: ModelSpec, options: dict[str, Any] | None = None) -> ModelInfo:
        from ..models.compose import choose_model, price_per_image
        from ..providers.registry import available, provider_class

        installed = spec.provider in available()
        default = choose_model(None, self.project.config.default_model)
        return ModelInfo(
            id=spec.id, alias=spec.alias, name=spec.display_name, provider=spec.provider,
            binding=spec.binding, min_references=spec.min_references,
            max_references=spec.max_references, sizes=spec.size.describe(),
            price=price_per_image(spec, spec.parse_options(), self.project.config.prices),
            key_set=installed and provider_class(spec.provider).key_configured(),
            default=spec is default, notes=spec.notes, options=options or {},
        )

    # -- comparing ----------------------------------------------------------------------------

    def plan_compare(
        self, prompt: str, models: Sequence[str], *, n: int = 1, seed: int | None = None,
        provider: str | None = None, aspect_ratio: str | None = None,
        resolution: str | None = None, options: Mapping[str, Any] | None = None,
    ) -> list[tuple[RenderResult, list[PreparedRequest]]]:
        """Render ``prompt`` for each model and build its ``n`` requests. Nothing is written or
        sent; every model's error (unknown id, too many references, a size it cannot make, an
        option none of them takes or a value out of one's range) comes before any work.

        ``options``: ``NAME`` goes to every model that takes it, ``MODEL.NAME`` to that one
        (:func:`refstudio.models.compose.options_per_model`); each model is priced with its
        own."""
        from ..models.compose import options_per_model
        from ..models.params import check_batch_size

        check_batch_size(n)
        if not models:
            raise InputError("name at least one model to compare (--models A,B)")
        specs = list(dict.fromkeys(catalog.get(m) for m in models))
        if len(specs) < len(models):
            raise ParameterError("a model is named twice in --models")
        plans = []
        for spec, own in zip(specs, options_per_model(specs, options), strict=True):
            plans.append(self.generations.prepare_requests(
                prompt, n=n, seed=seed if spec.options.seed_field else None,
                provider=provider, model=spec.id, aspect_ratio=aspect_ratio,
                resolution=resolution, options=own or None,
            ))
        return plans

    async def compare(
        self, prompt: str, models: Sequence[str], *, n: int = 1, seed: int | None = None,
        provider: str | None = None, aspect_ratio: str | None = None,
        resolution: str | None = None, max_cost: float | None = None,
        on_event: Callable[[Event], None] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> list[CompareResult]:
        """The same prompt on several models in one batch: ``n`` variants each (seeds S, S+1 …
        shared across models that take seeds, so a comparison differs by model only).
        ``options`` are shared as :meth:`plan_compare` says.

        The summed cost is checked against ``max_cost`` and the budget before anything is
        recorded; then each provider's share runs at once. Returns one result per model, in
        the order given.
        """
        from ..models.compose import seeds_for
        from ..models.params import check_cost_limit

        check_cost_limit(max_cost)
        if seed is None:  # one shared start, so every model sees the same seeds
            seed = next((s for s in seeds_for(catalog.default_model(), None, n) if s), None)
        plans = self.plan_compare(prompt, models, n=n, seed=seed, provider=provider,
                                  aspect_ratio=aspect_ratio, resolution=resolution,
                                  options=options)
        total = sum(r.cost_estimate * len(reqs) for r, reqs in plans)
        self.generations.check_budget(total, max_cost)
        by_provider: dict[str, list[int]] = {}
        for index, (rendered, _) in enumerate(plans):
            by_provider.setdefault(rendered.provider, []).append(index)

        async def one(name: str, indexes: list[int]) -> dict[int, list[int]]:
            requests = [r for i in indexes for r in plans[i][1]]
            costs = [plans[i][0].cost_estimate for i in indexes for _ in plans[i][1]]
            async with self.generations.engine(name, on_event) as engine:
                ids = engine.record_many(requests, costs)
                await engine.run(ids)
            out: dict[int, list[int]] = {}
            cursor = iter(ids)
            for i in indexes:
                out[i] = [next(cursor) for _ in plans[i][1]]
            return out

        parts = await asyncio.gather(*(one(p, ix) for p, ix in by_provider.items()))
        ids_of = {i: ids for part in parts for i, ids in part.items()}
        return [CompareResult(rendered.model, rendered,
                              self.generations.queries.many(ids_of[i]))
                for i, (rendered, _) in enumerate(plans)]

    # -- the service's own view ---------------------------------------------------------------

    async def sync_models(self) -> list[Drift]:
        """Where the built-in WaveSpeed models and WaveSpeed's catalog (``GET /api/v3/models``)
        differ: new, removed or changed fields, new or removed models. Changes nothing."""
        from ..models.schema import diff_schemas, request_schema
        from ..providers.wavespeed.account import catalog_schemas

        provider = self._wavespeed()
        try:
            theirs = await catalog_schemas(provider)
        finally:
            await provider.aclose()
        ours_by_name: dict[str, dict[str, Any]] = {}
        for spec in catalog.all_models():
            if spec.provider == "wavespeed":
                ours_by_name[spec.model] = request_schema(spec)
                for other in spec.also_known_as:  # listed under another name: the same model
                    if other in theirs and spec.model not in theirs:
                        theirs[spec.model] = theirs.pop(other)
        drift: list[Drift] = []
        for name in [*ours_by_name, *(n for n in theirs if n not in ours_by_name)]:
            if name not in ours_by_name and not _reference_model(theirs[name]):
                continue  # the catalog lists hundreds of models; only image-edit ones matter
            drift += diff_schemas(name, ours_by_name.get(name), theirs.get(name))
        return drift

    async def account(self, model: str | None = None, n: int = 1,
                      options: Mapping[str, Any] | None = None) -> AccountInfo:
        """The WaveSpeed balance and, with ``model``, the service's price for ``n`` images of
        it (None when the service quotes none) next to the estimate refstudio uses."""
        from ..models.compose import compose, price_per_image
        from ..models.params import check_batch_size
        from ..providers.wavespeed.account import balance, quote

        check_batch_size(n)
        spec = catalog.get(model) if model is not None else None
        if spec is not None and spec.provider != "wavespeed":
            raise ParameterError(f"{spec.id} is not a WaveSpeed model; `refstudio account` "
                                 "reads the WaveSpeed account")
        provider = self._wavespeed()
        try:
            left = await balance(provider)
            if spec is None:
                return AccountInfo("wavespeed", left)
            config = self.project.config
            composed = compose(spec, options=options,
                               defaults=(config.aspect_ratio, config.resolution))
            chosen = composed.options
            inputs = {k: v for k, v in spec.params(chosen).items() if v is not None}
            quoted = await quote(provider, spec.model, inputs)
        finally:
            await provider.aclose()
        unmade = composed.warning(config.size_written)
        return AccountInfo("wavespeed", left, spec.id, n, quoted,
                           price_per_image(spec, chosen, config.prices),
                           warnings=() if unmade is None else (unmade,))

    def _wavespeed(self) -> Any:
        return self.generations.make_provider("wavespeed")


def _reference_model(schema: Mapping[str, Any]) -> bool:
    """True for a model whose body takes images (the kind refstudio is for)."""
    props = schema.get("properties", {})
    return any(isinstance(p, Mapping) and p.get("type") == "array" for p in props.values())
