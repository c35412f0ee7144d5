"""A real web studio server for tests: uvicorn in a thread on a free 127.0.0.1 port.

Shared by the browser tests (tests/test_web_browser.py) and the plain-HTTP security tests
(tests/test_web_security.py). The server owns the AsyncStudio it serves and closes it on stop.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from refstudio.app.studio import AsyncStudio
from refstudio.web import AccessPolicy, create_app


class WebServer:
    """``with WebServer(root) as server: httpx.get(server.url)``."""

    def __init__(self, root: Path, *, policy_host: str = "127.0.0.1",
                 provider_options: dict[str, dict[str, Any]] | None = None) -> None:
        self.studio = AsyncStudio.open(root)
        self.studio.provider_options.update(provider_options or {})
        # The policy may be for another address (0.0.0.0: token mode) while the socket stays
        # on 127.0.0.1, so no test ever listens beyond this machine.
        self.policy = AccessPolicy.for_host(policy_host, 0)
        self.app = create_app(self.studio, self.policy)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning",
                                lifespan="on", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WebServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the web server did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.policy.port = self.port  # the Host check needs the real port
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def csrf_of(html: str) -> str:
    """The CSRF token a page carries (its meta tag)."""
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def session_client(server: WebServer, **kwargs: Any) -> tuple[httpx.Client, str]:
    """An httpx client with a session cookie, and that session's CSRF token."""
    client = httpx.Client(base_url=server.url, timeout=20, **kwargs)
    page = client.get("/")
    assert page.status_code == 200, page.text
    return client, csrf_of(page.text)
