"""What every route shares: the studio of this server, page rendering, errors as pages.

Handlers are coroutines; the Studio's local verbs are plain blocking functions (SQLite reads,
Pillow), so :func:`call` runs them on Starlette's thread pool and the event loop stays free for
the engine's polls and the event streams.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.templating import Jinja2Templates

from ..errors import (
    BudgetExceededError,
    InputError,
    NameTakenError,
    NotFoundError,
    PromptError,
    RefstudioError,
    WorkflowError,
)
from ..gallery.text import html_environment
from .security import csrf_token

if TYPE_CHECKING:
    from ..app.studio import AsyncStudio
    from .jobs import Jobs, Progress

T = TypeVar("T")


@dataclass
class ServerState:
    """What the routes reach through ``request.app.state.web``."""

    studio: AsyncStudio
    jobs: Jobs
    progress: Progress
    templates: Jinja2Templates
    #: Messages shown once on the page a redirect lands on (``?notice=KEY``).
    notices: dict[str, list[str]]
    #: Set when the server stops: event streams end so the shutdown need not wait for them.
    stopping: asyncio.Event


def web(request: Request) -> ServerState:
    state: ServerState = request.app.state.web
    return state


async def call(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking Studio verb on the thread pool."""
    return await run_in_threadpool(functools.partial(func, *args, **kwargs))


def make_templates() -> Jinja2Templates:
    # The gallery's environment: autoescape everywhere, since every name, prompt, tag, label
    # and error is user text.
    return Jinja2Templates(env=html_environment("refstudio.web"))


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    state = web(request)
    key = request.query_params.get("notice", "")
    base = {
        "csrf": csrf_token(request),
        "project_name": state.studio.project.config.name,
        "notices": state.notices.pop(key, []) if key else [],
        "error": None,
        "page": "",
    }
    return state.templates.TemplateResponse(request, template, {**base, **context},
                                            status_code=status_code)


def render_fragment(request: Request, template: str, **context: Any) -> str:
    """A partial template as a string (a card sent down an event stream)."""
    env = web(request).templates.env
    return env.get_template(template).render(csrf=csrf_token(request), **context)


def redirect(url: str, notices: list[str] | None = None, *, state: ServerState | None = None,
             ) -> RedirectResponse:
    """303 to ``url``; ``notices`` are shown once on the page it lands on."""
    if notices and state is not None:
        key = secrets.token_urlsafe(8)
        if len(state.notices) > 200:  # abandoned ones: keep the store small
            state.notices.clear()
        state.notices[key] = notices
        url += ("&" if "?" in url else "?") + f"notice={key}"
    return RedirectResponse(url, status_code=303)


def status_for(exc: RefstudioError) -> int:
    """The HTTP status that says what kind of refstudio error this is."""
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, NameTakenError):
        return 409
    if isinstance(exc, BudgetExceededError):
        return 402
    if isinstance(exc, InputError | PromptError | WorkflowError):
        return 400
    return 500


def message_of(exc: RefstudioError) -> str:
    return exc.message + (f" ({exc.hint})" if exc.hint else "")
