"""The workflow verbs of :class:`refstudio.Studio`: find, plan and run workflow files.

A service with explicit dependencies: the project (where workflow files live, the defaults), the
library, and the :class:`~refstudio.app.generation.Generations` a run drives (through the
runner's :class:`~refstudio.workflow.host.WorkflowHost` protocol).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import WorkflowError
from ..workflow.plan import Plan, build_plan
from ..workflow.runner import (
    RunReport,
    StepListener,
    StepReport,
    WorkflowRunner,
    ensure_refs,
    estimate,
    image_step_of,
)
from ..workflow.spec import Workflow, load_workflow

if TYPE_CHECKING:
    from ..engine import Event
    from ..library.references import Library
    from ..prompts import RefRecord
    from .generation import Generations
    from .project import Project


class Workflows:
    """Workflow verbs: ``plan_workflow`` (local) and ``run_workflow`` (async)."""

    def __init__(self, project: Project, library: Library, generations: Generations) -> None:
        self.project = project
        self.library = library
        self.generations = generations

    def find_workflow(self, name: Path | str) -> Path:
        """A workflow path as given, or a name in the project's ``workflows/`` folder."""
        path = Path(name)
        if path.is_file():
            return path
        folder = self.project.workflows_dir
        for candidate in (folder / str(name), folder / f"{name}.toml"):
            if candidate.is_file():
                return candidate
        available = sorted(p.stem for p in folder.glob("*.toml"))
        raise WorkflowError(
            f"no workflow {str(name)!r}",
            hint=f"workflows here: {', '.join(available)}" if available else
            "workflow files are TOML files; pass a path or put them in workflows/",
        )

    def plan_workflow(
        self,
        workflow: Path | str,
        *,
        variables: Mapping[str, Any] | None = None,
        allow_outside: bool = False,
        model: str | None = None,
    ) -> Plan:
        """Parse and check a workflow and order its steps. Writes nothing, sends nothing.

        ``[refs]`` images are found relative to the workflow file; ones outside the project
        folder are refused unless ``allow_outside``. ``model`` is the model of steps that name
        none (default: ``default_model`` in refstudio.toml, else the catalog's default).
        """
        from ..library.lookup import LibraryLookup

        wf = load_workflow(self.find_workflow(workflow))
        wf.check_image_paths(self.project.root, allow_outside=allow_outside)
        config = self.project.config
        return build_plan(
            wf,
            library_names=self.library.all_names(),
            lookup=_WithWorkflowRefs(LibraryLookup(self.library), wf),
            templates_dir=self.project.templates_dir,
            overrides=variables,
            defaults=(config.aspect_ratio, config.resolution),
            image_step=image_step_of(self.library.db, str(wf.path)),
            default_model=model or config.default_model,
            size_written=config.size_written,
        )

    async def run_workflow(
        self,
        workflow: Path | str,
        *,
        dry_run: bool = False,
        concurrency: int | None = None,
        provider: str | None = None,
        variables: Mapping[str, Any] | None = None,
        max_cost: float | None = None,
        on_step: StepListener | None = None,
        on_event: Callable[[Event], None] | None = None,
        allow_outside: bool = False,
        model: str | None = None,
    ) -> RunReport:
        """Run (or with ``dry_run``, only plan) a workflow file; resumable by running again.

        Checks the whole plan and the budget before anything is paid for. Returns a RunReport
        whose status is ``completed``, ``paused`` (a manual pick, or an unknown request) or
        ``failed``; with ``dry_run``, ``planned``. ``allow_outside`` lets ``[refs]`` images come
        from outside the project folder. ``model`` runs the steps that name no model on that one.
        """
        from ..models.params import check_concurrency, check_cost_limit
        from ..providers.registry import default_provider_name

        check_cost_limit(max_cost)
        check_concurrency(concurrency)
        from ..models import catalog
        from ..providers.registry import provider_class

        if model is not None:
            catalog.get(model)  # an unknown model: UnknownModelError, before anything else
        plan = self.plan_workflow(workflow, variables=variables, allow_outside=allow_outside,
                                  model=model)
        provider_name = default_provider_name(provider or self.project.config.provider)
        for step in plan.steps:
            for model_id in step.models:
                if not provider_class(provider_name).serves(catalog.get(model_id)):
                    raise WorkflowError(
                        f'{plan.workflow.path.name}: step "{step.id}": model {model_id} is not '
                        f'served by "{provider_name}" (a run uses one provider for every step)',
                        hint="run it with --provider offline to preview, or choose the "
                        "provider's own models")
            wanted = step.spec.provider
            if wanted is not None and wanted != provider_name:
                raise WorkflowError(
                    f'{plan.workflow.path.name}: step "{step.id}": provider = "{wanted}", but '
                    f'this run uses "{provider_name}" (a run uses one provider for every step)',
                    hint=f"run it with --provider {wanted}, or remove the step's provider key",
                )
        cost, notes = estimate(self.generations, plan, provider_name)
        self.generations.check_budget(cost, max_cost)
        if dry_run:
            steps = [StepReport(s.id, "planned", message=notes.get(s.id, "")) for s in plan.steps]
            return RunReport(None, "planned", steps, cost, warnings=plan.warnings)
        ensure_refs(self.library, plan)
        runner = WorkflowRunner(
            self.generations, plan, provider=provider_name,
            concurrency=concurrency or max(4, self.project.config.concurrency),
            on_step=on_step, on_event=on_event,
        )
        report = await runner.run()
        report.estimated_cost = cost
        report.warnings = plan.warnings
        return report


class _WithWorkflowRefs:
    """The library, plus the workflow's [refs] not yet in it (their data, for templates)."""

    def __init__(self, library: Any, workflow: Workflow) -> None:
        self.library = library
        self.extra = {name.lower(): (name, spec) for name, spec in workflow.spec.refs.items()}

    def find(self, name: str) -> RefRecord | None:
        from ..prompts import RefRecord

        found: RefRecord | None = self.library.find(name)
        if found is None and name.lower() in self.extra:
            stored, spec = self.extra[name.lower()]
            return RefRecord(stored, spec.kind, spec.description, tuple(spec.tags), ())
        return found

    def all_names(self) -> list[str]:
        return [*self.library.all_names(), *(n for n, _ in self.extra.values())]


__all__ = ["Workflows"]
