"""The web studio's ASGI app and the uvicorn server that runs it.

>>> from refstudio import AsyncStudio
>>> from refstudio.web import create_app, AccessPolicy
>>> app = create_app(AsyncStudio.open("my-project"), AccessPolicy.for_host("127.0.0.1", 8000))
...                                                          # doctest: +SKIP

The app owns the studio it is given from startup to shutdown: at shutdown it stops the work it
started (submitted work stays resumable, as after a Ctrl-C) and closes the studio.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from ..errors import RefstudioError
from . import routes_generate, routes_library, routes_media, routes_workflows
from .jobs import Jobs, Progress
from .pages import ServerState, make_templates, render, status_for
from .security import AccessPolicy, CsrfError, Guard

if TYPE_CHECKING:
    import uvicorn

    from ..app.studio import AsyncStudio

#: Slack over the images themselves in one upload request (form fields, multipart framing).
UPLOAD_SLACK = 1_000_000


def create_app(studio: AsyncStudio, policy: AccessPolicy, *, close_studio: bool = True,
               ) -> Starlette:
    """The ASGI app serving ``studio``'s project under ``policy``."""
    from .routes_library import MAX_UPLOAD_FILES

    progress = Progress()
    state = ServerState(studio=studio, jobs=Jobs(studio, progress), progress=progress,
                        templates=make_templates(), notices={}, stopping=asyncio.Event())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        progress.bind(asyncio.get_running_loop())
        state.stopping = asyncio.Event()  # made on the loop it is awaited on
        try:
            yield
        finally:
            state.stopping.set()
            progress.changed()
            await state.jobs.aclose()
            if close_studio:
                studio.close()

    max_upload = studio.project.config.max_image_bytes * MAX_UPLOAD_FILES + UPLOAD_SLACK
    routes = [
        *routes_library.routes(max_upload),
        *routes_generate.routes(),
        *routes_workflows.routes(),
        *routes_media.routes(),
        Mount("/static", StaticFiles(packages=[("refstudio.web", "static")]), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, policy=policy)],
        exception_handlers={RefstudioError: _refstudio_error, CsrfError: _csrf_error},
        lifespan=lifespan,
        # Nothing but uploads is large; each upload route sets its own, larger limit.
        max_body_size=max_upload,
    )
    app.state.web = state
    return app


async def _refstudio_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RefstudioError)
    status = status_for(exc)
    if request.url.path.startswith(("/media/", "/thumbs/", "/api/", "/events/")):
        return PlainTextResponse(exc.message, status_code=status)
    return render(request, "error.html.j2", status_code=status, heading=exc.message,
                  hint=exc.hint or "", error=None, status_text=str(status))


async def _csrf_error(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("refused: the form's CSRF token is missing or wrong; reload the "
                             "page and try again", status_code=403)


def run_server(
    studio: AsyncStudio,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted. ``on_ready`` gets the address to open (with the token)."""
    import uvicorn

    policy = AccessPolicy.for_host(host, port, token)
    app = create_app(studio, policy)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                            # Event streams end on shutdown; this bounds any that do not.
                            timeout_graceful_shutdown=3, lifespan="on")
    server = _Server(config, on_ready, policy)
    server.run()


class _Server:
    """uvicorn's server, telling the caller the address once the socket listens."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[str], None] | None,
                 policy: AccessPolicy) -> None:
        import uvicorn

        self.server = uvicorn.Server(config)
        self.on_ready = on_ready
        self.policy = policy

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        watcher = asyncio.ensure_future(self._announce())
        try:
            await self.server.serve()
        finally:
            watcher.cancel()

    async def _announce(self) -> None:
        while not self.server.started:
            await asyncio.sleep(0.02)
        url = address(self.server, self.policy)
        # Asked for port 0 (any free one): the Host check must know the real one.
        self.policy.port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        if self.on_ready is not None:
            self.on_ready(url)


def address(server: Any, policy: AccessPolicy) -> str:
    """The URL the server listens on (the real port when 0 was asked for), with the token."""
    sockets = [s for srv in getattr(server, "servers", []) for s in srv.sockets]
    port = sockets[0].getsockname()[1] if sockets else policy.port
    host = policy.host if ":" not in policy.host else f"[{policy.host}]"
    url = f"http://{host}:{port}/"
    return url + (f"?token={policy.token}" if policy.token else "")


__all__ = ["AccessPolicy", "address", "create_app", "run_server"]
