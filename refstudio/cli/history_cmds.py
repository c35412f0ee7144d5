"""Verbs over recorded work: promote, lineage, history, show, retry, resume, reconcile."""

from typing import Annotated, Any

import typer

from ._common import EXIT_USAGE, console, err_console, open_studio, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Print stable JSON.")]


def register(app: typer.Typer) -> None:
    app.command("promote")(promote)
    app.command("lineage")(lineage)
    app.command("history")(history)
    app.command("show")(show)
    app.command("retry")(retry)
    app.command("cancel")(cancel)
    app.command("resume")(resume)
    app.command("reconcile")(reconcile)


def _parse_output(handle: str) -> tuple[int, int]:
    from ..models.params import parse_output_handle

    return parse_output_handle(handle)


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
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Only generations of this model.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Generations with state, prompt, references, seed, time and cost."""
    with open_studio() as studio:
        gens = studio.history(ref=ref, status=status, limit=limit, model=model)
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
    for key in ("prompt", "template_source", "request_id", "error", "note"):
        value = getattr(g, key)
        if value:
            out.print(f"{key}: {value}", markup=False)
    out.print(f"params: {json.dumps(g.params)}   cost estimate: ${g.cost_estimate:.2f}")
    for b in g.bindings:
        out.print(f"reference @{b['name']} {b.get('label') or ''} {b['sha256'][:12]}")
    for o in g.outputs:
        out.print(f"output {o.ref}: {o.location} ({o.width}x{o.height})")


def retry(
    generation_id: int,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Send its prompt to this model instead (a new generation).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a failed, unknown or never-sent generation again, saying first what it costs.
    With --model, send its prompt to another model as a new generation."""
    import sys

    from ._common import fail

    with open_studio() as studio:
        g = studio.generation(generation_id)
        if model is not None:
            from ..models import catalog

            spec = catalog.get(model)
            if spec.id != g.model_id:
                g = studio.retry(generation_id, model=spec.id)
                if as_json:
                    print_json(g.to_dict())
                else:
                    console().print(f"#{g.id} on {spec.id}: {g.status} {g.error}".rstrip(),
                                    highlight=False)
                if g.status != "completed":
                    raise typer.Exit(11)
                return
        if g.status not in ("failed", "unknown", "pending"):
            from ..errors import GenerationError

            raise GenerationError(f"generation #{g.id} is {g.status}; only failed, unknown or "
                                  "never-sent generations can be retried")
        cost = studio.retry_cost(generation_id)
        if not yes:
            question = f"generation #{g.id} is {g.status}: {cost.message}."
            if not sys.stdin.isatty():
                # No one to ask: refuse like a usage error rather than guess an answer.
                fail(f"{question} Not sent: confirmation needed and there is no terminal to "
                     "ask", code=EXIT_USAGE, hint=f"run `refstudio retry {g.id} --yes` to send it")
            err_console().print(question)
            if not typer.confirm("Send it?", err=True):
                fail("not sent", code=EXIT_USAGE, hint=f"`refstudio retry {g.id} --yes` sends it")
        g = studio.retry(generation_id)
    if as_json:
        print_json(g.to_dict())
    else:
        console().print(f"#{g.id} {g.status} {g.error}")
    if g.status != "completed":
        raise typer.Exit(11)


def cancel(
    generation_ids: Annotated[list[int], typer.Argument(help="Generations to cancel.")],
    as_json: JsonOpt = False,
) -> None:
    """Cancel running generations at their provider (Runway); free."""
    with open_studio() as studio:
        gens = studio.cancel(generation_ids)
    if as_json:
        print_json([g.to_dict() for g in gens])
        return
    for g in gens:
        console().print(f"#{g.id} {g.status} {g.error}", markup=False)


def resume(
    no_send: Annotated[
        bool, typer.Option("--no-send", help="Only collect submitted work; send nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Finish interrupted work: collect what was submitted, send what was never sent.

    Never resends a request that may have been accepted: those stay `unknown` unless the
    provider's own records settle them (see `refstudio reconcile`, which this runs too).
    """
    with open_studio() as studio:
        gens = studio.resume(send=not no_send)
        left = studio.history(status="unknown", limit=None)
        waiting = [g for g in studio.history(status="pending", limit=None)
                   if g.id not in {x.id for x in gens}]
    if as_json:
        print_json([g.to_dict() for g in gens])
        return
    if not gens:
        console().print("nothing to resume")
    for g in gens:
        _print_line(g)
    if waiting:
        console().print(f"{len(waiting)} generation(s) were never sent"
                        + (": `refstudio resume` sends them" if no_send else ""))
    shown = {g.id for g in gens}
    older = [g for g in left if g.id not in shown]
    if older:
        console().print(f"{len(older)} earlier generation(s) are still unknown: "
                        "`refstudio reconcile` says why")


def reconcile(as_json: JsonOpt = False) -> None:
    """Settle `unknown` generations from the provider's own records. Sends nothing.

    Adopts a task that is certainly a generation's own (collects its outputs), marks a
    generation the records prove was never accepted as `pending` (`refstudio resume` then
    sends it, paid for the first time), and leaves the rest `unknown`, saying why.
    """
    with open_studio() as studio:
        results = studio.reconcile()
    if as_json:
        print_json([r.to_dict() for r in results])
        return
    if not results:
        console().print("no unknown generations")
    for r in results:
        head = {"adopted": "adopted", "not_accepted": "not accepted",
                "unknown": "still unknown"}.get(r.verdict, r.verdict)
        detail = r.reason + (f" ({r.status}{': ' + r.error if r.error else ''})"
                             if r.verdict == "adopted" else "")
        console().print(f"#{r.generation_id} {head}: {detail}", markup=False)


def _print_line(g: Any) -> None:
    text = g.error or g.note
    if g.note and g.error and g.note not in g.error:
        text = f"{g.error} [{g.note}]"
    console().print(f"#{g.id} {g.status} {text}".rstrip(), markup=False)
