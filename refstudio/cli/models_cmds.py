"""``refstudio models``, ``models show``, ``models sync``, ``compare`` and ``account``."""

from typing import Annotated, Any

import typer

from ._common import console, open_studio, print_json, warn

JsonOpt = Annotated[bool, typer.Option("--json", help="Print stable JSON.")]

models_app = typer.Typer(help="The models refstudio can use: list, describe, check against "
                              "the service.")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.add_typer(models_app, name="models", invoke_without_command=True)
    app.command("compare")(compare)
    app.command("account")(account)


@models_app.callback()
def models_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every model: provider, binding, references, sizes, price, and whether its key is set."""
    if ctx.invoked_subcommand is not None:
        return
    with open_studio() as studio:
        infos = studio.models()
    if as_json:
        print_json([i.to_dict() for i in infos])
        return
    from rich.table import Table

    table = Table("alias", "id", "binding", "refs", "$/image", "key", box=None)
    for i in infos:
        table.add_row(i.alias + (" *" if i.default else ""), i.id, i.binding,
                      f"{i.min_references}-{i.max_references}", f"{i.price:.3f}",
                      "set" if i.key_set else "not set")
    console().print(table)
    console().print("* the default model. Sizes and options: `refstudio models show ALIAS`.")


@models_app.command("show")
def models_show(
    model: Annotated[str, typer.Argument(help="Model id or alias.")],
    as_json: JsonOpt = False,
) -> None:
    """One model: what it takes (references, binding, sizes, options with their values)."""
    with open_studio() as studio:
        info = studio.model(model)
    if as_json:
        print_json(info.to_dict())
        return
    out = console()
    out.print(f"[bold]{info.id}[/bold]  ({info.alias}) {info.name}", highlight=False)
    out.print(f"provider {info.provider}, key {'set' if info.key_set else 'not set'}; "
              f"${info.price:.3f} per image at its defaults", highlight=False)
    how = {"tag": "@names stay in the text; images in order of first mention",
           "order": "the text says 'name (image N)'; images in that order",
           "none": "takes no reference images"}[info.binding]
    out.print(f"references {info.min_references}-{info.max_references}; binding "
              f"{info.binding}: {how}", highlight=False)
    out.print(f"sizes: {info.sizes}", highlight=False)
    out.print("options:")
    for name, schema in info.options.items():
        out.print(f"  {name}: {_values(schema)}", highlight=False, markup=False)
    if info.notes:
        out.print(f"note: {info.notes}", markup=False)


def _values(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        text = " | ".join(str(v) for v in schema["enum"])
    elif "minimum" in schema or "maximum" in schema:
        low, high = schema.get("minimum", ""), schema.get("maximum", "")
        text = f"{schema.get('type', 'number')} {low}..{high}"
    else:
        text = str(schema.get("type", "any"))
    if "default" in schema:
        text += f" (default {schema['default']})"
    return text


@models_app.command("sync")
def models_sync(as_json: JsonOpt = False) -> None:
    """Compare the built-in WaveSpeed models with WaveSpeed's catalog (GET /api/v3/models):
    new, removed and changed fields. Reports only; changes nothing. Exit 0 either way."""
    with open_studio() as studio:
        drift = studio.sync_models()
    if as_json:
        print_json([{**d.__dict__} for d in drift])
        return
    if not drift:
        console().print("the built-in models match WaveSpeed's catalog")
        return
    for d in drift:
        console().print(str(d), markup=False, highlight=False)
    console().print(f"{len(drift)} difference(s); refstudio's behaviour is unchanged "
                    "(a model module update adopts them)")


def compare(
    prompt: Annotated[str, typer.Argument(help="Prompt text with @references.")],
    models: Annotated[str, typer.Option("--models", help="Models to compare, comma-separated "
                                        "(ids or aliases).")],
    n: Annotated[int, typer.Option("-n", help="Variants per model.")] = 1,
    seed: Annotated[int | None, typer.Option(help="First seed (shared by every model that "
                                                  "takes seeds).")] = None,
    provider: Annotated[str | None, typer.Option(help="Provider for every model.")] = None,
    aspect_ratio: Annotated[str | None, typer.Option(help="Aspect ratio for every model.")] = None,
    resolution: Annotated[str | None, typer.Option(help="Resolution class.")] = None,
    max_cost: Annotated[float | None, typer.Option(help="Refuse if the summed estimate is over "
                                                        "this (USD).")] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-o", help="A model option NAME=VALUE for every model that takes it, or "
        "MODEL.NAME=VALUE for one (repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The same prompt on several models in one batch, shown side by side. Costs are summed
    and shown before anything is sent (the budget and --max-cost apply to the sum)."""
    from ..models import catalog
    from ..models.compose import options_per_model, parse_option_assignments
    from ..models.params import check_cost_limit

    check_cost_limit(max_cost, "--max-cost")
    options = parse_option_assignments(option) or None
    names = [m.strip() for m in models.split(",") if m.strip()]
    with open_studio() as studio:
        plans = studio.plan_compare(prompt, names, n=n, seed=seed, provider=provider,
                                    aspect_ratio=aspect_ratio, resolution=resolution,
                                    options=options)
        total = sum(r.cost_estimate * len(reqs) for r, reqs in plans)
        if not as_json:
            for message in dict.fromkeys(w for rendered, _ in plans for w in rendered.warnings):
                warn(message)
            # Which model got which -o option: one that only some models take is easy to miss.
            given = options_per_model([catalog.get(r.model) for r, _ in plans], options)
            for (rendered, reqs), own in zip(plans, given, strict=True):
                with_options = "".join(f" {k}={v}" for k, v in own.items())
                console().print(f"{rendered.model}: {len(reqs)} x ${rendered.cost_estimate:.3f}"
                                f" on {rendered.provider}" + (f" with{with_options}"
                                                              if own else ""),
                                highlight=False, markup=False)
            console().print(f"estimated total ${total:.2f}", highlight=False)
        results = studio.compare(prompt, names, n=n, seed=seed, provider=provider,
                                 aspect_ratio=aspect_ratio, resolution=resolution,
                                 max_cost=max_cost, options=options)
    if as_json:
        print_json([r.to_dict() for r in results])
    else:
        _side_by_side(results)
        console().print("images side by side: run `refstudio gallery`, then open "
                        "gallery/compare.html", highlight=False, markup=False)
    if any(g.status != "completed" for r in results for g in r.generations):
        raise typer.Exit(11)


