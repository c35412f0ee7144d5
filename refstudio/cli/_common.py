"""What every CLI command shares: the console, the project lookup, errors to exit codes.

Nothing here imports SQLAlchemy, httpx or Pillow at module level: ``refstudio --help`` must
stay fast, so commands import the API inside their bodies.
"""

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from ..app.studio import Studio

EXIT_INTERRUPTED = 130
#: Usage errors (click's own code), and a confirmation that was refused or could not be asked.
EXIT_USAGE = 2

# C0 and C1 control characters, DEL, and the bidirectional overrides that reorder what a
# terminal shows: user text (a name, a path, a prompt) must never move the cursor, recolour the
# screen or hide part of a line. They are shown escaped, like Python's repr does.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_EXCEPT_LINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escaped(match: "re.Match[str]") -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: str, *, keep_lines: bool = False) -> str:
    """``text`` with control characters shown escaped (``\\x1b``, ``\\r``, ``\\u202e``).

    ``keep_lines`` keeps newlines and tabs (for output laid out in lines); an error line never
    keeps them, so it stays one line.
    """
    return (_CONTROL_EXCEPT_LINES if keep_lines else _CONTROL).sub(_escaped, text)


class State:
    """Options given before the command (``refstudio --project DIR ref list``)."""

    project: Path | None = None


state = State()
_console: "Console | None" = None
_err_console: "Console | None" = None


def _safe_console(**options: Any) -> "Console":
    """A rich console that escapes control characters in every string it prints (plain text,
    markup and table cells alike), so no command has to remember to."""
    from rich.console import Console

    class SafeConsole(Console):
        def render_str(self, text: str, **kwargs: Any) -> Any:
            return super().render_str(printable(text, keep_lines=True), **kwargs)

    return SafeConsole(highlight=False, soft_wrap=True, **options)


def console() -> "Console":
    global _console
    if _console is None:
        _console = _safe_console()
    return _console


def err_console() -> "Console":
    global _err_console
    if _err_console is None:
        _err_console = _safe_console(stderr=True)
    return _err_console


def open_studio() -> "Studio":
    """Open the project chosen by --project, $REFSTUDIO_PROJECT or the working directory, and
    say what it has to say (:attr:`Studio.notices`) as warning lines."""
    from ..app.studio import Studio

    studio = Studio.open(state.project)
    for notice in studio.notices:
        warn(notice)
    return studio


def print_json(data: Any) -> None:
    """Stable, machine-readable output: plain JSON on stdout, nothing else."""
    import json  # here, not at the top: --help never needs it (about 2 ms of a start)

    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def warn(message: str) -> None:
    err_console().print(f"[yellow]warning:[/yellow] {_escape(message)}")


def fail(message: str, code: int = 1, hint: str | None = None) -> NoReturn:
    err_console().print(f"[bold red]error:[/bold red] {_escape(message)}")
    if hint:
        err_console().print(f"  {_escape(hint)}")
    raise typer.Exit(code)


def _escape(text: str) -> str:
    """User text for one message line: control characters (newlines too) escaped, and rich
    markup characters made literal."""
    from rich.markup import escape

    return escape(printable(text))


def report_error(exc: BaseException) -> int:
    """Print a refstudio error as one clear line (plus a hint) and return its exit code."""
    from ..errors import RefstudioError

    if isinstance(exc, RefstudioError):
        err_console().print(f"[bold red]error:[/bold red] {_escape(exc.message)}")
        if exc.hint:
            err_console().print(f"  {_escape(exc.hint)}")
        return exc.exit_code
    raise exc
