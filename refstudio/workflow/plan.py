"""From a workflow file to an ordered, checked plan — before anything is paid for.

Order comes from the references themselves: a step that mentions ``@mara_coat`` waits for the
step that promotes ``mara_coat``. When several steps promote the same name (a refinement chain),
they run in file order, and a mention waits for the last of them that comes before it in the file
(or for the first, when the name does not exist yet); a step that promotes a name waits for the
steps above it that mention that name (they bind the image they were written against).
``after = [...]`` adds explicit edges.

Checked here, so ``--dry-run`` refuses what a run would refuse only after paying: template
errors, mentions nobody provides (with a did-you-mean), a step mentioning a name only it
promotes, labels no image will have and two labels of one reference in a step, more than three
references in a step, bad parameters, cycles, and promotions that would fail: a name breaking
the tag rule, an unknown kind, a bad label, ``keep_primary`` without a label, a ``pick`` beyond
the step's variants, a label the reference already has (or another step gives it too).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import RefstudioError, TooFewReferencesError, TooManyReferencesError, WorkflowError
from ..models import catalog
from ..models.compose import compose
from ..models.spec import ModelSpec
from ..prompts import RefImage, RefRecord, render_string, render_template, resolve, scan
from ..prompts.names import clean_name, suggest
from .spec import PromoteSpec, StepSpec, Workflow

#: Given a library image id, the id of the step of this workflow whose output it is, if any.
ImageStep = Callable[[int], "str | None"]


@dataclass
class PlannedStep:
    """One step with its rendered prompt, its dependencies and its seeds."""

    spec: StepSpec
    text: str
    mentions: list[str]  # distinct names as written, in order of first mention
    waits_for: dict[str, str]  # mentioned name (lower) -> step id that provides it
    depends_on: set[str]
    aspect_ratio: str | None  # as the step (or nothing) said; each model maps it
    resolution: str | None
    seeds: list[int]
    #: Catalog ids of the models the step runs, in order: one generation per model and variant.
    models: list[str] = field(default_factory=list)
    #: Each model's options for this step (sizes mapped, no seed): what it is priced by.
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    level: int = 0

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass
class Plan:
    workflow: Workflow
    steps: list[PlannedStep]  # in a valid execution order
    variables: dict[str, Any] = field(default_factory=dict)
    #: What the run should say before paying: a project default size a step's model cannot
    #: make (that model's own default is used instead).
    warnings: list[str] = field(default_factory=list)

    def step(self, step_id: str) -> PlannedStep:
        return next(s for s in self.steps if s.id == step_id)

    @property
    def levels(self) -> list[list[str]]:
        depth = max((s.level for s in self.steps), default=0)
        return [[s.id for s in self.steps if s.level == d] for d in range(depth + 1)]


#: Seeds every model with seeds takes (Gen-4 starts at 1, Seedream and Kontext at -1 "random").
_SEED_CEILING = 2_147_483_647


def seed_ceiling(models: list[ModelSpec]) -> int:
    """The highest seed all of ``models`` that take seeds accept."""
    return min((m.seed.high for m in models if m.seed is not None), default=_SEED_CEILING)


def stable_seed(workflow_key: str, step_id: str, ceiling: int = _SEED_CEILING) -> int:
    """A step without a seed gets one derived from its id, so reruns are the same request."""
    digest = hashlib.sha256(f"{workflow_key}:{step_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (ceiling - 32) + 1


def render_step(
    step: StepSpec,
    variables: Mapping[str, Any],
    lookup: Any,
    templates_dir: Any,
    source: str,
) -> str:
    values = {**variables, **step.vars}
    if step.template is not None:
        return render_template(templates_dir, step.template, values, lookup)
    assert step.prompt is not None
    return render_string(step.prompt, values, lookup, name=source, templates_dir=templates_dir)


def build_plan(
    workflow: Workflow,
    *,
    library_names: list[str],
    lookup: Any,
    templates_dir: Any,
    overrides: Mapping[str, Any] | None = None,
    defaults: tuple[str | None, str | None] = (None, None),
    image_step: ImageStep | None = None,
    default_model: str | None = None,
    size_written: Collection[str] = ("aspect_ratio", "resolution"),
) -> Plan:
    """Render every step, find its dependencies, and order the steps. Raises WorkflowError.

    ``image_step`` tells which library images this workflow's own steps promoted (so a rerun
    may promote onto a label it gave before); without it every existing label counts as taken.
    ``defaults`` are the project's size (applied where each model can make it; what a model
    cannot make of the parts ``size_written`` names goes into :attr:`Plan.warnings`) and
    ``default_model`` the model of steps that name none.
    """
    variables = {**workflow.spec.vars, **(overrides or {})}
    _check_refs(workflow)
    _check_promotes(workflow, lookup, image_step)
    known = {n.lower(): n for n in library_names}
    known.update({n.lower(): n for n in workflow.spec.refs})
    promoters: dict[str, list[str]] = {}
    for step in workflow.steps:
        if step.promote is not None:
            promoters.setdefault(step.promote.name.lstrip("@").lower(), []).append(step.id)
    order_in_file = {s.id: i for i, s in enumerate(workflow.steps)}

    planned: list[PlannedStep] = []
    warnings: list[str] = []
    readers: dict[str, set[str]] = {}  # name (lower) -> steps so far in the file mentioning it
    for step in workflow.steps:
        where = f"{workflow.path.name}: step \"{step.id}\""
        try:
            text = render_step(step, variables, lookup, templates_dir, where)
            mentions, _ = scan(text, source=where)
            specs = [catalog.get(name if name is not None else default_model)
                     for name in step.model_names]
            model_params: dict[str, dict[str, Any]] = {}
            for spec in specs:  # every check before paying: sizes, seeds, options
                # A step's seed is for the models that take seeds; the others go without.
                seed = step.seed if spec.options.seed_field is not None else None
                composed = compose(spec, aspect_ratio=step.aspect_ratio,
                                   resolution=step.resolution, seed=seed,
                                   options=step.options, defaults=defaults)
                model_params[spec.id] = spec.params(composed.options)
                unmade = composed.warning(size_written)
                if unmade is not None:
                    warnings.append(f"{where}: {unmade}")
        except RefstudioError as exc:
            raise WorkflowError(f"{where}: {exc.message}", hint=exc.hint) from None
        names: list[str] = []
        for m in mentions:
            if m.name.lower() not in (n.lower() for n in names):
                names.append(m.name)
        for spec in specs:
            if len(names) > spec.max_references:
                raise TooManyReferencesError(
                    f"{where} mentions {len(names)} references "
                    f"({', '.join('@' + n for n in names)}); {spec.alias} ({spec.id}) takes "
                    f"at most {spec.max_references}"
                )
            if len(names) < spec.min_references:
                raise TooFewReferencesError(
                    f"{where} mentions {len(names)} references; {spec.alias} ({spec.id}) "
                    f"needs at least {spec.min_references}",
                    hint="mention a reference with @name, or choose another model",
                )
        waits_for: dict[str, str] = {}
        for name in names:
            key = name.lower()
            providers = [p for p in promoters.get(key, []) if p != step.id]
            if providers:
                before = [p for p in providers if order_in_file[p] < order_in_file[step.id]]
                if before:
                    waits_for[key] = before[-1]
                elif key not in known:
                    waits_for[key] = providers[0]
            elif key not in known and key in promoters:
                raise WorkflowError(
                    f"{where}: mentions @{name}, which only this step itself promotes: it is not "
                    "in the library or in [refs], so there is no image to bind",
                    hint="mention it in a later step, or add it first (`refstudio ref add`, "
                    "or the workflow's [refs])",
                )
            elif key not in known and key not in promoters:
                close = suggest(name, [*known.values(), *promoters])
                raise WorkflowError(
                    f"{where}: @{name} is not in the library, not in [refs], and no step "
                    "promotes it",
                    hint=("did you mean " + ", ".join("@" + c for c in close) + "?") if close
                    else "add it with `refstudio ref add`, or to the workflow's [refs]",
                )
        _check_bindings(text, where, lookup, workflow, waits_for)
        # Steps promoting the same name form a chain in file order.
        chain: set[str] = set()
        if step.promote is not None:
            same = promoters[step.promote.name.lstrip("@").lower()]
            earlier = [p for p in same if order_in_file[p] < order_in_file[step.id]]
            if earlier:
                chain.add(earlier[-1])
            # Write after read: the steps above this one in the file that mention the name it
            # promotes must bind the image they were written against, so they run first.
            chain.update(readers.get(step.promote.name.lstrip("@").lower(), set()) - {step.id})
        for key in (n.lower() for n in names):
            provider = waits_for.get(key)
            # (A mention of a name first made by a later step waits for that step instead.)
            if provider is None or order_in_file[provider] < order_in_file[step.id]:
                readers.setdefault(key, set()).add(step.id)
        # Keyed on the file name, not its full path, so a moved project keeps its seeds.
        ceiling = seed_ceiling(specs)
        seed = step.seed if step.seed is not None else stable_seed(
            workflow.path.name, step.id, ceiling
        )
        if seed + step.variants - 1 > ceiling:
            raise WorkflowError(f"{where}: seed {seed} + {step.variants} variants is too large")
        planned.append(
            PlannedStep(
                spec=step,
                text=text,
                mentions=names,
                waits_for=waits_for,
                depends_on=set(waits_for.values()) | set(step.after) | chain,
                aspect_ratio=step.aspect_ratio,
                resolution=step.resolution,
                seeds=[seed + i for i in range(step.variants)],
                models=[spec.id for spec in specs],
                model_params=model_params,
            )
        )
    return Plan(workflow, _order(workflow, planned), variables, warnings)


def _check_refs(workflow: Workflow) -> None:
    """The workflow's [refs] are made at run time; check now what making them would check."""
    from ..library.references import check_kind, check_tag

    for name, ref in workflow.spec.refs.items():
        try:
            clean_name(name)
            check_kind(ref.kind)
            for tag in ref.tags:
                check_tag(tag)
        except RefstudioError as exc:
            raise WorkflowError(
                f"{workflow.path.name}: refs.{name}: {exc.message}", hint=exc.hint
            ) from None


