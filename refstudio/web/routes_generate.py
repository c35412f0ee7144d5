"""Compose, generate, watch, compare, promote.

``POST /compose`` starts the work as a server task and answers as soon as the generations are
written down; the page it redirects to follows them over server-sent events
(``/events/generations``), which send a card again each time its state changes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import InputError, RefstudioError
from ..models import catalog
from ..models.sizes import RESOLUTION_CLASSES
from ..storage.tables import GENERATION_STATES, REFERENCE_KINDS
from . import views
from .pages import call, message_of, redirect, render, render_fragment, status_for, web
from .security import form_route

HISTORY_LIMIT = 50
#: The common size vocabulary offered on the page (each model maps it onto its own form).
ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4")
#: Cards watched by one event stream, at most.
MAX_WATCH = 200
#: How often a stream looks at the database for work other processes (the CLI) move along.
DB_POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0


def _form_values(source: Any, studio: Any) -> dict[str, str]:
    config = studio.project.config
    return {
        "prompt": str(source.get("prompt") or ""),
        "provider": str(source.get("provider") or studio.default_provider()),
        "model": str(source.get("model") or ""),
        "aspect_ratio": str(source.get("aspect_ratio") or config.aspect_ratio),
        "resolution": str(source.get("resolution") or config.resolution),
        "seed": str(source.get("seed") or ""),
        "n": str(source.get("n") or "1"),
    }


def _options(values: dict[str, str]) -> dict[str, Any]:
    """Form text to ``generate`` keywords; bad numbers are InputError like the CLI's."""
    try:
        seed = int(values["seed"]) if values["seed"].strip() else None
        n = int(values["n"] or "1")
    except ValueError:
        raise InputError("seed and count are whole numbers") from None
    return {"provider": values["provider"] or None, "model": values["model"] or None,
            "aspect_ratio": values["aspect_ratio"],
            "resolution": values["resolution"], "seed": seed, "n": n}


async def _estimate(studio: Any, values: dict[str, str]) -> dict[str, Any]:
    """What the compose page shows before sending: the bound references, the cost."""
    if not values["prompt"].strip():
        return {"text": "Write a prompt; @name binds a reference.", "references": [],
                "ok": False, "total": 0.0}
    try:
        options = _options(values)
        n = options.pop("n")
        from ..models.params import check_batch_size

        check_batch_size(n)
        rendered = await call(studio.render, values["prompt"], **options)
    except RefstudioError as exc:
        return {"text": message_of(exc), "references": [], "ok": False, "total": 0.0}
    total = rendered.cost_estimate * n
    refs = [{"name": r.name, "label": r.label, "thumb": views.thumb_url(r.sha256)}
            for r in rendered.references]
    text = (f"{n} × {rendered.params['resolution']} {rendered.params['aspect_ratio']} on "
            f"{rendered.provider}: estimated ${total:.2f}")
    if rendered.warnings:
        text += " · " + "; ".join(rendered.warnings)
    return {"text": text, "references": refs, "ok": True, "total": total}


async def compose(request: Request) -> Response:
    studio = web(request).studio
    values = _form_values(request.query_params, studio)
    return await _compose_page(request, values)


async def _compose_page(request: Request, values: dict[str, str], status: int = 200,
                        error: str | None = None) -> Response:
    studio = web(request).studio
    return render(request, "compose.html.j2", status_code=status, page="compose", form=values,
                  estimate=await _estimate(studio, values), providers=studio.provider_names(),
                  models=[{"id": m.id, "name": m.name} for m in await call(studio.models)],
                  aspect_ratios=ASPECT_RATIOS, resolutions=RESOLUTION_CLASSES, error=error)


@form_route(max_files=0, max_fields=12)
async def generate(request: Request, form: FormData) -> Response:
    state = web(request)
    values = _form_values(form, state.studio)
    try:
        ids = await state.jobs.start_generate(values["prompt"], **_options(values))
    except RefstudioError as exc:
        return await _compose_page(request, values, status_for(exc), message_of(exc))
    return redirect("/generations?watch=" + ",".join(map(str, ids)))


async def estimate(request: Request) -> Response:
    studio = web(request).studio
    return JSONResponse(await _estimate(studio, _form_values(request.query_params, studio)))


async def names(request: Request) -> Response:
    """``@`` completion: references whose name starts with ``q``, with their thumbnails."""
    studio = web(request).studio
    q = request.query_params.get("q", "")[:32]
    refs, _ = await call(studio.find_references, q, prefix=True, limit=8)
    return JSONResponse([{"name": r.name, "kind": r.kind,
                          "thumb": views.thumb_url(r.primary.sha256 if r.primary else None)}
                         for r in refs])


def _ids(text: str) -> list[int]:
    ids = []
    for part in text.split(",")[:MAX_WATCH]:
        if part.strip().isdigit() and len(part.strip()) < 19:
            ids.append(int(part))
    return ids