def _side_by_side(results: list[Any]) -> None:
    from rich.table import Table

    from ..models import catalog

    table = Table(*(catalog.get(r.model).alias for r in results), title="compare")
    table.add_row(*(r.rendered.prompt[:80] for r in results))
    rows = max(len(r.generations) for r in results)
    for i in range(rows):
        cells = []
        for r in results:
            if i >= len(r.generations):
                cells.append("")
                continue
            g = r.generations[i]
            if g.status == "completed" and g.outputs:
                o = g.outputs[0]
                cells.append(f"#{g.id}:{o.index} {o.width}x{o.height}"
                             + (f" seed {g.seed}" if g.seed is not None else ""))
            else:
                cells.append(f"#{g.id} {g.status} {g.error[:60]}")
        table.add_row(*cells)
    table.add_row(*(f"${sum(g.cost_estimate for g in r.generations):.3f}" for r in results))
    console().print(table)


def account(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Ask the price of this "
                                                                   "model.")] = None,
    n: Annotated[int, typer.Option("-n", help="Images to price.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Each configured provider's account. WaveSpeed: balance (GET /api/v3/balance) and, with
    --model, the service's price of n images next to refstudio's estimate. Runway: credits,
    the tier's limits and today's use per model (GET /v1/organization). Free."""
    from ..models import catalog
    from ..providers.config import effective_settings

    settings = effective_settings()
    spec = catalog.get(model) if model is not None else None
    wavespeed = (spec.provider == "wavespeed" if spec is not None
                 else bool(settings.key_for("wavespeed") or not settings.key_for("runway")))
    runway = bool(settings.key_for("runway")) and (spec is None or spec.provider == "runway")
    entries: list[dict[str, Any]] = []
    with open_studio() as studio:
        info = studio.account(model, n) if wavespeed else None
        others = studio.accounts("runway") if runway else []
    if info is not None:
        entries.append(info.to_dict())
        if not as_json:
            for message in info.warnings:
                warn(message)
    entries += others
    if as_json:
        print_json(entries)
        return
    out = console()
    if info is not None:
        out.print(f"WaveSpeed balance: ${info.balance:.2f}", highlight=False)
        if info.model is not None:
            quoted = ("no quote from the service" if info.quoted_unit_price is None else
                      f"quoted ${info.quoted_unit_price:.4f} per image, ${info.quoted_total:.2f} "
                      f"for {info.n}")
            out.print(f"{info.model}: {quoted}; refstudio estimates "
                      f"${info.estimated_unit_price or 0:.4f} per image", highlight=False)
            if info.quoted_total is not None and info.quoted_total > info.balance:
                out.print("[yellow]the balance does not cover this batch[/yellow]")
    for entry in others:
        _print_runway(entry)


def _print_runway(entry: dict[str, Any]) -> None:
    """Runway's organisation: credits, then per model the tier's limits and today's use."""
    out = console()
    out.print(f"Runway credits: {entry['credit_balance']:,}"
              + (f" (tier: at most {entry['max_monthly_credit_spend']:,} a month)"
                 if entry.get("max_monthly_credit_spend") else ""), markup=False)
    out.print(f"  {'model':<20} {'at once':>7} {'today':>6} {'per day':>8} {'left':>6}",
              markup=False)

    def show(value: object) -> str:
        return "-" if value is None else str(value)

    for name, m in entry["models"].items():
        out.print(f"  {name:<20} {show(m['max_concurrent']):>7} {m['used_today']:>6} "
                  f"{show(m['max_daily']):>8} {show(m['remaining_today']):>6}", markup=False)