def _check_promotes(workflow: Workflow, lookup: Any, image_step: ImageStep | None) -> None:
    """Refuse every promotion that would fail after its step was paid for."""
    from ..library.references import check_kind, check_label

    labels: dict[tuple[str, str], str] = {}  # (name key, label) -> step id giving it
    promoted: set[str] = set()  # name keys promoted by the steps so far
    for step in workflow.steps:
        promote = step.promote
        if promote is None:
            continue
        where = f"{workflow.path.name}: step \"{step.id}\": promote"
        try:
            name = clean_name(promote.name)
            if promote.kind is not None:
                check_kind(promote.kind)
            check_label(promote.label)
        except RefstudioError as exc:
            raise WorkflowError(f"{where}: {exc.message}", hint=exc.hint) from None
        exists = (
            lookup.find(name) is not None
            or name.lower() in promoted  # an earlier step makes it
        )
        promoted.add(name.lower())
        if promote.keep_primary and promote.label is None and exists:
            raise WorkflowError(
                f"{where}: keep_primary adds the output to @{name} as a labelled view: "
                "give it a label too"
            )
        if isinstance(promote.pick, int) and promote.pick >= step.variants:
            raise WorkflowError(
                f"{where}: pick = {promote.pick}, but the step makes {step.variants} "
                f"variant(s), numbered 0 to {step.variants - 1}",
                hint='pick an index below variants, or pick = "first" or "manual"',
            )
        if promote.label is None:
            continue
        key = (name.lower(), promote.label)
        if key in labels:
            raise WorkflowError(
                f"{where}: step \"{labels[key]}\" already promotes an image labelled "
                f"{promote.label!r} to @{name}; a reference has one image per label"
            )
        labels[key] = step.id
        record = lookup.find(name)
        for image in record.images if record is not None else ():
            if image.label == promote.label and (
                image_step is None or image_step(image.image_id) != step.id
            ):
                raise WorkflowError(
                    f"{where}: @{record.name} already has an image labelled "
                    f"{promote.label!r}; promoting another would fail after paying",
                    hint="choose another label, or remove that image from the reference first",
                )


