"""``refstudio serve``: the web studio on this machine (see :mod:`refstudio.web`)."""

import contextlib
from typing import Annotated

import typer

from ._common import console, err_console, warn


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("serve")(serve)


def serve(
    host: Annotated[str, typer.Option(
        help="Address to listen on. Anything but a loopback address (127.0.0.1, ::1, "
             "localhost) requires the token printed at start.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8000,
    open_browser: Annotated[bool, typer.Option(
        "--open", help="Open the studio in the web browser once it listens.")] = False,
) -> None:
    """Serve the web studio: library, compose, generations, workflows, account.

    Work started in the browser runs in this process and keeps running when the browser
    closes; the CLI sees it at once. Stop with Ctrl-C (submitted work stays resumable).
    """
    try:
        from ..web import run_server
    except ImportError as exc:  # the `web` extra is not installed
        from ..errors import InputError

        raise InputError(f"the web studio needs its extra packages ({exc.name} is missing)",
                         hint="pip install 'refstudio[web]'") from None
    from ..app.studio import AsyncStudio
    from ..web.security import is_loopback
    from ._common import state

    studio = AsyncStudio.open(state.project)
    for notice in studio.notices:
        warn(notice)
    if not is_loopback(host):
        warn(f"listening on {host}: anyone who can reach it and has the token can spend "
             "from your provider account")

    def ready(url: str) -> None:
        console().print(f"refstudio studio for {studio.root}", markup=False)
        console().print(f"open {url}", markup=False)
        err_console().print("Ctrl-C stops the server; work in flight stays resumable "
                            "(`refstudio resume`)", markup=False)
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    # uvicorn re-raises the Ctrl-C it shut down for; for a server that is the normal stop.
    with contextlib.suppress(KeyboardInterrupt):
        run_server(studio, host=host, port=port, on_ready=ready)
    err_console().print("stopped", markup=False)
