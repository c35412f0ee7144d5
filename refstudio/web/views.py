"""What templates show: API results turned into plain dicts with this server's image URLs.

Images are addressed by content hash only (``/thumbs/<sha256>``, ``/media/<sha256>``): no path
a browser sends ever names a file. User text stays text; Jinja2 escapes it (autoescape), and
prompts get their ``@name`` links from :func:`refstudio.gallery.text.linkify_mentions`, which
escapes first.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from markupsafe import Markup

from ..gallery.text import format_duration, format_time, linkify_mentions

if TYPE_CHECKING:
    from ..library.references import ReferenceInfo
    from ..library.results import GenerationInfo

#: States after which a generation changes no more on its own.
FINAL_STATES = frozenset({"completed", "failed", "unknown"})
#: States whose estimated cost counts as spent (as ``Studio.spent`` counts).
PAID_STATES = frozenset({"submitting", "submitted", "completed", "unknown"})


def thumb_url(sha: str | None) -> str | None:
    return f"/thumbs/{sha}" if sha else None


def media_url(sha: str | None) -> str | None:
    return f"/media/{sha}" if sha else None


def ref_url(name: str) -> str:
    return f"/refs/{quote(name, safe='')}"


def prompt_html(prompt: str, bindings: list[dict[str, Any]]) -> Markup:
    """The prompt, escaped, with the names this generation bound linked to their pages."""
    bound = {b["name"].lower() for b in bindings}
    return linkify_mentions(prompt, lambda name: ref_url(name) if name.lower() in bound else None)


def reference_card(ref: ReferenceInfo) -> dict[str, Any]:
    primary = ref.primary
    return {
        "name": ref.name,
        "url": ref_url(ref.name),
        "kind": ref.kind,
        "tags": list(ref.tags),
        "description": ref.description,
        "thumb": thumb_url(primary.sha256 if primary else None),
        "images": len(ref.images),
    }


def reference_page(ref: ReferenceInfo, lineage: dict[str, Any]) -> dict[str, Any]:
    nodes = {node["image_id"]: node for node in lineage.get("images", [])}
    images = []
    for img in ref.images:
        images.append({
            "id": img.id,
            "label": img.label,
            "primary": img.is_primary,
            "thumb": thumb_url(img.sha256),
            "full": media_url(img.sha256),
            "size": f"{img.width}×{img.height}",
            "format": img.format,
            "warnings": list(img.warnings),
            "chain": lineage_node(nodes.get(img.id, {"sha256": img.sha256, "origin": "file",
                                                     "source_file": img.source_file})),
        })
    return {**reference_card(ref), "images": images}


def lineage_node(node: dict[str, Any]) -> dict[str, Any]:
    """One step back in an image's history, with the inputs that made it (recursively)."""
    view: dict[str, Any] = {"thumb": thumb_url(node.get("sha256")),
                            "origin": node.get("origin", "unknown")}
    if view["origin"] == "file":
        source = node.get("source_file")
        view["file"] = Path(source).name if source else "imported file"
    elif view["origin"] == "generation":
        inputs = node.get("inputs")
        inputs = inputs if isinstance(inputs, list) else []
        view.update(
            handle=f"{node['generation_id']}:{node['output_index']}",
            gen_url=f"/generations/{node['generation_id']}",
            seed=node.get("seed"),
            prompt_html=prompt_html(node.get("prompt", ""), inputs),
            cycle=not isinstance(node.get("inputs"), list),
            inputs=[{"name": child["name"], "label": child.get("label"),
                     "url": ref_url(child["name"]), "node": lineage_node(child)}
                    for child in inputs],
        )
    return view


def generation_card(gen: GenerationInfo, live: tuple[str, str] | None = None) -> dict[str, Any]:
    """A generation as its card shows it; ``live`` is the engine's latest word on it, used
    while the database state is not final (it knows ``uploading``, ``downloading`` …)."""
    state, detail = gen.status, gen.error or gen.note
    if live is not None and gen.status not in FINAL_STATES:
        state, detail = live
    waited = None
    if gen.submitted_at and gen.completed_at:
        waited = (gen.completed_at - gen.submitted_at).total_seconds()
    return {
        "id": gen.id,
        "status": gen.status,
        "state": state,
        "detail": detail,
        "final": gen.status in FINAL_STATES,
        "provider": gen.provider,
        "model": gen.model,
        "prompt_html": prompt_html(gen.prompt, gen.bindings),
        "refs": [{"name": b["name"], "label": b.get("label"), "url": ref_url(b["name"]),
                  "thumb": thumb_url(b.get("sha256"))} for b in gen.bindings],
        "outputs": [{"index": o.index, "handle": o.ref, "thumb": thumb_url(o.sha256),
                     "full": media_url(o.sha256), "size": f"{o.width}×{o.height}",
                     "nsfw": o.nsfw} for o in gen.outputs],
        "seed": gen.seed,
        "params": {k: v for k, v in sorted(gen.params.items()) if k != "seed"},
        "created": format_time(gen.created_at),
        "waited": format_duration(waited),
        "cost": f"${gen.cost_estimate:.3f}",
        "run_id": gen.run_id,
        "step_id": gen.step_id,
    }


def card_signature(card: dict[str, Any]) -> tuple[Any, ...]:
    """What, when it changes, makes a card worth sending again."""
    return (card["status"], card["state"], card["detail"], len(card["outputs"]))