def _check_bindings(
    text: str, where: str, lookup: Any, workflow: Workflow, waits_for: Mapping[str, str]
) -> None:
    """Resolve a step's mentions against the library as the step will find it.

    Catches what only resolving catches (``@mara:back`` when no image of @mara will have that
    label, ``@mara`` with ``@mara:side`` when they are two images, a reference without images).
    """
    try:
        resolve(text, _AsTheStepSeesIt(lookup, workflow, waits_for), source=where)
    except TooManyReferencesError:
        raise
    except RefstudioError as exc:
        raise WorkflowError(f"{where}: {exc.message}", hint=exc.hint) from None


class _AsTheStepSeesIt:
    """The library after the [refs] are made and the promotions a step waits for are done."""

    def __init__(self, lookup: Any, workflow: Workflow, waits_for: Mapping[str, str]) -> None:
        self.lookup = lookup
        self.workflow = workflow
        self.waits_for = waits_for
        self._next_id = 0

    def _image(self, label: str | None, primary: bool) -> RefImage:
        self._next_id -= 1  # ids no real image has
        return RefImage(self._next_id, label, primary, "", "", 0, 0)

    def find(self, name: str) -> RefRecord | None:
        record: RefRecord | None = self.lookup.find(name)
        key = name.lower()
        refs = {n.lower(): n for n in self.workflow.spec.refs}
        if key in refs and (record is None or not record.images):
            # Made from its files when the run starts: unlabelled images, the first primary.
            files = self.workflow.spec.refs[refs[key]].images
            images = tuple(self._image(None, i == 0) for i in range(len(files)))
            record = RefRecord(refs[key], "", "", (), images)
        provider = self.waits_for.get(key)
        if provider is None:
            return record
        images_after = list(record.images) if record is not None else []
        for step in self.workflow.steps:
            promote: PromoteSpec | None = step.promote
            if promote is not None and promote.name.lstrip("@").lower() == key:
                primary = not promote.keep_primary
                if primary:
                    images_after = [replace(i, is_primary=False) for i in images_after]
                images_after.append(self._image(promote.label, primary))
            if step.id == provider:
                break
        stored = record.name if record is not None else name
        return RefRecord(stored, "", "", (), tuple(images_after))

    def all_names(self) -> list[str]:
        names: list[str] = self.lookup.all_names()
        return names


def _order(workflow: Workflow, steps: list[PlannedStep]) -> list[PlannedStep]:
    """Kahn's algorithm; each step's level is one more than its deepest dependency."""
    by_id = {s.id: s for s in steps}
    remaining = {s.id: set(s.depends_on) for s in steps}
    ordered: list[PlannedStep] = []
    while remaining:
        ready = [sid for sid, deps in remaining.items() if not deps]
        if not ready:
            cycle = " -> ".join(sorted(remaining))
            raise WorkflowError(
                f"{workflow.path.name}: the steps {cycle} wait for each other (a cycle)",
                hint="check which steps promote the references the others mention",
            )
        for sid in sorted(ready, key=lambda s: [x.id for x in steps].index(s)):
            step = by_id[sid]
            step.level = max((by_id[d].level + 1 for d in step.depends_on), default=0)
            ordered.append(step)
            del remaining[sid]
        for deps in remaining.values():
            deps.difference_update(ready)
    return ordered
