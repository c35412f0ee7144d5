"""``refstudio storage copy``: move a library's media (and, beside it, its database)."""

from typing import Annotated

import typer

from ._common import console, open_studio, print_json

storage_app = typer.Typer(help="Move a library to other storage.", no_args_is_help=True)


@storage_app.command("copy")
def copy(
    media_url: Annotated[str, typer.Option(
        "--media-url", help='Target media store: "file:PATH" or "s3://bucket/prefix".')],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Copy every image of the library into another media store, hashes verified.

    The library keeps using its current store: point media_url (refstudio.toml) or
    REFSTUDIO_MEDIA_URL at the target when the copy is done. Running it again copies only
    what is missing.
    """
    from ..app.storagecopy import copy_media

    with open_studio() as studio:
        report = copy_media(studio, media_url)
    if as_json:
        print_json(report.to_dict())
        return
    console().print(f"copied {report.copied} of {report.images} image(s) "
                    f"({report.bytes / 1e6:.1f} MB) from {report.source} to {report.target}; "
                    f"{report.images - report.copied} were there already", markup=False)
