"""``refstudio render`` and ``refstudio gen``: from a prompt to a request, and to images."""

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._common import console, err_console, open_studio, print_json, warn

if TYPE_CHECKING:
    from ..app.generation import RenderResult

JsonOpt = Annotated[bool, typer.Option("--json", help="Print stable JSON.")]
TemplateOpt = Annotated[
    str | None, typer.Option("--template", "-t", help="Template in templates/ (NAME or NAME.j2).")
]
VarOpt = Annotated[
    list[str] | None, typer.Option("--var", help="Template variable key=value (repeatable).")
]
VarsFileOpt = Annotated[Path | None, typer.Option("--vars", help="TOML or JSON file of variables.")]
ProviderOpt = Annotated[
    str | None, typer.Option(help="Provider: wavespeed, offline (default: wavespeed with a key).")
]
AspectOpt = Annotated[
    str | None, typer.Option(help="Aspect ratio, e.g. 16:9 (`refstudio models` lists each "
                                  "model's).")]
ResolutionOpt = Annotated[str | None, typer.Option(help="720p, 1080p, 2k or 4k, as the model "
                                                        "makes.")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed, in the model's range (variants use S, "
                                                  "S+1, …).")]
ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="Model id or alias, e.g. gen4, nano-banana "
                             "(`refstudio models`; default: default_model or gen4).")]
OptionOpt = Annotated[
    list[str] | None, typer.Option("--option", "-o", help="A model option NAME=VALUE "
                                   "(repeatable; `refstudio models show MODEL`).")]


def register(app: typer.Typer) -> None:
    app.command("render")(render)
    app.command("gen")(gen)


def _variables(var: list[str] | None) -> dict[str, Any]:
    from ..prompts import parse_var_assignments

    return parse_var_assignments(var or [])


