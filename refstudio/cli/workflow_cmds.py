"""``refstudio run``: multi-step compositions from workflow files."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._common import console, err_console, open_studio, print_json, warn

if TYPE_CHECKING:
    from ..app.studio import Studio


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    workflow: Annotated[str, typer.Argument(help="Workflow file, or a name in workflows/.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and cost; send nothing.")
    ] = False,
    concurrency: Annotated[
        int | None, typer.Option(help="Steps running at once (default: project setting, ≥4).")
    ] = None,
    provider: Annotated[str | None, typer.Option(help="wavespeed or offline.")] = None,
    var: Annotated[
        list[str] | None, typer.Option("--var", help="Override a [vars] entry: key=value.")
    ] = None,
    max_cost: Annotated[
        float | None, typer.Option(help="Refuse if the estimate is over this (USD).")
    ] = None,
    allow_outside: Annotated[bool, typer.Option(
        "--allow-outside", help="Let [refs] images come from outside the project folder.")
    ] = False,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Model of the steps that name none (`refstudio models`).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print stable JSON.")] = False,
) -> None:
    """Run a workflow: steps ordered by the references they promote and mention.

    Run it again after a crash or Ctrl-C and it continues; unchanged steps are not paid again.
    """
    from ..models.params import check_concurrency, check_cost_limit
    from ..prompts import parse_var_assignments

    check_cost_limit(max_cost, "--max-cost")
    check_concurrency(concurrency, "--concurrency")
    variables = parse_var_assignments(var or [])
    with open_studio() as studio:
        if dry_run and not as_json:
            _print_plan(studio, workflow, variables, allow_outside, model)

        def on_step(step_id: str, state: str, detail: str) -> None:
            if not as_json:
                err_console().print(f"[bold]{step_id}[/bold] {state} {detail}".rstrip(),
                                    highlight=False)

        report = studio.run_workflow(
            workflow, dry_run=dry_run, concurrency=concurrency, provider=provider,
            variables=variables, max_cost=max_cost, on_step=on_step,
            allow_outside=allow_outside, model=model,
        )
    if not as_json:
        for message in report.warnings:
            warn(message)
    if as_json:
        print_json(report.to_dict())
    elif dry_run:
        console().print(f"estimated cost: ${report.estimated_cost:.2f} (nothing was sent)")
    else:
        _print_report(report)
    if report.status == "failed":
        raise typer.Exit(11)
    if report.status == "paused":
        raise typer.Exit(0)


def _print_plan(
    studio: "Studio", workflow: str, variables: dict[str, Any], allow_outside: bool,
    model: str | None = None,
) -> None:
    from rich.table import Table

    from ..models import catalog
    from ..workflow.runner import bound_names, estimate

    plan = studio.plan_workflow(
        workflow, variables=variables, allow_outside=allow_outside, model=model)
    names = {n.lower(): n for n in studio.library.all_names()}
    provider = studio.project.config.provider
    from ..providers.registry import default_provider_name

    _, notes = estimate(studio.generations, plan, default_provider_name(provider))
    table = Table("level", "step", "references", "models", "seeds", "size", "promotes", "note")
    for step in plan.steps:
        promote = step.spec.promote
        table.add_row(
            str(step.level), step.id, " ".join(bound_names(step, names)) or "(none)",
            " ".join(catalog.get(m).alias for m in step.models),
            ", ".join(map(str, step.seeds)),
            " ".join(p for p in (step.aspect_ratio, step.resolution) if p) or "default",
            f"@{promote.name} ({promote.pick})" if promote else "", notes.get(step.id, ""),
        )
    console().print(f"plan for {Path(plan.workflow.path).name}:")
    console().print(table)


def _print_report(report: object) -> None:
    out = console()
    for step in report.steps:  # type: ignore[attr-defined]
        gens = ", ".join(f"#{g}" for g in step.generation_ids)
        extra = f" -> @{step.promoted}" if step.promoted else ""
        out.print(f"{step.id}: {step.status} {gens}{extra} {step.message}".rstrip(),
                  markup=False)
    out.print(f"run #{report.run_id}: {report.status}", markup=False)  # type: ignore[attr-defined]
    if report.status == "paused":  # type: ignore[attr-defined]
        out.print("run the workflow again to continue", markup=False)
