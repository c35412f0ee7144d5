"""Workflows (list, dry-run plan, run with per-step progress) and the account page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..errors import WorkflowError
from . import accounts
from .pages import call, redirect, render, render_fragment, web
from .routes_generate import DB_POLL_SECONDS, _sse
from .security import form_route


async def _known_workflow(request: Request) -> str:
    """The workflow named in the path, only if it is one of ``workflows/*.toml``: a request
    never names a file (``Studio.find_workflow`` would also take a path)."""
    name = request.path_params["name"]
    known = await call(web(request).studio.workflow_names)
    if name not in known:
        raise WorkflowError(f"no workflow {name[:80]!r}",
                            hint=f"workflows here: {', '.join(known) or 'none'}")
    return str(name)


async def workflows(request: Request) -> Response:
    state = web(request)
    names = await call(state.studio.workflow_names)
    return render(request, "workflows.html.j2", page="workflows", workflows=names,
                  jobs=sorted(state.jobs.workflows.values(), key=lambda j: -j.id))


async def workflow(request: Request) -> Response:
    state = web(request)
    name = await _known_workflow(request)
    plan = await call(state.studio.plan_workflow, name)
    report = await state.studio.run_workflow(name, dry_run=True)
    notes = {s.id: s.message for s in report.steps}
    steps = [{"id": s.id, "prompt": s.text, "after": sorted(s.depends_on),
              "variants": len(s.seeds),
              "promote": s.spec.promote.name if s.spec.promote else "",
              "note": notes.get(s.id, "")} for s in plan.steps]
    return render(request, "workflow.html.j2", page="workflows", name=name,
                  plan={"steps": steps, "cost": f"${report.estimated_cost:.2f}"},
                  providers=state.studio.provider_names(),
                  provider=state.studio.default_provider())


@form_route(max_files=0, max_fields=4)
async def run(request: Request, form: FormData) -> Response:
    state = web(request)
    name = await _known_workflow(request)
    provider = str(form.get("provider") or "") or None
    # Checked before it starts (plan, budget), so a refusal is an error page, not a dead run.
    await state.studio.run_workflow(name, dry_run=True, provider=provider)
    job = state.jobs.start_workflow(name, provider=provider)
    return redirect(f"/workflows/runs/{job.id}")


def _job(request: Request) -> Any:
    jobs = web(request).jobs.workflows
    try:
        return jobs[int(request.path_params["job_id"])]
    except (ValueError, KeyError):
        raise WorkflowError("no such run started by this server") from None


async def workflow_run(request: Request) -> Response:
    return render(request, "workflow_run.html.j2", page="workflows", job=_job(request))


async def workflow_events(request: Request) -> Response:
    state = web(request)
    job = _job(request)

    async def stream() -> AsyncIterator[str]:
        last: Any = None
        version = -1
        while True:
            snapshot = (job.status, dict(job.steps), list(job.generation_ids))
            if snapshot != last:
                last = snapshot
                yield _sse("steps", {"id": job.id, "html": render_fragment(
                    request, "_workflow_steps.html.j2", job=job)})
            if job.status != "running" or state.stopping.is_set():
                yield _sse("done", {})
                return
            version = await state.progress.wait(version, DB_POLL_SECONDS)
            if await request.is_disconnected():
                return

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"cache-control": "no-store"})


async def account(request: Request) -> Response:
    studio = web(request).studio
    summary = await call(studio.account_summary)
    providers = await accounts.read_accounts(studio)
    return render(request, "account.html.j2", page="account", account=summary,
                  providers=providers)


def routes() -> list[Any]:
    return [
        Route("/workflows", workflows),
        Route("/workflows/runs/{job_id}", workflow_run),
        Route("/events/workflows/{job_id}", workflow_events),
        Route("/workflows/{name}", workflow),
        Route("/workflows/{name}/run", run, methods=["POST"], max_body_size=16 * 1024),
        Route("/account", account),
    ]

