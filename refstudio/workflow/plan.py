"""From a workflow file to an ordered, checked plan — before anything is paid for.

Order comes from the references themselves: a step that mentions ``@mara_coat`` waits for the
step that promotes ``mara_coat``. When several steps promote the same name (a refinement chain),
they run in file order, and a mention waits for the last of them that comes before it in the file
(or for the first, when the name does not exist yet); a step that promotes a name waits for the
steps above it that mention that name (they bind the image they were written against).
``after = [...]`` adds explicit edges.

Checked here: template errors, mentions nobody provides (with a did-you-mean), more than three
references in a step, bad parameters, and cycles.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import gen4
from ..errors import RefstudioError, TooManyReferencesError, WorkflowError
from ..names import suggest
from ..params import validate_params
from ..prompts import render_string, render_template, scan
from .spec import StepSpec, Workflow


@dataclass
class PlannedStep:
    """One step with its rendered prompt, its dependencies and its seeds."""

    spec: StepSpec
    text: str
    mentions: list[str]  # distinct names as written, in order of first mention
    waits_for: dict[str, str]  # mentioned name (lower) -> step id that provides it
    depends_on: set[str]
    aspect_ratio: str
    resolution: str
    seeds: list[int]
    level: int = 0

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass
class Plan:
    workflow: Workflow
    steps: list[PlannedStep]  # in a valid execution order
    variables: dict[str, Any] = field(default_factory=dict)

    def step(self, step_id: str) -> PlannedStep:
        return next(s for s in self.steps if s.id == step_id)

    @property
    def levels(self) -> list[list[str]]:
        depth = max((s.level for s in self.steps), default=0)
        return [[s.id for s in self.steps if s.level == d] for d in range(depth + 1)]


def stable_seed(workflow_key: str, step_id: str) -> int:
    """A step without a seed gets one derived from its id, so reruns are the same request."""
    digest = hashlib.sha256(f"{workflow_key}:{step_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (gen4.SEED_MAX - 32) + 1


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
    defaults: tuple[str, str] = (gen4.DEFAULT_ASPECT_RATIO, gen4.DEFAULT_RESOLUTION),
) -> Plan:
    """Render every step, find its dependencies, and order the steps. Raises WorkflowError."""
    variables = {**workflow.spec.vars, **(overrides or {})}
    known = {n.lower(): n for n in library_names}
    known.update({n.lower(): n for n in workflow.spec.refs})
    promoters: dict[str, list[str]] = {}
    for step in workflow.steps:
        if step.promote is not None:
            promoters.setdefault(step.promote.name.lstrip("@").lower(), []).append(step.id)
    order_in_file = {s.id: i for i, s in enumerate(workflow.steps)}

    planned: list[PlannedStep] = []
    readers: dict[str, set[str]] = {}  # name (lower) -> steps so far in the file mentioning it
    for step in workflow.steps:
        where = f"{workflow.path.name}: step \"{step.id}\""
        try:
            text = render_step(step, variables, lookup, templates_dir, where)
            mentions, _ = scan(text, source=where)
            params = validate_params(
                step.aspect_ratio or defaults[0], step.resolution or defaults[1], step.seed
            )
        except RefstudioError as exc:
            raise WorkflowError(f"{where}: {exc.message}", hint=exc.hint) from None
        names: list[str] = []
        for m in mentions:
            if m.name.lower() not in (n.lower() for n in names):
                names.append(m.name)
        if len(names) > gen4.MAX_REFERENCES:
            raise TooManyReferencesError(
                f"{where} mentions {len(names)} references "
                f"({', '.join('@' + n for n in names)}); the model takes at most "
                f"{gen4.MAX_REFERENCES}"
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
            elif key not in known and key not in promoters:
                close = suggest(name, [*known.values(), *promoters])
                raise WorkflowError(
                    f"{where}: @{name} is not in the library, not in [refs], and no step "
                    "promotes it",
                    hint=("did you mean " + ", ".join("@" + c for c in close) + "?") if close
                    else "add it with `refstudio ref add`, or to the workflow's [refs]",
                )
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
        seed = params.seed if params.seed is not None else stable_seed(
            workflow.path.name, step.id
        )
        if seed + step.variants - 1 > gen4.SEED_MAX:
            raise WorkflowError(f"{where}: seed {seed} + {step.variants} variants is too large")
        planned.append(
            PlannedStep(
                spec=step,
                text=text,
                mentions=names,
                waits_for=waits_for,
                depends_on=set(waits_for.values()) | set(step.after) | chain,
                aspect_ratio=params.aspect_ratio,
                resolution=params.resolution,
                seeds=[seed + i for i in range(step.variants)],
            )
        )
    return Plan(workflow, _order(workflow, planned), variables)


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