async def generations(request: Request) -> Response:
    state = web(request)
    studio = state.studio
    params = request.query_params
    q, ref = params.get("q", "")[:200], params.get("ref", "")[:64]
    status = params.get("status") or None
    if status not in (None, *GENERATION_STATES):
        status = None
    # Only a catalog model id filters: anything else sent in the address is ignored, as an
    # unknown state is.
    models = [(m.id, m.display_name) for m in catalog.all_models()]
    model = params.get("model") or None
    if model not in {m for m, _ in models}:
        model = None
    watch = _ids(params.get("watch", ""))
    watching = await call(studio.queries.many, watch) if watch else []
    history = await call(studio.history, text=q or None, ref=ref or None, status=status,
                         model=model, limit=HISTORY_LIMIT)
    counts = await call(studio.generation_counts)
    spent = await call(studio.spent)
    live = state.progress.latest
    history_cards = [views.generation_card(g, live.get(g.id)) for g in history
                     if g.id not in set(watch)]
    return render(
        request, "generations.html.j2", page="generations",
        # Work started here that ended in an error after it was recorded (its cards say more).
        background_errors=list(state.jobs.errors),
        watching=[views.generation_card(g, live.get(g.id)) for g in watching],
        watch_ids=",".join(map(str, watch)), history=history_cards,
        live_ids=",".join(str(c["id"]) for c in history_cards if not c["final"]),
        counts=counts, spent=f"${spent:.2f}", q=q, ref=ref, status=status or "",
        states=GENERATION_STATES, model=model or "", models=models, kinds=REFERENCE_KINDS,
        shown_cost=f"${sum(g.cost_estimate for g in history if g.status in views.PAID_STATES):.2f}"
        if (q or ref or status or model) else "",
    )


async def generation(request: Request) -> Response:
    state = web(request)
    gen_id = _ids(request.path_params["gen_id"])
    if not gen_id:
        raise InputError("a generation id is a whole number")
    info = await call(state.studio.generation, gen_id[0])
    return render(request, "generation.html.j2", page="generations",
                  gen=views.generation_card(info, state.progress.latest.get(info.id)),
                  kinds=REFERENCE_KINDS, source=info.template_source or info.prompt)


@form_route(max_files=0, max_fields=8)
async def promote(request: Request, form: FormData) -> Response:
    state = web(request)
    gen_id = _ids(request.path_params["gen_id"])
    index = _ids(request.path_params["index"])
    if not gen_id or not index:
        raise InputError("an output is GEN:INDEX, two whole numbers")
    name = str(form.get("name") or "").strip().lstrip("@")
    kind = str(form.get("kind") or "") or None
    label = str(form.get("label") or "").strip() or None
    info = await call(state.studio.promote, gen_id[0], name, index=index[0], kind=kind,
                      label=label)
    return redirect(views.ref_url(info.name),
                    [f"Promoted output {gen_id[0]}:{index[0]} to @{info.name}"], state=state)


async def generation_events(request: Request) -> Response:
    """Server-sent events: a ``card`` event (the card's HTML, rendered and escaped here) each
    time a watched generation changes; ``done`` once every one is final."""
    state = web(request)
    ids = _ids(request.query_params.get("ids", ""))

    async def stream() -> AsyncIterator[str]:
        sent: dict[int, tuple[Any, ...]] = {}
        version = -1
        yield "retry: 2000\n\n"
        while True:
            infos = await call(state.studio.queries.many, ids)
            final = True
            for info in infos:
                card = views.generation_card(info, state.progress.latest.get(info.id))
                final = final and card["final"]
                signature = views.card_signature(card)
                if sent.get(info.id) != signature:
                    sent[info.id] = signature
                    html = render_fragment(request, "_gen_card.html.j2", gen=card,
                                           kinds=REFERENCE_KINDS)
                    yield _sse("card", {"id": info.id, "html": html})
            if final or state.stopping.is_set():
                yield _sse("done", {})
                return
            before = asyncio.get_running_loop().time()
            version = await state.progress.wait(version, DB_POLL_SECONDS)
            if asyncio.get_running_loop().time() - before >= HEARTBEAT_SECONDS:
                yield ": keep-alive\n\n"
            if await request.is_disconnected():
                return

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"cache-control": "no-store"})


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def routes() -> list[Any]:
    return [
        Route("/compose", compose),
        Route("/compose", generate, methods=["POST"], max_body_size=256 * 1024),
        Route("/api/estimate", estimate),
        Route("/api/names", names),
        Route("/generations", generations),
        Route("/generations/{gen_id}", generation),
        Route("/outputs/{gen_id}/{index}/promote", promote, methods=["POST"],
              max_body_size=64 * 1024),
        Route("/events/generations", generation_events),
    ]
