"""``refstudio gallery``: write the project's static HTML gallery."""

from pathlib import Path
from typing import Annotated

import typer

from ._common import console, open_studio, print_json


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("gallery")(gallery)


def gallery(
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder to write (default: <project>/gallery)."),
    ] = None,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the gallery in the web browser when done.")
    ] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Write into a --out folder that holds other files.")] = False,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Only generations of this model.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print stable JSON.")] = False,
) -> None:
    """Build a static HTML gallery: the library, every generation, and each lineage.

    Thumbnails are cached by content hash, so a rebuild only makes those of new images.
    """
    from ..gallery import build_gallery

    with open_studio() as studio:
        report = build_gallery(studio, out, overwrite=force, model=model)
    if as_json:
        print_json(report.to_dict())
    else:
        console().print(
            f"gallery: {report.pages} pages, {report.thumbnails_made} thumbnails made, "
            f"{report.thumbnails_reused} reused in {report.seconds:.1f} s"
        )
        console().print(f"open {report.index.as_uri()}", markup=False)
    if open_browser:
        import webbrowser

        webbrowser.open(report.index.as_uri())
