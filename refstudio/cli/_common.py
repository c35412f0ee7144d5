"""What every CLI command shares: the console, the project lookup, errors to exit codes.

Nothing here imports SQLAlchemy, httpx or Pillow at module level: ``refstudio --help`` must
stay fast, so commands import the API inside their bodies.
"""

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from ..studio import Studio

EXIT_INTERRUPTED = 130
#: Usage errors (click's own code), and a confirmation that was refused or could not be asked.
EXIT_USAGE = 2


class State:
    """Options given before the command (``refstudio --project DIR ref list``)."""

    project: Path | None = None


state = State()
_console: "Console | None" = None
_err_console: "Console | None" = None


def console() -> "Console":
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(highlight=False, soft_wrap=True)
    return _console


def err_console() -> "Console":
    global _err_console
    if _err_console is None:
        from rich.console import Console

        _err_console = Console(stderr=True, highlight=False, soft_wrap=True)
    return _err_console


def open_studio() -> "Studio":
    """Open the project chosen by --project, $REFSTUDIO_PROJECT or the working directory."""
    from ..studio import Studio

    return Studio.open(state.project)


def print_json(data: Any) -> None:
    """Stable, machine-readable output: plain JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def warn(message: str) -> None:
    err_console().print(f"[yellow]warning:[/yellow] {_escape(message)}")


def fail(message: str, code: int = 1, hint: str | None = None) -> NoReturn:
    err_console().print(f"[bold red]error:[/bold red] {_escape(message)}")
    if hint:
        err_console().print(f"  {_escape(hint)}")
    raise typer.Exit(code)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def report_error(exc: BaseException) -> int:
    """Print a refstudio error as one clear line (plus a hint) and return its exit code."""
    from ..errors import RefstudioError

    if isinstance(exc, RefstudioError):
        err_console().print(f"[bold red]error:[/bold red] {_escape(exc.message)}")
        if exc.hint:
            err_console().print(f"  {_escape(exc.hint)}")
        return exc.exit_code
    raise exc
