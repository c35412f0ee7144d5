"""The generate/promote loop of :class:`refstudio.Studio`: render, generate, promote, lineage.

Split from :mod:`refstudio.app.studio` so that module stays about opening projects and the library.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import col, func, select

from ..errors import (
    AuthenticationError,
    BudgetExceededError,
    GenerationError,
    InputError,
    NameTakenError,
    OutputNotFoundError,
    PromptError,
    ProviderError,
)
from ..prompts.names import clean_name, name_key
from ..storage.database import read_session, write_session
from ..storage.rows import insert_reference
from ..storage.tables import Asset, Generation, Output, Reference, ReferenceImage

if TYPE_CHECKING:
    from ..engine import Engine, Event, Outcome, PreparedRequest, Reconciled
    from ..library.lookup import RecordedImage
    from ..library.references import Library, ReferenceInfo
    from ..library.results import GenerationInfo
    from ..models.spec import ModelSpec
    from ..providers.base import Provider
    from .project import Project



@dataclass(frozen=True)
class BoundReference:
    """A reference bound into a rendered prompt, with the image chosen for it."""

    name: str
    label: str | None
    image_id: int
    sha256: str
    path: str
    width: int
    height: int
    warnings: tuple[str, ...] = ()
    reference_id: int | None = None


@dataclass(frozen=True)
class RenderResult:
    """What a prompt becomes before anything is sent: see :meth:`Studio.render`."""

    source: str  # the prompt or template as written
    text: str  # after Jinja2
    prompt: str  # the text the provider receives
    references: tuple[BoundReference, ...]
    params: dict[str, Any]
    provider: str
    body: dict[str, Any]  # the request body, with upload placeholders for image URLs
    cost_estimate: float
    warnings: tuple[str, ...] = field(default=())
    model: str = ""  # the catalog id of the model the body is for

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "text": self.text,
            "prompt": self.prompt,
            "references": [r.__dict__ | {"warnings": list(r.warnings)} for r in self.references],
            "params": self.params,
            "provider": self.provider,
            "body": self.body,
            "cost_estimate": self.cost_estimate,
            "warnings": list(self.warnings),
            "model": self.model,
        }


@dataclass(frozen=True)
class RetryCost:
    """What :meth:`Studio.retry` would cost: ``cost`` (US dollars, estimated),
    ``paid_before`` (earlier submits that were or may have been billed), in words."""

    cost: float
    paid_before: int
    message: str


class Generations:
    """The generate/promote loop of one project, as a service with explicit dependencies.

    Local verbs (render, price, promote, lineage, history) and the provider-facing ones as
    coroutines (generate, resume, reconcile, retry): :class:`~refstudio.app.studio.Studio` and
    :class:`~refstudio.app.studio.AsyncStudio` delegate to it, and a workflow run drives it
    through :class:`refstudio.workflow.host.WorkflowHost`.
    """

    def __init__(
        self,
        project: Project,
        library: Library,
        provider_options: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        from ..library.results import GenerationQueries

        self.project = project
        self.library = library
        self.queries = GenerationQueries(library.db, library.store, promote=self.promote)
        #: Per-provider constructor options that win over the user config, e.g.
        #: ``{"wavespeed": {"base_url": "http://127.0.0.1:8765", "api_key": "..."}}``.
        self.provider_options: dict[str, dict[str, Any]] = (
            {} if provider_options is None else provider_options
        )

    # -- rendering -------------------------------------------------------------------------

    def render(
        self,
        prompt: str | None = None,
        *,
        template: str | None = None,
        variables: Mapping[str, Any] | None = None,
        vars_file: Path | str | None = None,
        provider: str | None = None,
        aspect_ratio: str | None = None,
        resolution: str | None = None,
        seed: int | None = None,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
        recorded_images: Sequence[RecordedImage] | None = None,
    ) -> RenderResult:
        """Turn a prompt (or a template in ``templates/``) into exactly what would be sent.

        ``model`` is a catalog id or alias (None: ``default_model`` in refstudio.toml, else
        Gen-4 Image); ``options`` are that model's own (``refstudio models show``).
        ``recorded_images`` (a generation's, :meth:`recorded_images`) binds each reference to
        the image it was bound to then instead of its image now. For models
        that bind images by position the text is rewritten to say "image 1", "image 2"
        (:mod:`refstudio.prompts.binding`). No network and no database writes. Raises
        UnknownModelError, PromptError subclasses (unknown ``@name`` with a did-you-mean, more
        references than the model takes, template errors with file and line) and
        ParameterError for options or sizes the model does not take.
        """
        from ..library.lookup import LibraryLookup, RecordedLookup
        from ..models.compose import choose_model, compose
        from ..models.request import BoundImage
        from ..prompts import load_vars_file, render_string, render_template, resolve
        from ..prompts.binding import text_for_model
        from ..providers.registry import provider_class
        from .modelchoice import choose_provider

        if (prompt is None) == (template is None):
            raise InputError("give a prompt or a template (one of them)")
        config = self.project.config
        spec = choose_model(model, config.default_model)
        if model is None and provider is not None and not provider_class(provider).serves(spec):
            # `--provider runway` alone: that provider's own default model, not a refusal.
            spec = provider_class(provider).default_model()
        composed = compose(spec, aspect_ratio=aspect_ratio, resolution=resolution, seed=seed,
                           options=options, defaults=(config.aspect_ratio, config.resolution))
        chosen = composed.options
        provider_name = choose_provider(spec, provider, config.provider)
        values: dict[str, Any] = {}
        if vars_file is not None:
            values.update(load_vars_file(vars_file))
        values.update(variables or {})
        lookup = (LibraryLookup(self.library) if recorded_images is None
                  else RecordedLookup(self.library, recorded_images))
        templates_dir = self.project.templates_dir
        if template is not None:
            source = template
            text = render_template(templates_dir, template, values, lookup)
        else:
            assert prompt is not None
            source = prompt
            text = render_string(prompt, values, lookup, templates_dir=templates_dir) if (
                "{" in prompt
            ) else " ".join(prompt.split())
        resolved = resolve(text, lookup, source=template, model=spec)
        cls = provider_class(provider_name)
        bound = tuple(
            BoundReference(
                name=b.name,
                label=b.label,
                image_id=b.image.image_id,
                sha256=b.image.sha256,
                path=b.image.path,
                width=b.image.width,
                height=b.image.height,
                warnings=b.image.warnings,
                reference_id=lookup.reference_ids.get(b.name.lower()),
            )
            for b in resolved.bindings
        )
        images = [BoundImage(tag=b.name, url=f"upload://{b.sha256[:16]}") for b in bound]
        sent = text_for_model(resolved, spec, order_form=config.order_form)
        body = cls.build_body(spec, sent, images, chosen)
        warnings = tuple(f"@{b.name}: {w}" for b in bound for w in b.warnings)
        # Paid work in a size the project did not ask for is said, never silent.
        unmade = composed.warning(config.size_written)
        if unmade is not None:
            warnings = (unmade, *warnings)
        return RenderResult(
            source=source,
            text=text,
            prompt=sent,
            references=bound,
            params=spec.params(chosen),
            provider=provider_name,
            body=body,
            cost_estimate=self.price(provider_name, spec, chosen),
            warnings=warnings,
            model=spec.id,
        )

    def price(self, provider: str, model: Any = None, options: Any = None) -> float:
        """Estimated price of one image (US dollars) of ``model`` (a spec, id or alias; None:
        the default model) with ``options`` (None: its defaults): the project's price table,
        else the model's own price. 0 for a provider whose work is free (offline, or
        ``simulated``)."""
        from ..models import catalog
        from ..models.compose import price_per_image
        from ..providers.registry import provider_class

        if (not provider_class(provider).paid
                or self.provider_options.get(provider, {}).get("simulated")):
            return 0.0
        spec = catalog.get(model)
        if options is None or isinstance(options, Mapping):
            options = spec.parse_options(options)
        return price_per_image(spec, options, self.project.config.prices)

    def spent(self) -> float:
        """Estimated spend so far: every generation that was or may have been paid."""
        with read_session(self.library.db) as session:
            total = session.exec(
                select(func.sum(Generation.cost_estimate)).where(
                    col(Generation.status).in_(("completed", "submitted", "submitting", "unknown"))
                )
            ).one()
        return float(total or 0.0)

    def check_budget(self, cost: float, max_cost: float | None) -> None:
        """Refuse, before anything is sent, work that would break a budget.

        An early answer only: the engine checks the project budget again, atomically with
        recording the work (see :func:`refstudio.engine.records.create_pending_many`).
        """
        from ..engine.records import BUDGET_SLACK, check_within_budget
        from ..models.params import check_cost_limit

        max_cost = check_cost_limit(max_cost)
        if max_cost is not None and cost > max_cost + BUDGET_SLACK:
            raise BudgetExceededError(
                f"estimated cost ${cost:.2f} is over --max-cost ${max_cost:.2f}; nothing was sent"
            )
        budget = self.project.config.budget
        if budget is not None and cost > 0:
            check_within_budget(self.spent(), cost, budget)

    def retry_cost(self, generation_id: int) -> RetryCost:
        """What sending a generation again costs, and whether it was (maybe) paid before."""
        from ..engine.records import load

        gen = load(self.library.db, generation_id)
        price = f"${gen.cost_estimate:.2f}"
        before = gen.paid_attempts
        if gen.status == "unknown":
            before = max(before, 1)
            message = (f"sending it again costs {price}, and it may be paid twice: the earlier "
                       "request may have been accepted and billed (its answer was lost). "
                       "`refstudio reconcile` checks the provider's records first")
        elif before == 0:
            message = (f"sending it costs {price}; it was never accepted by the provider, so "
                       "nothing was paid for it before")
        elif gen.request_id and before == 1:
            message = (f"sending it again costs {price} more: the provider accepted it before "
                       f"(task {gen.request_id}) and it {gen.status} there; whether that "
                       "attempt is billed is up to the provider")
        else:
            message = (f"sending it again costs {price} more: {before} earlier attempt(s) were "
                       "or may have been accepted and billed")
        return RetryCost(cost=gen.cost_estimate, paid_before=before, message=message)

    # -- queries -----------------------------------------------------------------------------

    def generation(self, generation_id: int) -> GenerationInfo:
        """Everything recorded about one generation."""
        return self.queries.get(generation_id)

    def history(
        self, *, ref: str | None = None, status: str | None = None, limit: int | None = 50,
        model: str | None = None, text: str | None = None, by: str | None = None,
    ) -> list[GenerationInfo]:
        """Generations, newest first; optionally those using ``ref``, in one ``status``, of
        one ``model`` (id or alias), whose prompt contains ``text``, or asked for by author
        ``by``."""
        from ..storage.tables import GENERATION_STATES

        if status is not None and status not in GENERATION_STATES:
            raise InputError(
                f"unknown status {status!r}; choose one of: {', '.join(GENERATION_STATES)}"
            )
        return self.queries.history(ref=ref, status=status, limit=limit, model=model,
                                    text=text, by=by)

    def lineage(self, name: str) -> dict[str, Any]:
        """A tree of where each image of a reference came from, down to imported files."""
        from ..library.results import lineage_of_image

        info = self.library.get(name)
        images = []
        for image in info.images:
            with read_session(self.library.db) as session:
                row = session.get(ReferenceImage, image.id)
            node = lineage_of_image(self.library.db, self.queries, row, image.sha256)
            images.append({"image_id": image.id, "label": image.label,
                           "is_primary": image.is_primary, **node})
        return {"name": info.name, "kind": info.kind, "images": images}

    # -- promote -----------------------------------------------------------------------------

    def promote(
        self,
        generation_id: int,
        name: str,
        *,
        index: int = 0,
        kind: str | None = None,
        label: str | None = None,
        description: str | None = None,
        keep_primary: bool = False,
    ) -> ReferenceInfo:
        """Make output ``index`` of a generation a reference, or a new image of one.

        A new NAME becomes a reference of ``kind`` (default character). An existing NAME gets
        the output as its new primary image, or, with ``keep_primary``, as an extra labelled
        view. The lineage edge (which output it came from) is stored either way.
        """
        from ..library.references import check_kind, check_label

        name = clean_name(name)
        label = check_label(label)
        if kind is not None:
            check_kind(kind)
        gen = self.queries.get(generation_id)
        output = next((o for o in gen.outputs if o.index == index), None)
        if output is None:
            have = ", ".join(o.ref for o in gen.outputs) or "none"
            raise OutputNotFoundError(
                f"generation #{generation_id} has no output {index} (status {gen.status}; "
                f"outputs: {have})"
            )
        existing = self.library.find_row(name)
        db = self.library.db
        with write_session(db) as session:
            out_row = session.exec(
                select(Output).where(Output.generation_id == generation_id, Output.index == index)
            ).one()
            asset = session.get(Asset, out_row.asset_id)
            assert asset is not None and out_row.id is not None
            if existing is None:
                ref_id = insert_reference(
                    session.connection(), name=name, key=name_key(name),
                    kind=kind or "character", description=description or gen.prompt[:200],
                    author=self.library.author)
                self.library.add_generated_image(
                    session, reference_id=ref_id, asset_id=asset.id,  # type: ignore[arg-type]
                    label=label, make_primary=True, source_output_id=out_row.id,
                )
            else:
                assert existing.id is not None
                ref_id = existing.id
                twice = session.exec(
                    select(ReferenceImage).where(
                        ReferenceImage.reference_id == ref_id,
                        ReferenceImage.asset_id == asset.id,
                    )
                ).first()
                if twice is not None:
                    raise NameTakenError(
                        f"output {generation_id}:{index} is already an image of @{existing.name}"
                    )
                if keep_primary and label is None:
                    raise InputError("--keep-primary adds a labelled view: give --label too")
                if label is not None and session.exec(
                    select(ReferenceImage).where(
                        ReferenceImage.reference_id == ref_id, ReferenceImage.label == label
                    )
                ).first():
                    raise NameTakenError(
                        f"@{existing.name} already has an image labelled {label!r}"
                    )
                self.library.add_generated_image(
                    session, reference_id=ref_id, asset_id=asset.id,  # type: ignore[arg-type]
                    label=label, make_primary=not keep_primary, source_output_id=out_row.id,
                )
                row = session.get(Reference, ref_id)
                assert row is not None
                if kind is not None:
                    row.kind = kind
                if description is not None:
                    row.description = description
                session.add(row)
        return self.library.get_by_id(ref_id)

    # -- provider-facing verbs, as coroutines (the core both faces share) ----------------------

    def prepare_requests(
        self,
        prompt: str | None = None,
        *,
        template: str | None = None,
        variables: Mapping[str, Any] | None = None,
        vars_file: Path | str | None = None,
        n: int = 1,
        aspect_ratio: str | None = None,
        resolution: str | None = None,
        seed: int | None = None,
        provider: str | None = None,
        run_id: int | None = None,
        step_id: str | None = None,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
        recorded_images: Sequence[RecordedImage] | None = None,
    ) -> tuple[RenderResult, list[PreparedRequest]]:
        """Render a prompt and build the ``n`` requests it stands for (nothing is written).
        ``recorded_images``: as :meth:`render`."""
        from ..engine import BindingRecord, PreparedRequest
        from ..models import catalog
        from ..models.compose import seeds_for
        from ..models.params import check_batch_size

        check_batch_size(n)
        rendered = self.render(
            prompt, template=template, variables=variables, vars_file=vars_file,
            provider=provider, aspect_ratio=aspect_ratio, resolution=resolution, seed=seed,
            model=model, options=options, recorded_images=recorded_images,
        )
        spec = catalog.get(rendered.model)
        seed_field = spec.options.seed_field
        bindings = tuple(
            BindingRecord(name=r.name, label=r.label, sha256=r.sha256, image_id=r.image_id,
                          reference_id=r.reference_id)
            for r in rendered.references
        )
        requests = [
            PreparedRequest(
                prompt=rendered.prompt,
                # The common vocabulary, for whoever reads the request; the options rule.
                aspect_ratio=rendered.params.get("aspect_ratio"),
                resolution=rendered.params.get("resolution"),
                seed=variant_seed,
                model=spec.id,
                options=(rendered.params if seed_field is None
                         else {**rendered.params, seed_field: variant_seed}),
                bindings=bindings,
                template_source=template if template else (prompt if prompt != rendered.prompt
                                                           else None),
                run_id=run_id,
                step_id=step_id,
                variant=index,
            )
            for index, variant_seed in enumerate(seeds_for(spec, seed, n))
        ]
        return rendered, requests

    async def generate(
        self,
        prompt: str | None = None,
        *,
        template: str | None = None,
        variables: Mapping[str, Any] | None = None,
        vars_file: Path | str | None = None,
        n: int = 1,
        aspect_ratio: str | None = None,
        resolution: str | None = None,
        seed: int | None = None,
        provider: str | None = None,
        max_cost: float | None = None,
        promote: str | None = None,
        on_event: Callable[[Event], None] | None = None,
        run_id: int | None = None,
        step_id: str | None = None,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
        on_recorded: Callable[[list[int]], None] | None = None,
    ) -> list[GenerationInfo]:
        """Generate ``n`` variants of a prompt with one model and store their outputs.

        ``model`` is a catalog id or alias (None: the project's default model) and ``options``
        its own options. Seeds: a given ``seed`` S gives S, S+1, …; otherwise random seeds
        (always recorded; models without seeds get none). Checks the budget before anything is
        sent. With ``promote``, the first output of the first completed generation becomes (a
        new version of) that reference. ``on_recorded`` hears the new generation ids once they
        are written down, before any is sent (a front end shows them at once).
        """
        from ..models.params import check_cost_limit

        check_cost_limit(max_cost)
        if promote is not None:
            clean_name(promote)
        rendered, requests = self.prepare_requests(
            prompt, template=template, variables=variables, vars_file=vars_file, n=n,
            aspect_ratio=aspect_ratio, resolution=resolution, seed=seed, provider=provider,
            run_id=run_id, step_id=step_id, model=model, options=options,
        )
        self.check_budget(rendered.cost_estimate * n, max_cost)
        outcomes = await self._drive(rendered.provider, requests, rendered.cost_estimate,
                                     on_event, on_recorded)
        infos = self.queries.many([o.generation_id for o in outcomes])
        if promote is not None:
            done = next((g for g in infos if g.status == "completed" and g.outputs), None)
            if done is None:
                raise GenerationError(f"nothing completed, so nothing was promoted to @{promote}")
            self.promote(done.id, promote)
        return infos

    async def resume(
        self,
        *,
        send: bool = True,
        provider: str | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> list[GenerationInfo]:
        """Finish what stopped processes left; never resend what may have been accepted.

        Collects ``submitted`` work (polls, downloads); settles ``unknown`` work from the
        provider's own records where it keeps them (see :meth:`reconcile`); and, with ``send``
        (the default), sends the generations that were never sent (``pending``: they are what
        was asked for, and nothing was paid for them). ``send=False`` only collects. Sending
        checks the budget first. Returns the generations it changed.
        """
        from ..engine.core import owner_alive
        from ..engine.records import check_within_budget, committed_cost, in_states

        db = self.library.db
        # Paid outputs a remote store refused earlier wait in the local spool: store them
        # first, so they are in the store before their generations are collected again.
        await asyncio.to_thread(self.library.store.flush_spool)
        open_rows = in_states(db, ("pending", "submitting", "submitted"))
        if provider:
            open_rows = [r for r in open_rows if r.provider == provider]
        budget = self.project.config.budget
        if send and budget is not None:
            unsent = [r for r in open_rows
                      if r.status == "pending" and not owner_alive(r.owner, db)]
            cost = sum(r.cost_estimate for r in unsent)
            try:
                with read_session(db) as session:
                    counted = committed_cost(session)  # these rows are in it already
                check_within_budget(counted - cost, cost, budget)
            except BudgetExceededError as exc:
                raise BudgetExceededError(
                    f"sending the {len(unsent)} never-sent generation(s): {exc.message}",
                    hint="`refstudio resume --no-send` collects submitted work without "
                    "sending anything; or raise `budget` in refstudio.toml",
                ) from None
        providers = {r.provider for r in open_rows}
        with_unknowns = {r.provider for r in in_states(db, ("unknown",))
                         if provider in (None, r.provider)} - providers
        outcomes: list[Outcome] = []
        for name in sorted(providers | with_unknowns):
            try:
                scope = self.engine(name, on_event)
            except AuthenticationError:
                if name in providers:
                    raise
                continue  # only `unknown` work, and no key to ask the provider about it
            async with scope as engine:
                outcomes.extend(await engine.resume(send=send, reconcile=True))
        return self.queries.many(_unique(o.generation_id for o in outcomes))

    async def reconcile(
        self,
        *,
        provider: str | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> list[Reconciled]:
        """Settle ``unknown`` generations from the provider's own records (WaveSpeed's task
        history). Sends nothing.

        A task matched to a generation without doubt is adopted (its outputs collected, the
        generation completed and noted "reconciled"); a generation whose whole submit window
        the records cover with no task in it is "not accepted" and becomes ``pending``, so
        :meth:`resume` sends it, paid for the first time; any other stays ``unknown`` with the
        reason in its note. Providers without records (offline) leave everything as it is.
        """
        from ..engine.records import in_states

        db = self.library.db
        names = {r.provider for r in in_states(db, ("unknown",))
                 if provider in (None, r.provider)}
        results: list[Reconciled] = []
        for name in sorted(names):
            async with self.engine(name, on_event) as engine:
                results.extend(await engine.reconcile())
        return results

    async def retry(
        self, generation_id: int, *, on_event: Callable[[Event], None] | None = None,
        model: str | None = None,
    ) -> GenerationInfo:
        """Send a ``failed``, ``unknown`` or never-sent (``pending``) generation again.

        :meth:`retry_cost` says what it costs (never accepted: paid for the first time; an
        earlier attempt accepted or maybe accepted: it may be paid twice). With ``model``
        other than the generation's, its prompt (as written) goes to that model instead: a new
        generation, whatever the old one's state, with its seed when both models take seeds,
        bound to the reference images the generation was made from (in their order), however
        the references changed since. A model that cannot take that many images is refused
        (TooManyReferencesError / TooFewReferencesError) before anything is stored or sent.
        """
        from ..engine.core import NOTHING_SENT, owner_alive
        from ..engine.records import load, requeue
        from ..models import catalog

        gen = load(self.library.db, generation_id)
        if model is not None and catalog.get(model).id != gen.model_id:
            return await self._on_other_model(gen, catalog.get(model), on_event)
        if gen.status not in ("failed", "unknown", "pending") or (
            gen.status == "pending" and owner_alive(gen.owner, self.library.db)
        ):
            raise GenerationError(
                f"generation #{generation_id} is {gen.status}"
                + (" and being sent right now" if gen.status == "pending" else "")
                + "; only failed, unknown or never-sent generations can be retried"
            )
        self.check_budget(gen.cost_estimate, None)
        # Before the row changes: a read-only or full media folder must cost nothing.
        self.library.store.check_writable(hint=NOTHING_SENT)
        async with self.engine(gen.provider, on_event) as engine:
            # Checked again under the budget lock, in the transaction that makes it pending and
            # ours: a second `retry` of the same generation then finds it taken.
            requeue(self.library.db, generation_id,
                    budget=self.project.config.budget,
                    owner=engine.owner, seen_owner=gen.owner)
            await engine.run([generation_id])
        return self.queries.get(generation_id)

    async def accounts(self, provider: str | None = None) -> list[dict[str, Any]]:
        """What each configured provider's account holds and allows (free, sends no work).

        One entry per provider with a key set (or just ``provider``): WaveSpeed's balance;
        Runway's credit balance, tier limits and today's usage per model; a provider that
        tells nothing says so. (:meth:`Models.account` adds WaveSpeed's price quotes.)
        """
        from ..providers import config

        settings = config.effective_settings()
        names = [provider] if provider else [
            n for n in ("wavespeed", "runway") if settings.key_for(n)]
        found: list[dict[str, Any]] = []
        for name in names:
            client = self.make_provider(name)
            try:
                summary = await client.account_summary()
            finally:
                await client.aclose()
            found.append(summary if summary is not None else {
                "provider": name, "note": "this provider's account cannot be read"})
        return found

    async def cancel(self, generation_ids: Sequence[int]) -> list[GenerationInfo]:
        """Cancel running tasks at their provider (Runway: ``DELETE /v1/tasks/{id}``).

        Each generation must be ``submitted`` (its task id known) and its provider able to
        cancel; the check covers every id before anything is sent. A cancelled generation is
        ``failed`` ("cancelled"); one that finished first keeps its result (a later poll or
        `resume` stores it). Raises GenerationError naming the first one that cannot be
        cancelled.
        """
        from ..engine.records import apply, changed, load, now_utc
        from ..providers.registry import provider_class

        gens = [load(self.library.db, g) for g in _unique(generation_ids)]
        for gen in gens:
            if gen.status != "submitted" or not gen.request_id:
                raise GenerationError(
                    f"generation #{gen.id} is {gen.status}; only submitted (running) "
                    "generations can be cancelled", hint="nothing was cancelled")
            if not provider_class(gen.provider).supports_cancel:
                raise GenerationError(
                    f"generation #{gen.id} runs at {gen.provider}, which cannot cancel tasks",
                    hint="nothing was cancelled")
        for name in sorted({g.provider for g in gens}):
            provider = self.make_provider(name)
            try:
                for gen in (g for g in gens if g.provider == name):
                    assert gen.request_id is not None and gen.id is not None
                    await provider.cancel(gen.request_id)
                    status = await provider.fetch_status(gen.request_id, gen.poll_url)
                    if status.state == "failed":  # cancelled; a finished task keeps its result
                        apply(self.library.db, [changed(
                            gen.id, status="failed", owner=None, updated_at=now_utc(),
                            error="cancelled by `refstudio cancel` (Runway refunds what was "
                            "not run)")])
            finally:
                await provider.aclose()
        return [self.queries.get(g.id) for g in gens if g.id is not None]

    async def _on_other_model(
        self, gen: Generation, spec: ModelSpec, on_event: Callable[[Event], None] | None,
    ) -> GenerationInfo:
        """The prompt of ``gen`` as written, sent to ``spec`` as a new generation, bound to the
        reference images ``gen`` was made from (in their order), not to today's."""
        import json

        recorded = _recorded(gen)
        # The images are what a retry keeps: a model that cannot take them all is refused
        # first, naming that model's limit, before anything is rendered, stored or sent.
        try:
            spec.check_references(len(recorded), [r.name for r in recorded])
        except PromptError as exc:
            raise type(exc)(f"generation #{gen.id} was made from {exc.message}",
                            hint=exc.hint) from None
        source = gen.template_source or gen.prompt
        folder = self.project.templates_dir
        is_template = gen.template_source is not None and any(
            (folder / name).is_file() for name in (source, f"{source}.j2"))
        seed = json.loads(gen.params_json).get("seed")
        if spec.options.seed_field is None or not isinstance(seed, int):
            seed = None
        rendered, requests = self.prepare_requests(
            None if is_template else source, template=source if is_template else None,
            seed=seed, model=spec.id, recorded_images=recorded)
        self.check_budget(rendered.cost_estimate, None)
        [outcome] = await self._drive(rendered.provider, requests, rendered.cost_estimate,
                                      on_event)
        return self.queries.get(outcome.generation_id)

    def recorded_images(self, generation_id: int) -> list[RecordedImage]:
        """The reference images a generation was made from, in the order they were sent."""
        from ..engine.records import load

        return _recorded(load(self.library.db, generation_id))

    # -- plumbing ------------------------------------------------------------------------------

    def make_provider(self, name: str) -> Provider:
        """Instantiate a provider with the user's key and endpoint settings."""
        from ..providers import config
        from ..providers.registry import create

        overrides = self.provider_options.get(name, {})
        if name == "wavespeed":
            settings = config.effective_settings(name)
            # The pool is sized from what the account runs at once: one request per task in
            # flight at a time, and a few spare for resumed polls and uploads, at most 8.
            in_flight = self.project.config.concurrency
            options = {"api_key": settings.api_key, "base_url": settings.base_url,
                       "max_connections": min(8, in_flight + 2), **overrides}
            return create(name, **options)
        if name == "runway":
            settings = config.effective_settings(name)
            in_flight = self.project.config.concurrency
            # A Runway key that is the WaveSpeed key is refused before anything is sent.
            import os

            options = {"api_key": settings.runway_api_key, "base_url": settings.runway_base_url,
                       "max_connections": min(8, in_flight + 2),
                       # The documented fallback: images inline as data: URIs (<= 5 MB).
                       "uploads": os.environ.get("REFSTUDIO_RUNWAY_UPLOADS") or "runway",
                       "other_keys": {"WaveSpeed": settings.api_key}, **overrides}
            return create(name, **options)
        return create(name, **overrides)

    def engine(
        self,
        provider_name: str,
        on_event: Callable[[Event], None] | None = None,
        concurrency: int | None = None,
        model: str | None = None,
    ) -> AbstractAsyncContextManager[Engine]:
        """An engine on a new provider of that name, both closed when the ``async with`` ends.

        Without ``concurrency``, a provider that knows its account's tier (Runway) sizes it for
        ``model`` (None: the provider's default model)."""
        from ..engine import Engine, EngineSettings

        provider = self.make_provider(provider_name)
        config = self.project.config

        def build(tier: int | None) -> Engine:
            # An explicit concurrency wins; else the account's tier when the provider tells it
            # (Runway: more in flight would only wait as THROTTLED); else the project's.
            lag = config.poll_lag if config.poll_lag is not None else provider.default_poll_lag
            settings = EngineSettings(concurrency=concurrency or tier or config.concurrency,
                                      target_lag=lag, budget=config.budget,
                                      author=self.project.author,
                                      lease_seconds=config.lease_seconds)
            return Engine(self.library.db, self.library.store, provider,
                          settings=settings, on_event=on_event)

        return _EngineScope(build, provider, ask_tier=concurrency is None, model=model)

    async def _drive(
        self,
        provider_name: str,
        requests: list[PreparedRequest],
        cost: float | list[float],
        on_event: Callable[[Event], None] | None,
        on_recorded: Callable[[list[int]], None] | None = None,
    ) -> list[Outcome]:
        model = requests[0].spec.id if requests else None
        async with self.engine(provider_name, on_event, model=model) as engine:
            # What the account cannot run today (credits, daily generations) is refused whole,
            # before anything is recorded or sent.
            sizes = self._image_bytes(requests)
            await engine.provider.preflight([
                {**r.params(), "model": r.spec.id,
                 "images": [{"tag": b.name, "bytes": sizes.get(b.sha256)} for b in r.bindings]}
                for r in requests])
            # Work a stopped process left behind is finished first: it was already paid for.
            await engine.resume()
            ids = engine.record_many(requests, cost)
            if on_recorded is not None:
                on_recorded(list(ids))
            return await engine.run(ids)


    def _image_bytes(self, requests: Sequence[PreparedRequest]) -> dict[str, int]:
        """Size in bytes of each bound image (by sha256), for the provider's preflight."""
        wanted = sorted({b.sha256 for r in requests for b in r.bindings})
        if not wanted:
            return {}
        with read_session(self.library.db) as session:
            rows = session.exec(select(Asset.sha256, Asset.bytes)
                                .where(col(Asset.sha256).in_(wanted))).all()
        return dict(rows)


class _EngineScope:
    """Opens the engine on entry, sized from the account's tier when the provider knows it."""

    def __init__(self, build: Callable[[int | None], Engine], provider: Provider, *,
                 ask_tier: bool = True, model: str | None = None) -> None:
        self._build = build
        self._ask_tier = ask_tier
        self._model = model
        self.engine: Engine | None = None
        self.provider = provider

    async def __aenter__(self) -> Engine:
        tier = None
        if self._ask_tier:
            try:
                tier = await self.provider.concurrency_limit(self._model)
            except ProviderError:
                tier = None  # unread: the project's setting holds; the submit says the rest
        self.engine = self._build(tier)
        return self.engine

    async def __aexit__(self, *exc: object) -> None:
        if self.engine is not None:
            await self.engine.aclose()
        await self.provider.aclose()


def _recorded(gen: Generation) -> list[RecordedImage]:
    """A generation row's bound images (``bindings_json``), in the order they were sent."""
    import json

    from ..library.lookup import RecordedImage

    return [RecordedImage(name=b["name"], label=b.get("label"), sha256=b["sha256"],
                          image_id=b.get("image_id"), reference_id=b.get("reference_id"))
            for b in json.loads(gen.bindings_json)]


def _unique(ids: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(ids))


__all__ = ["BoundReference", "Generations", "RenderResult", "RetryCost"]
