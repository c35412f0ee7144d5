"""``refstudio ref …``: manage the reference library.

JSON output (``--json``) is stable: ``ref show`` prints one reference object, ``ref list`` a list
of them, each ``{id, name, kind, description, tags, images: [{id, label, is_primary, position,
sha256, path, format, width, height, bytes, source_file, source_output_id, warnings}],
created_at, updated_at}``.
"""

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._common import console, open_studio, print_json, printable, warn

if TYPE_CHECKING:
    from ..library.references import AddedImage, ReferenceInfo

ref_app = typer.Typer(
    help="Manage references: characters, locations, styles.", no_args_is_help=True
)
image_app = typer.Typer(help="Add, remove and choose images of a reference.", no_args_is_help=True)
ref_app.add_typer(image_app, name="image")


def register(app: typer.Typer) -> None:
    app.add_typer(ref_app, name="ref")


KIND_HELP = "character, location, style, object or other"
JsonOpt = Annotated[bool, typer.Option("--json", help="Print stable JSON instead of a table.")]


def _show_added(added: "list[AddedImage]") -> None:
    for item in added:
        for message in item.warnings:
            warn(f"{Path(item.image.source_file or item.image.path).name}: {message}")


def _print_reference(info: "ReferenceInfo") -> None:
    from rich.markup import escape  # user text must not be read as rich markup
    from rich.table import Table

    out = console()
    out.print(f"[bold]@{info.name}[/bold]  ({info.kind})")
    if info.description:
        out.print(f"  {escape(info.description)}")
    if info.tags:
        out.print(f"  tags: {escape(', '.join(info.tags))}")
    table = Table("id", "label", "primary", "size", "format", "from", "sha256")
    for image in info.images:
        origin = (
            f"output #{image.source_output_id}"
            if image.source_output_id
            else Path(image.source_file).name if image.source_file else ""
        )
        table.add_row(
            f"#{image.id}",
            image.label or "",
            "*" if image.is_primary else "",
            f"{image.width}x{image.height}",
            image.format,
            escape(origin),
            image.sha256[:12],
        )
    out.print(table)


@ref_app.command("add")
def add(
    name: Annotated[
        str, typer.Argument(help="Reference name (3-16 chars, letter first; @ optional).")
    ],
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG, WebP).")],
    kind: Annotated[str, typer.Option(help=KIND_HELP)] = "character",
    description: Annotated[str, typer.Option(help="What it is; templates can use it.")] = "",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable).")] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="Label for the images, in order (repeatable)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a reference from image files; the first image becomes its primary."""
    with open_studio() as studio:
        info, added = studio.add_reference(
            name, images, kind=kind, description=description, tags=tag or (), labels=label or ()
        )
    _show_added(added)
    if as_json:
        print_json(info.to_dict())
    else:
        console().print(f"Added @{info.name} ({info.kind}) with {len(info.images)} image(s)")


@ref_app.command("list")
def list_(
    kind: Annotated[str | None, typer.Option(help=f"Only this kind: {KIND_HELP}.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only references with this tag.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List references."""
    with open_studio() as studio:
        refs = studio.references(kind=kind, tag=tag)
    if as_json:
        print_json([r.to_dict() for r in refs])
        return
    if len(refs) > PLAIN_LIST_THRESHOLD:
        _print_plain_list(refs)
        return
    from rich.markup import escape  # user text must not be read as rich markup
    from rich.table import Table

    table = Table("name", "kind", "images", "primary", "tags", "description")
    for ref in refs:
        primary = ref.primary
        table.add_row(
            f"@{ref.name}",
            ref.kind,
            str(len(ref.images)),
            f"{primary.width}x{primary.height}" if primary else "",
            escape(", ".join(ref.tags)),
            escape(ref.description[:60]),
        )
    console().print(table)
    console().print(f"{len(refs)} reference(s)")


PLAIN_LIST_THRESHOLD = 200


def _print_plain_list(refs: "list[ReferenceInfo]") -> None:
    """Aligned plain columns: rich measures every cell, which takes seconds for 10k rows."""
    rows = [
        (
            f"@{r.name}",
            r.kind,
            str(len(r.images)),
            f"{r.primary.width}x{r.primary.height}" if r.primary else "",
            ", ".join(r.tags),
            r.description[:60],
        )
        for r in refs
    ]
    header = ("name", "kind", "images", "primary", "tags", "description")
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(5)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)) + "  description"]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[5]
        for row in rows
    ]
    lines.append(f"{len(refs)} reference(s)")
    sys.stdout.write(printable("\n".join(lines), keep_lines=True) + "\n")


