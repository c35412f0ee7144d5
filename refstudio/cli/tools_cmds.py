"""Tooling verbs: the local WaveSpeed simulator, and user configuration."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._common import console, print_json

if TYPE_CHECKING:
    from ..app.studio import Studio


def open_studio_at(path: Path) -> "Studio":
    from ..app.studio import Studio

    return Studio.open(path)

config_app = typer.Typer(help="Show and change user-level settings (API key, endpoint).")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
    app.command("simulator")(simulator)
    app.add_typer(config_app, name="config", invoke_without_command=True)


def simulator(
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8765,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    latency: Annotated[float, typer.Option(help="Seconds a task takes.")] = 3.0,
    jitter: Annotated[float, typer.Option(help="± seconds of uniform jitter.")] = 1.0,
    fail_rate: Annotated[float, typer.Option(help="Share of tasks that fail.")] = 0.0,
    rate_429: Annotated[float, typer.Option(help="Share of requests answered 429.")] = 0.0,
    rate_5xx: Annotated[float, typer.Option(help="Share of requests answered 5xx.")] = 0.0,
    drop_rate: Annotated[float, typer.Option(help="Share of connections dropped.")] = 0.0,
    rate_lost: Annotated[
        float, typer.Option(help="Share of submits answered 502/504 with no task created.")
    ] = 0.0,
    key: Annotated[str | None, typer.Option(help="Only accept this Bearer key.")] = None,
    account_concurrency: Annotated[
        int | None, typer.Option(min=1, help="Tasks run at once; later ones queue (default: any).")
    ] = None,
    balance: Annotated[float, typer.Option(help="US dollars on the simulated account.")] = 10.0,
    catalog_drift: Annotated[
        bool, typer.Option(help="Publish a catalog drifted from refstudio's (for models sync).")
    ] = False,
    runway_concurrency: Annotated[
        int | None, typer.Option(help="Runway: tasks per model at once; later ones THROTTLED.")
    ] = None,
    runway_daily_limit: Annotated[
        int | None, typer.Option(help="Runway: generations per model per day before 429.")
    ] = None,
    runway_credits: Annotated[int, typer.Option(help="Runway: the organisation's credits.")
                              ] = 100_000,
) -> None:
    """Run a local HTTP server that speaks the WaveSpeed and Runway protocols (for tests and
    demos)."""
    import re

    from ..errors import InputError, ParameterError
    from ..simulator import SimulatorConfig, run_forever

    flags = {"port", "latency", "jitter", "fail_rate", "rate_429", "rate_5xx", "drop_rate",
             "rate_lost", "key", "account_concurrency", "balance", "runway_concurrency",
             "runway_daily_limit", "runway_credits"}
    try:
        config = SimulatorConfig(host=host, port=port, latency=latency, jitter=jitter,
                                 fail_rate=fail_rate, rate_429=rate_429, rate_5xx=rate_5xx,
                                 drop_rate=drop_rate, rate_lost=rate_lost, key=key,
                                 account_concurrency=account_concurrency, balance=balance,
                                 catalog_drift=catalog_drift,
                                 runway_concurrency=runway_concurrency,
                                 runway_daily_limit=runway_daily_limit,
                                 runway_credits=runway_credits)
    except ValueError as exc:
        # The config names its fields; the user typed flags: say --fail-rate, not fail_rate.
        message = re.sub(r"^\w+", lambda m: "--" + m.group().replace("_", "-")
                         if m.group() in flags else m.group(), str(exc))
        raise ParameterError(message) from None
    try:
        run_forever(config)
    except OSError as exc:  # the port is taken, the address is not this machine's, ...
        import errno

        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                         hint="--port 0 picks a free port" if exc.errno == errno.EADDRINUSE
                         else None) from None


@config_app.callback()
def config_show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the effective settings (the API key masked)."""
    if ctx.invoked_subcommand is not None:
        return
    from ..providers import config

    # The same function `gen`, `render` and `run` choose their provider with, so this shows
    # what they will do here (a project's [defaults].provider included, when in one).
    settings = config.effective_settings(project_provider=_project_provider()).to_dict()
    if as_json:
        print_json(settings)
        return
    for name, value in settings.items():
        console().print(f"{name}: {value}", markup=False)


def _project_provider() -> str | None:
    """The [defaults].provider of the project commands would run in here, if any."""
    from ..app.project import open_project
    from ..errors import ProjectError
    from ._common import state

    try:
        return open_project(state.project).config.provider
    except ProjectError:
        return None  # no project here (or a broken one): user-level settings only


@config_app.command("set-key")
def set_key(
    provider: Annotated[str, typer.Option(help="Whose key: wavespeed or runway.")] = "wavespeed",
) -> None:
    """Store a provider's API key in the user config file (asked for, never echoed).

    Without a terminal the key is read from the first line of standard input
    (``refstudio config set-key < keyfile``)."""
    import sys

    from ..providers import config
    from ._common import EXIT_USAGE, fail

    if provider not in config.KEY_SETTINGS:
        fail(f"no API key setting for provider {provider!r}", code=EXIT_USAGE,
             hint=f"one of: {', '.join(sorted(config.KEY_SETTINGS))}")
    env = config.KEY_SETTINGS[provider][1]
    if sys.stdin.isatty():
        key = typer.prompt(f"{'Runway' if provider == 'runway' else 'WaveSpeed'} API key",
                           hide_input=True)
    else:
        key = sys.stdin.readline(4096).strip()
        if not key:
            # No one to ask and nothing piped in: refuse like `retry` does, rather than exit 1
            # ("Aborted!") as click's prompt does at the end of input.
            fail("no key saved: `config set-key` asks for the key, and there is no terminal "
                 "to ask and no key on standard input", code=EXIT_USAGE,
                 hint="run it in a terminal, pipe the key in (`refstudio config set-key < "
                 f"keyfile`), or set {env} in the environment instead")
    path = config.save_api_key(key, provider)
    console().print(f"saved to {path} ({config.masked(key)})", markup=False)


def demo(
    directory: Annotated[
        Path | None, typer.Argument(help="New folder for the demo project.")
    ] = None,
) -> None:
    """Run the whole loop offline: references, a composed scene, promote, refine."""
    from ..app.demo import run_demo
    from ..errors import ProjectExistsError

    target = directory or _free_folder(Path("refstudio-demo"))
    if (target / "refstudio.toml").exists():
        raise ProjectExistsError(f"{target} is already a project; pick a new folder")
    result = run_demo(target.resolve(), say=lambda line: console().print(line, markup=False))
    with open_studio_at(result.project) as studio:
        console().print("\noutputs:", markup=False)
        for step in result.report.steps:
            for gen in studio.queries.many(step.generation_ids):
                for output in gen.outputs:
                    console().print(f"  {step.id}: {output.location}", markup=False)
    console().print(
        f"\nnext: cd {target} && refstudio ref list && refstudio lineage mara_hearth "
        "&& refstudio history", markup=False,
    )


def _free_folder(base: Path) -> Path:
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = Path(f"{base}-{n}")
    return candidate
