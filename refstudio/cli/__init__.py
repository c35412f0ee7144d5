"""The ``refstudio`` command: a thin shell over :class:`refstudio.Studio`.

Exit codes: 0 success, 2 usage error (or a confirmation refused, or needed without a terminal:
``--yes``), and the ``exit_code`` of each
:mod:`refstudio.errors` class for failures (3 project, 4 input, 5 image, 6 not found,
7 prompt, 8 budget, 10 provider, 11 generation, 12 workflow, 13 storage), 130 interrupted.
"""

import sys
from pathlib import Path
from typing import Annotated

import typer

from . import _common
from .gallery_cmds import register as _register_gallery
from .gen_cmds import register as _register_gen
from .history_cmds import register as _register_history
from .models_cmds import register as _register_models
from .pack_cmds import register as _register_packs
from .project_cmds import register as _register_project
from .ref import ref_app
from .serve_cmds import register as _register_serve
from .storage_cmds import storage_app
from .tools_cmds import register as _register_tools
from .workflow_cmds import register as _register_workflow

app = typer.Typer(
    name="refstudio",
    help="Consistent characters and locations with Runway Gen-4 Image.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)


@app.callback()
def _root(
    project: Annotated[
        Path | None,
        typer.Option(
            "--project",
            "-p",
            help="Project folder (default: $REFSTUDIO_PROJECT, then the nearest refstudio.toml "
            "upward from here).",
        ),
    ] = None,
) -> None:
    _common.state.project = project


_register_project(app)
app.add_typer(ref_app, name="ref")
_register_gen(app)
_register_history(app)
_register_tools(app)
_register_workflow(app)
_register_gallery(app)
_register_packs(app)
_register_models(app)
app.add_typer(storage_app, name="storage")
_register_serve(app)


def main() -> None:
    """Console-script entry point: run the app, turning refstudio errors into exit codes."""
    try:
        app()
    except KeyboardInterrupt:
        _common.err_console().print("interrupted")
        sys.exit(_common.EXIT_INTERRUPTED)
    except Exception as exc:  # only refstudio errors are caught; report_error re-raises others
        sys.exit(_common.report_error(exc))
