"""Verbs over recorded work: promote, lineage, history, show, retry, resume."""

from typing import Annotated, Any

import typer

from ._common import console, err_console, open_studio, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Print stable JSON.")]


def register(app: typer.Typer) -> None:
    app.command("promote")(promote)
    app.command("lineage")(lineage)
    app.command("history")(history)
    app.command("show")(show)
    app.command("retry")(retry)
    app.command("resume")(resume)


def _parse_output(handle: str) -> tuple[int, int]:
    from ..errors import InputError

    gen_text, _, index_text = handle.partition(":")
    try:
        return int(gen_text.lstrip("#")), int(index_text) if index_text else 0
    except ValueError:
        raise InputError(f"{handle!r} is not GEN_ID or GEN_ID:INDEX (e.g. 12 or 12:1)") from None


def promote(
    output: Annotated[str, typer.Argument(help="GEN_ID or GEN_ID:INDEX of the output.")],
    name: Annotated[str, typer.Argument(help="Reference to create, or to add a version to.")],
    kind: Annotated[str | None, typer.Option(help="Kind, for a new reference.")] = None,
    label: Annotated[str | None, typer.Option(help="Label for the new image.")] = None,
    description: Annotated[str | None, typer.Option(help="Description.")] = None,
    keep_primary: Annotated[
        bool, typer.Option(help="Add as a labelled view; keep the current primary image.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Make a generated output a reference, or the new primary image of an existing one."""
    gen_id, index = _parse_output(output)
    with open_studio() as studio:
        info = studio.promote(gen_id, name, index=index, kind=kind, label=label,
                              description=description, keep_primary=keep_primary)
    if as_json:
        print_json(info.to_dict())
    else:
        console().print(f"@{info.name} now has {len(info.images)} image(s); output "
                        f"{gen_id}:{index} is {'a view' if keep_primary else 'its primary'}")


def lineage(name: str, as_json: JsonOpt = False) -> None:
    """Where each image of a reference came from, down to the imported files."""
    with open_studio() as studio:
        tree = studio.lineage(name)
    if as_json:
        print_json(tree)
        return
    from rich.tree import Tree

    root = Tree(f"[bold]@{tree['name']}[/bold] ({tree['kind']})")
    for image in tree["images"]:
        title = f"image #{image['image_id']}" + (" primary" if image["is_primary"] else "")
        if image.get("label"):
            title += f" [{image['label']}]"
        _add_origin(root.add(title), image)
    console().print(root)


def _add_origin(node: Any, origin: dict[str, Any]) -> None:
    from rich.markup import escape

    if origin["origin"] == "file":
        node.add(f"file {escape(str(origin.get('source_file')))}  ({origin['sha256'][:12]})")
        return
    if origin["origin"] != "generation":
        node.add("origin unknown")
        return
    gen = node.add(f"generation #{origin['generation_id']}:{origin['output_index']}  "
                   f"seed {origin['seed']}  \"{escape(origin['prompt'])}\"")
    inputs = origin.get("inputs")
    if isinstance(inputs, list):
        for child in inputs:
            _add_origin(gen.add(f"@{child['name']}"), child)


def history(
    ref: Annotated[str | None, typer.Option(help="Only generations using this reference.")] = None,
    status: Annotated[str | None, typer.Option(help="Only this state.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Generations with state, prompt, references, seed, time and cost."""
    with open_studio() as studio:
        gens = studio.history(ref=ref, status=status, limit=limit)
    if as_json:
        print_json([g.to_dict() for g in gens])
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table("id", "state", "prompt", "refs", "seed", "created", "cost")
    for g in gens:
        table.add_row(str(g.id), g.status, escape(g.prompt[:50]),
                      " ".join("@" + b["name"] for b in g.bindings), str(g.seed or ""),
                      g.created_at.strftime("%Y-%m-%d %H:%M"), f"${g.cost_estimate:.2f}")
    console().print(table)
    total = sum(g.cost_estimate for g in gens if g.status != "failed")
    images = sum(len(g.outputs) for g in gens)
    console().print(f"{len(gens)} generation(s), {images} image(s), estimated ${total:.2f}")


def show(generation_id: int, as_json: JsonOpt = False) -> None:
    """Everything recorded about one generation."""
    with open_studio() as studio:
        g = studio.generation(generation_id)
    if as_json:
        print_json(g.to_dict())
        return
    import json

    out = console()
    out.print(f"[bold]generation #{g.id}[/bold]  {g.status}  {g.provider} {g.model}")
    for key in ("prompt", "template_source", "request_id", "error"):
        value = getattr(g, key)
        if value:
            out.print(f"{key}: {value}", markup=False)
    out.print(f"params: {json.dumps(g.params)}   cost estimate: ${g.cost_estimate:.2f}")
    for b in g.bindings:
        out.print(f"reference @{b['name']} {b.get('label') or ''} {b['sha256'][:12]}")
    for o in g.outputs:
        out.print(f"output {o.ref}: {o.path} ({o.width}x{o.height})")


def retry(
    generation_id: int,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Send a failed or unknown generation again. It may cost again."""
    with open_studio() as studio:
        g = studio.generation(generation_id)
        if g.status not in ("failed", "unknown"):
            from ..errors import GenerationError

            raise GenerationError(f"generation #{g.id} is {g.status}; only failed or unknown "
                                  "generations can be retried")
        if not yes:
            err_console().print(
                f"generation #{g.id} is {g.status}. Sending it again may cost "
                f"${g.cost_estimate:.2f} again"
                + (" (the first request may already have been billed)." if g.status == "unknown"
                   else ".")
            )
            if not typer.confirm("Send it again?", err=True):
                raise typer.Exit(1)
        g = studio.retry(generation_id)
    if as_json:
        print_json(g.to_dict())
    else:
        console().print(f"#{g.id} {g.status} {g.error}")
    if g.status != "completed":
        raise typer.Exit(11)


def resume(as_json: JsonOpt = False) -> None:
    """Collect work a stopped process left at the provider. Never resubmits."""
    with open_studio() as studio:
        gens = studio.resume()
    if as_json:
        print_json([g.to_dict() for g in gens])
        return
    if not gens:
        console().print("nothing to resume")
    for g in gens:
        console().print(f"#{g.id} {g.status} {g.error}")
