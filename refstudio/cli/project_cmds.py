"""Project-level verbs: init."""

from pathlib import Path
from typing import Annotated

import typer

from ._common import console, print_json


def register(app: typer.Typer) -> None:
    app.command("init")(init)


def init(
    directory: Annotated[Path, typer.Argument(help="Folder to make the project in.")] = Path("."),
    name: Annotated[str | None, typer.Option(help="Project name (default: folder name).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a project: refstudio.toml, library.db, media/, templates/, workflows/."""
    from ..studio import Studio

    with Studio.init(directory, name=name) as studio:
        root = studio.root
    if as_json:
        print_json({"project": str(root)})
        return
    console().print(f"Created project [bold]{root}[/bold]")
    console().print("Next: add a reference with  refstudio ref add NAME IMAGE --kind character")