@ref_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Reference name.")], as_json: JsonOpt = False
) -> None:
    """Show one reference and its images."""
    with open_studio() as studio:
        info = studio.reference(name)
    if as_json:
        print_json(info.to_dict())
    else:
        _print_reference(info)


@ref_app.command("rename")
def rename(old: str, new: str, as_json: JsonOpt = False) -> None:
    """Rename a reference."""
    with open_studio() as studio:
        info = studio.rename_reference(old, new)
    if as_json:
        print_json(info.to_dict())
    else:
        console().print(f"Renamed to @{info.name}")


@ref_app.command("rm")
def remove(name: str, as_json: JsonOpt = False) -> None:
    """Delete a reference (its stored images stay in media/ for lineage)."""
    with open_studio() as studio:
        info = studio.remove_reference(name)
    if as_json:
        print_json(info.to_dict())
    else:
        console().print(f"Removed @{info.name}")


@ref_app.command("edit")
def edit(
    name: str,
    kind: Annotated[str | None, typer.Option(help=KIND_HELP)] = None,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a reference's kind or description."""
    with open_studio() as studio:
        info = studio.update_reference(name, kind=kind, description=description)
    if as_json:
        print_json(info.to_dict())
    else:
        _print_reference(info)


@ref_app.command(
    "tag", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True}
)
def tag(
    name: str,
    changes: Annotated[list[str], typer.Argument(help="+tag to add, -tag to remove.")],
    as_json: JsonOpt = False,
) -> None:
    """Add (+t) and remove (-t) tags: refstudio ref tag mara +hero -draft."""
    # Options after the tag changes arrive here (interspersed args are off so -draft is not an
    # option): honour --json instead of reading it as "remove the tag -json".
    if "--json" in changes:
        as_json = True
        changes = [c for c in changes if c != "--json"]
    add = [c[1:] for c in changes if c.startswith("+")]
    remove = [c[1:] for c in changes if c.startswith("-")]
    plain = [c for c in changes if not c.startswith(("+", "-"))]
    if plain:
        from ..errors import InputError

        raise InputError(f"write tags as +{plain[0]} (add) or -{plain[0]} (remove)")
    with open_studio() as studio:
        info = studio.tag_reference(name, add, remove)
    if as_json:
        print_json(info.to_dict())
    else:
        from rich.markup import escape

        console().print(f"@{info.name} tags: {escape(', '.join(info.tags)) or '(none)'}")


@ref_app.command("check")
def check(name: str, as_json: JsonOpt = False) -> None:
    """Quality hints for a reference's images: size, blur, harsh lighting, aspect ratio."""
    with open_studio() as studio:
        results = studio.check_reference(name)
    if as_json:
        print_json(
            [{"image_id": i.id, "label": i.label, "warnings": w} for i, w in results]
        )
        return
    from rich.markup import escape

    clean = True
    for image, warnings in results:
        title = f"#{image.id}" + (f" ({image.label})" if image.label else "")
        for message in warnings:
            clean = False
            console().print(f"[yellow]{title}[/yellow]: {escape(message)}")
    if clean:
        console().print(f"@{name.lstrip('@')}: no quality warnings")


@image_app.command("add")
def image_add(
    name: str,
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    label: Annotated[list[str] | None, typer.Option("--label", help="Labels, in order.")] = None,
    primary: Annotated[bool, typer.Option(help="Make the first new image the primary.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add images to a reference."""
    with open_studio() as studio:
        info, added = studio.add_images(name, images, labels=label or (), make_primary=primary)
    _show_added(added)
    if as_json:
        print_json(info.to_dict())
    else:
        _print_reference(info)


@image_app.command("rm")
def image_rm(
    name: str,
    image: Annotated[str, typer.Argument(help="Label or #id of the image.")],
    as_json: JsonOpt = False,
) -> None:
    """Remove an image from a reference."""
    with open_studio() as studio:
        info = studio.remove_image(name, image)
    if as_json:
        print_json(info.to_dict())
    else:
        _print_reference(info)


@image_app.command("primary")
def image_primary(
    name: str,
    image: Annotated[str, typer.Argument(help="Label or #id of the image.")],
    as_json: JsonOpt = False,
) -> None:
    """Choose the image a bare @name binds."""
    with open_studio() as studio:
        info = studio.set_primary(name, image)
    if as_json:
        print_json(info.to_dict())
    else:
        _print_reference(info)