def render(
    prompt: Annotated[str | None, typer.Argument(help="Prompt text with @references.")] = None,
    template: TemplateOpt = None,
    var: VarOpt = None,
    vars_file: VarsFileOpt = None,
    provider: ProviderOpt = None,
    aspect_ratio: AspectOpt = None,
    resolution: ResolutionOpt = None,
    seed: SeedOpt = None,
    model: ModelOpt = None,
    option: OptionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show exactly what a prompt becomes for a model: the text it receives, the bound
    references, the request body. Sends nothing."""
    from ..models.compose import parse_option_assignments

    options = parse_option_assignments(option)
    with open_studio() as studio:
        result = studio.render(
            prompt, template=template, variables=_variables(var), vars_file=vars_file,
            provider=provider, aspect_ratio=aspect_ratio, resolution=resolution, seed=seed,
            model=model, options=options or None,
        )
    if as_json:
        print_json(result.to_dict())
        return
    _print_render(result)


def _print_render(result: "RenderResult") -> None:
    from rich.table import Table

    out = console()
    out.print(f"[bold]prompt[/bold]  {result.prompt}")
    if result.references:
        table = Table("reference", "label", "image", "size")
        for ref in result.references:
            table.add_row(f"@{ref.name}", ref.label or "(primary)", Path(ref.path).name[:20],
                          f"{ref.width}x{ref.height}")
        out.print(table)
    else:
        out.print("no references (a scene prompt)")
    out.print(f"[bold]model[/bold]    {result.model}")
    out.print(f"[bold]provider[/bold] {result.provider}   estimated cost "
              f"${result.cost_estimate:.2f} per image")
    out.print("[bold]body[/bold]")
    out.print_json(json.dumps(result.body))
    for message in result.warnings:
        warn(message)


def gen(
    prompt: Annotated[str | None, typer.Argument(help="Prompt text with @references.")] = None,
    template: TemplateOpt = None,
    n: Annotated[
        int, typer.Option("-n", help="Number of variants (distinct seeds), 1 to 1000.")
    ] = 1,
    aspect_ratio: AspectOpt = None,
    resolution: ResolutionOpt = None,
    seed: SeedOpt = None,
    var: VarOpt = None,
    vars_file: VarsFileOpt = None,
    provider: ProviderOpt = None,
    max_cost: Annotated[
        float | None, typer.Option(help="Refuse if the estimate is over this (USD).")
    ] = None,
    promote: Annotated[
        str | None, typer.Option(help="Promote the first output to this reference.")
    ] = None,
    model: ModelOpt = None,
    option: OptionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate images from a prompt or template and store them in the library."""
    from ..models.compose import parse_option_assignments
    from ..models.params import check_batch_size, check_cost_limit
    from ..providers.config import effective_settings

    options = parse_option_assignments(option) or None
    check_cost_limit(max_cost, "--max-cost")
    check_batch_size(n, "-n")
    with open_studio() as studio:
        chosen = effective_settings(provider, project_provider=studio.project.config.provider)
        if chosen.provider_source == "no API key" and not as_json:
            err_console().print(
                "[dim]no WaveSpeed API key set: using the offline provider (free local "
                "previews). Set WAVESPEED_API_KEY or run `refstudio config set-key` to "
                "generate with Gen-4.[/dim]"
            )
        rendered = studio.render(
            prompt, template=template, variables=_variables(var), vars_file=vars_file,
            provider=provider, aspect_ratio=aspect_ratio, resolution=resolution, seed=seed,
            model=model, options=options,
        )
        if not as_json:
            for message in rendered.warnings:
                warn(message)
            size = " ".join(str(rendered.params[k]) for k in ("resolution", "aspect_ratio",
                                                                "size") if k in rendered.params)
            console().print(
                f"{n} x {rendered.model} {size} on {rendered.provider}: estimated "
                f"${rendered.cost_estimate * n:.2f}".replace("  ", " ")
            )
        progress = _Progress(enabled=not as_json)
        try:
            with progress:
                gens = studio.generate(
                    prompt, template=template, variables=_variables(var), vars_file=vars_file,
                    n=n, aspect_ratio=aspect_ratio, resolution=resolution, seed=seed,
                    provider=provider, max_cost=max_cost, promote=promote,
                    on_event=progress.update, model=model, options=options,
                )
        except KeyboardInterrupt:
            err_console().print(
                "interrupted: work already submitted is recorded and still running at the "
                "provider. `refstudio resume` collects it and sends what was never sent "
                "(nothing is paid twice); `refstudio resume --no-send` only collects."
            )
            raise
    if as_json:
        print_json([g.to_dict() for g in gens])
    else:
        _print_generations(gens)
        if promote:
            console().print(f"promoted the first output to @{promote}")
    if any(g.status != "completed" for g in gens):
        raise typer.Exit(11)


def _print_generations(gens: list[Any]) -> None:
    out = console()
    for g in gens:
        if g.status == "completed":
            for o in g.outputs:
                out.print(f"#{g.id}:{o.index}  seed {g.seed}  {o.location}")
        else:
            out.print(f"#{g.id}  [red]{g.status}[/red]  {g.error}")


class _Progress:
    """One live line per generation: its state and elapsed time (for a large batch, the ones
    in flight and a count per state)."""

    #: Rows listed one by one; beyond this only unfinished ones are, up to this many.
    MAX_ROWS = 20
    _DONE = frozenset({"completed", "failed", "unknown"})

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and os.environ.get("REFSTUDIO_NO_PROGRESS") != "1"
        self.rows: dict[int, tuple[str, float, str]] = {}
        self.live: Any = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.live import Live

            # Live redraws from __rich__ at its own pace: an event only updates a dict, so a
            # batch of 1,000 does not rebuild a 1,000-row table on each of its ~5,000 events.
            self.live = Live(self, console=err_console(), refresh_per_second=8, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def update(self, event: Any) -> None:
        started = self.rows.get(event.generation_id, ("", time.monotonic(), ""))[1]
        self.rows[event.generation_id] = (event.state, started, event.detail)

    def __rich__(self) -> Any:
        return self._table()

    def _table(self) -> Any:
        from collections import Counter

        from rich.table import Table

        table = Table("generation", "state", "elapsed", "detail", box=None)
        now = time.monotonic()
        rows = sorted(self.rows.items())
        if len(rows) > self.MAX_ROWS:
            counts = Counter(state for state, _, _ in self.rows.values())
            summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
            table.caption = f"{len(rows)} generations: {summary}"
            rows = [r for r in rows if r[1][0] not in self._DONE][: self.MAX_ROWS]
        for gen_id, (state, started, detail) in rows:
            table.add_row(f"#{gen_id}", state, f"{now - started:5.1f}s", detail[:60])
        return table
