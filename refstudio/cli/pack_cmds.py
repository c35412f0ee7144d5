"""Sharing verbs: reference packs (export/import) and images that carry their provenance."""

from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import console, open_studio, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Print stable JSON.")]
ForceOpt = Annotated[bool, typer.Option(
    "--force", help="Replace an existing file (never one of the project's own).")]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("export")(export)
    app.command("import")(import_pack)
    app.command("export-image")(export_image)
    app.command("inspect")(inspect)


def export(
    names: Annotated[list[str], typer.Argument(help="References to put in the pack.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The zip file to write.")],
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write references, their images and their lineage to a zip another project can import."""
    with open_studio() as studio:
        result = studio.export_pack(names, out, overwrite=force)
    if as_json:
        print_json(result.to_dict())
        return
    extra = (f", plus {', '.join('@' + n for n in result.dependencies)} for lineage"
             if result.dependencies else "")
    console().print(
        f"wrote {result.path}: {', '.join('@' + n for n in result.references)}{extra}; "
        f"{result.generations} generation(s), {result.media} image(s), "
        f"{result.bytes / 1e6:.1f} MB"
    )


def _parse_renames(pairs: list[str]) -> dict[str, str]:
    from ..errors import InputError

    renames: dict[str, str] = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise InputError(f"--rename {pair!r}: write it as OLD=NEW (e.g. mara=mara_b)")
        renames[old.strip().lstrip("@")] = new.strip().lstrip("@")
    return renames


def import_pack(
    pack: Annotated[Path, typer.Argument(help="A pack written by `refstudio export`.")],
    rename: Annotated[
        list[str] | None,
        typer.Option("--rename", help="Import reference OLD as NEW (repeatable): OLD=NEW."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a pack's references, generations and images; never overwrites an existing name."""
    renames = _parse_renames(rename or [])
    with open_studio() as studio:
        result = studio.import_pack(pack, rename=renames)
    if as_json:
        print_json(result.to_dict())
        return
    names = ", ".join("@" + n for n in result.references)
    renamed = "".join(f" (@{old} as @{new})" for old, new in result.renamed.items())
    console().print(
        f"imported {names}{renamed}: {result.images} image(s), {result.generations} "
        f"generation(s); {result.media_added} new media file(s), {result.media_reused} "
        "already here"
    )


def export_image(
    output: Annotated[str, typer.Argument(help="GEN_ID or GEN_ID:INDEX of the output.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The PNG file to write.")],
    force: ForceOpt = False,
) -> None:
    """Write an output as a PNG carrying its prompt, references, seed and settings."""
    from .history_cmds import _parse_output

    gen_id, index = _parse_output(output)
    with open_studio() as studio:
        path = studio.export_image(gen_id, index, out, overwrite=force)
    console().print(f"wrote {path} (output {gen_id}:{index}, with provenance)")


def inspect(
    file: Annotated[Path, typer.Argument(help="A PNG written by `refstudio export-image`.")],
    as_json: JsonOpt = False,
) -> None:
    """Show the provenance an exported PNG carries."""
    from ..library.provenance import read_provenance

    record = read_provenance(file)
    if as_json:
        print_json(record)
        return
    _print_record(record)


def _print_record(record: dict[str, Any]) -> None:
    from rich.markup import escape

    out = console()
    gen = record.get("generation_id")
    index = record.get("output_index")
    out.print(f"[bold]generation[/bold] #{gen}" + (f" output {index}" if index is not None
                                                     else ""))
    out.print(f"[bold]prompt[/bold]     {escape(str(record.get('prompt', '')))}")
    refs = record.get("references") or []
    if refs:
        shown = ", ".join(
            f"@{escape(str(r.get('name')))} ({str(r.get('sha256'))[:12]})"
            for r in refs if isinstance(r, dict)
        )
        out.print(f"[bold]references[/bold] {shown}")
    out.print(f"[bold]seed[/bold]       {record.get('seed')}")
    params = record.get("params") or {}
    if isinstance(params, dict):
        out.print("[bold]params[/bold]     "
                  + escape(", ".join(f"{k}={v}" for k, v in params.items())))
    out.print(f"[bold]provider[/bold]   {escape(str(record.get('provider')))} "
              f"({escape(str(record.get('model')))})")
    if record.get("original_sha256"):
        out.print(f"[bold]original[/bold]   {record['original_sha256']}")
