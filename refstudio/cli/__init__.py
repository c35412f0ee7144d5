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
from ._lazy import LazyGroup, Listed

#: Every root command in the order ``--help`` lists it (typer's order: the commands, then the
#: groups, each in the order the modules were registered), with the module that registers it and
#: the first paragraph of its help. ``refstudio --help`` reads only this; a command's module is
#: imported when the command runs. tests/test_cli_lazy.py fails if it drifts from the modules.
COMMANDS: dict[str, Listed] = {
    "init": Listed("project_cmds", "Create a project: refstudio.toml, library.db, media/, "
                   "templates/, workflows/."),
    "doctor": Listed("project_cmds", "Check the library and media/ agree: database, schema, "
                     "files and their hashes, orphans."),
    "render": Listed("gen_cmds", "Show exactly what a prompt becomes for a model: the text it "
                     "receives, the bound references, the request body. Sends nothing."),
    "gen": Listed("gen_cmds", "Generate images from a prompt or template and store them in the "
                  "library."),
    "promote": Listed("history_cmds", "Make a generated output a reference, or the new primary "
                      "image of an existing one."),
    "lineage": Listed("history_cmds", "Where each image of a reference came from, down to the "
                      "imported files."),
    "history": Listed("history_cmds", "Generations with state, prompt, references, seed, time, "
                      "cost and author."),
    "show": Listed("history_cmds", "Everything recorded about one generation."),
    "retry": Listed("history_cmds", "Send a failed, unknown or never-sent generation again, "
                    "saying first what it costs. With --model, send its prompt to another model "
                    "as a new generation."),
    "cancel": Listed("history_cmds", "Cancel running generations at their provider (Runway); "
                     "free."),
    "resume": Listed("history_cmds", "Finish interrupted work: collect what was submitted, send "
                     "what was never sent."),
    "reconcile": Listed("history_cmds", "Settle `unknown` generations from the provider's own "
                        "records. Sends nothing."),
    "demo": Listed("tools_cmds", "Run the whole loop offline: references, a composed scene, "
                   "promote, refine."),
    "simulator": Listed("tools_cmds", "Run a local HTTP server that speaks the WaveSpeed and "
                        "Runway protocols (for tests and demos)."),
    "run": Listed("workflow_cmds", "Run a workflow: steps ordered by the references they "
                  "promote and mention."),
    "gallery": Listed("gallery_cmds", "Build a static HTML gallery: the library, every "
                      "generation, and each lineage."),
    "export": Listed("pack_cmds", "Write references, their images and their lineage to a zip "
                     "another project can import."),
    "import": Listed("pack_cmds", "Add a pack's references, generations and images; never "
                     "overwrites an existing name."),
    "export-image": Listed("pack_cmds", "Write an output as a PNG carrying its prompt, "
                           "references, seed and settings."),
    "inspect": Listed("pack_cmds", "Show the provenance an exported PNG carries."),
    "compare": Listed("models_cmds", "The same prompt on several models in one batch, shown side "
                      "by side. Costs are summed and shown before anything is sent (the budget "
                      "and --max-cost apply to the sum)."),
    "account": Listed("models_cmds", "Each configured provider's account. WaveSpeed: balance "
                      "(GET /api/v3/balance) and, with --model, the service's price of n images "
                      "next to refstudio's estimate. Runway: credits, the tier's limits and "
                      "today's use per model (GET /v1/organization). Free."),
    "serve": Listed("serve_cmds", "Serve the web studio: library, compose, generations, "
                    "workflows, account."),
    "ref": Listed("ref", "Manage references: characters, locations, styles."),
    "config": Listed("tools_cmds", "Show and change user-level settings (API key, endpoint)."),
    "models": Listed("models_cmds", "The models refstudio can use: list, describe, check "
                     "against the service."),
    "storage": Listed("storage_cmds", "Move a library to other storage."),
}


class _RootGroup(LazyGroup):
    table = COMMANDS


app = typer.Typer(
    name="refstudio",
    help="Consistent characters and locations with Runway Gen-4 Image.",
    cls=_RootGroup,
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


def main() -> None:
    """Console-script entry point: run the app, turning refstudio errors into exit codes."""
    try:
        app()
    except KeyboardInterrupt:
        _common.err_console().print("interrupted")
        sys.exit(_common.EXIT_INTERRUPTED)
    except Exception as exc:  # only refstudio errors are caught; report_error re-raises others
        sys.exit(_common.report_error(exc))
