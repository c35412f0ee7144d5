"""Who may talk to the web studio, and what every answer carries.

One pure ASGI middleware (:class:`Guard`), not Starlette's ``BaseHTTPMiddleware``, which buffers
and breaks streaming answers (the server-sent event streams)::

    request ─▶ Host check (loopback mode: the Host header must name this loopback address, so a
               page whose DNS name was rebound to 127.0.0.1 is refused)
            ─▶ access token (any other host: ``?token=`` once, then an HttpOnly cookie, or an
               ``Authorization: Bearer`` header; else 401)
            ─▶ session cookie (random; the CSRF token is an HMAC of it)
            ─▶ state-changing method: cross-site ``Origin`` / ``Sec-Fetch-Site`` refused here;
               the CSRF token itself is checked by :func:`checked_form` in every POST route
            ─▶ app ─▶ security headers added to the answer (CSP without inline script, …)

The CSRF token lives in the form (a hidden field) or an ``X-CSRF-Token`` header; a page on
another site can neither read it nor guess it, so it cannot post on the user's behalf.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from starlette.datastructures import FormData, Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = "refstudio_session"
TOKEN_COOKIE = "refstudio_token"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: No inline script or style, nothing from another origin; images from this server only.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    # Not no-referrer: under it Chromium sends ``Origin: null`` on same-site form posts.
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class AccessPolicy:
    """How this server admits requests. ``token`` is None on a loopback address."""

    host: str
    port: int
    token: str | None = None
    #: Signs session ids into CSRF tokens; new each process, so old tokens die with it.
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    @classmethod
    def for_host(cls, host: str, port: int, token: str | None = None) -> AccessPolicy:
        """Loopback needs no token; any other address gets ``token`` or a fresh random one."""
        if is_loopback(host):
            return cls(host, port, None)
        return cls(host, port, token or secrets.token_urlsafe(24))

    def allowed_hosts(self) -> set[str] | None:
        """Host header values accepted, or None (any) when a token guards the server."""
        if self.token is not None:
            return None
        names = {"127.0.0.1", "localhost", "[::1]", self.host}
        return {f"{n}:{self.port}" for n in names} | (names if self.port == 80 else set())

    def csrf_for(self, session: str) -> str:
        return hmac.new(self.secret, b"csrf:" + session.encode(), hashlib.sha256).hexdigest()

    def token_ok(self, given: str | None) -> bool:
        if not given or self.token is None:
            return False
        return hmac.compare_digest(given.encode(), self.token.encode())


def _cookies(headers: Headers) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for raw in headers.getlist("cookie"):
        try:
            jar.load(raw)
        except Exception:  # a malformed cookie header from some other site's script: ignore
            continue
    return {key: morsel.value for key, morsel in jar.items()}


def _cookie_header(name: str, value: str) -> tuple[bytes, bytes]:
    return (b"set-cookie",
            f"{name}={value}; Path=/; HttpOnly; SameSite=Strict".encode())


async def _plain(send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
                 ) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()),
                            *SECURITY_HEADERS, *extra]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """The middleware described in the module docstring."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        allowed = self.policy.allowed_hosts()
        if allowed is not None and headers.get("host", "") not in allowed:
            await _plain(send, 421, "this server answers only to its loopback address")
            return
        cookies = _cookies(headers)
        extra: list[tuple[bytes, bytes]] = []
        if self.policy.token is not None:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            authorization = headers.get("authorization", "")
            bearer = authorization[7:] if authorization.lower().startswith("bearer ") else None
            if self.policy.token_ok(query.get("token")) and scope["method"] == "GET":
                # First visit from the printed URL: keep the token in a cookie and drop it
                # from the address bar (and from history and any Referer).
                rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
                # Only a path of this server: "//host" would send the browser elsewhere.
                path = "/" + str(scope["path"]).lstrip("/")
                location = quote(path) + (f"?{rest}" if rest else "")
                await _plain(send, 303, "", [(b"location", location.encode()),
                                             _cookie_header(TOKEN_COOKIE, self.policy.token or "")])
                return
            if not (self.policy.token_ok(cookies.get(TOKEN_COOKIE))
                    or self.policy.token_ok(bearer)):
                await _plain(send, 401, "a token is required: open the address `refstudio "
                             "serve` printed, which carries it")
                return
        session = cookies.get(SESSION_COOKIE, "")
        if len(session) < 20:
            session = secrets.token_urlsafe(24)
            extra.append(_cookie_header(SESSION_COOKIE, session))
        scope.setdefault("state", {})
        scope["state"]["csrf"] = self.policy.csrf_for(session)
        if scope["method"] in UNSAFE_METHODS and _cross_site(headers):
            await _plain(send, 403, "refused: a request from another site")
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  *SECURITY_HEADERS, *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _cross_site(headers: Headers) -> bool:
    """True when the browser says the request comes from another site. Browsers send
    ``Sec-Fetch-Site``, which is the surer word; older ones only ``Origin``."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None or origin == "null":
        return origin == "null"
    host = headers.get("host", "")
    return origin.split("://", 1)[-1] != host


class CsrfError(Exception):
    """A state-changing request without the right CSRF token."""


def csrf_token(request: Request) -> str:
    """The CSRF token of this request's session (for forms and the page's meta tag)."""
    return str(request.scope["state"]["csrf"])


async def checked_form(request: Request, **limits: Any) -> FormData:
    """The request's form, after checking its CSRF token (form field or header).

    Every POST route reads its form through here; ``limits`` go to Starlette's parser
    (``max_files``, ``max_fields``, ``max_part_size``).
    """
    expected = csrf_token(request)
    given = request.headers.get(CSRF_HEADER)
    form = await request.form(**limits)
    if given is None:
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        await form.close()
        raise CsrfError("missing or wrong CSRF token")
    return form


FormHandler = Callable[[Request, FormData], Awaitable[Any]]


def form_route(**limits: Any) -> Callable[[FormHandler], Callable[[Request], Awaitable[Any]]]:
    """Decorates every POST route: the handler gets the form only after its CSRF token was
    checked (:class:`CsrfError`, answered 403, otherwise); uploaded files are closed after."""

    def wrap(handler: FormHandler) -> Callable[[Request], Awaitable[Any]]:
        async def route(request: Request) -> Any:
            form = await checked_form(request, **limits)
            try:
                return await handler(request, form)
            finally:
                await form.close()

        route.__name__ = handler.__name__
        route.__doc__ = handler.__doc__
        route.csrf_checked = True  # type: ignore[attr-defined]
        return route

    return wrap
