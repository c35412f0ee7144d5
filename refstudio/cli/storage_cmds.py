"""``refstudio storage copy``: move a library's media and its database to other storage."""

import os
from typing import Annotated, Optional

import typer

from ._common import console, err_console, open_studio, print_json

storage_app = typer.Typer(help="Move a library to other storage.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(storage_app, name="storage")


@storage_app.command("copy")
def copy(
    media_url: Annotated[Optional[str], typer.Option(  # noqa: UP045 - typer reads the hint
        "--media-url", help='Target media store: "file:PATH" or "s3://bucket/prefix".')] = None,
    database_url: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--database-url",
        help="Target database: sqlite:///FILE or postgresql://USER@HOST/DB; must be new or "
             "empty.")] = None,
    switch: Annotated[bool, typer.Option(
        "--switch", help="Afterwards point refstudio.toml at the targets.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Copy the library into other storage: every image (hashes verified), then every row.

    Images go first, so the copied rows never name a missing image; the schema and the rows go
    in one transaction, ids kept, into a database that must be new or empty. A copy that fails
    leaves the target database as it was: an empty one stays empty, and a database or SQLite
    file the copy created is removed again (images already copied stay: they are named by
    their hash, and the next copy skips them). Without --switch the library keeps using its
    current storage; running a media copy again copies only what is missing.
    """
    from ..app.storagecopy import copy_library

    with open_studio() as studio:
        report = copy_library(studio, database_url=database_url, media_url=media_url,
                              switch=switch)
    if switch:
        # The environment wins over refstudio.toml: say so, or the switch seems not to happen.
        for name, given in (("REFSTUDIO_DATABASE_URL", database_url),
                            ("REFSTUDIO_MEDIA_URL", media_url)):
            if given is not None and os.environ.get(name):
                err_console().print(f"warning: {name} is set and overrides refstudio.toml; "
                                    "unset it to use the copy", markup=False)
    if as_json:
        print_json(report.to_dict())
        return
    out = console()
    media = report.media
    if media is not None:
        out.print(f"copied {media.copied} of {media.images} image(s) "
                  f"({media.bytes / 1e6:.1f} MB) from {media.source} to {media.target}; "
                  f"{media.images - media.copied} were there already", markup=False)
    if report.database is not None:
        out.print(f"copied {sum(report.rows.values())} row(s) in {len(report.rows)} table(s) "
                  f"to {report.database}", markup=False)
    if report.switched:
        out.print("refstudio.toml now points at the copy", markup=False)
