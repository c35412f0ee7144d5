"""What every provider over HTTP does alike, whatever its protocol: read and check its key,
parse its base URL, share its account's pool (:class:`~refstudio.providers.http.SharedPool`),
make free calls, send a paid request at most once with a trace, keep the key out of every
message, and stream outputs without handing the key to another host.

The WaveSpeed and Runway clients subclass :class:`HttpProvider` and keep what differs: their
paths, bodies, and how each answer maps to an error.
"""

from __future__ import annotations

import abc
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from typing import Any, ClassVar, TypeVar

import httpx

from refstudio.errors import (
    AuthenticationError,
    ConfigError,
    ProtocolError,
    ProviderError,
    TransientError,
)
from refstudio.providers.base import Provider
from refstudio.providers.http import (
    DEFAULT_TIMEOUT,
    DOWNLOAD_CHUNK,
    DOWNLOAD_TIMEOUT,
    SUBMIT_TIMEOUT,
    Download,
    Secret,
    SendTrace,
    SharedPool,
    same_origin,
)
from refstudio.providers.netloop import run_here

__all__ = ["MAX_MESSAGE_CHARS", "HttpProvider"]

#: Longest server text we quote in an error message (bodies can be whole HTML error pages).
MAX_MESSAGE_CHARS = 300
#: Only a loopback address can be the built-in simulator, whose work is free.
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")

ProviderT = TypeVar("ProviderT", bound="HttpProvider")


class HttpProvider(Provider):
    """A provider reached over HTTP with a bearer key; see the module docstring.

    A subclass names its service and environment in the class attributes below, and calls
    :meth:`_read_key` then :meth:`_connect` from its ``__init__``.
    """

    #: How messages name the service: ``"WaveSpeed"``.
    label: ClassVar[str]
    #: The environment variables of the key and the base URL, and the base URL by default.
    env_api_key: ClassVar[str]
    env_base_url: ClassVar[str]
    default_base_url: ClassVar[str]

    _key: Secret
    _base_url: httpx.URL
    _pool: SharedPool
    _timeout_override: httpx.Timeout | None
    _closed: bool

    # ------------------------------------------------------------------ opening

    def _read_key(self, api_key: str | None, *, missing_hint: str) -> str:
        """The key given, else the environment's; refused when there is none or when it could
        never be a header value (said without echoing it)."""
        key = (api_key if api_key is not None else os.environ.get(self.env_api_key, "")).strip()
        if not key:
            raise AuthenticationError(f"no {self.label} API key", hint=missing_hint)
        if any(c in key for c in "\r\n\0") or not key.isascii():
            raise AuthenticationError(
                f"the {self.label} API key contains characters a key cannot have",
                hint=f"check the value of {self.env_api_key}",
            )
        return key

    def _connect(
        self, key: str, base_url: str | None, *, timeout: httpx.Timeout | None,
        max_connections: int, transport: httpx.AsyncBaseTransport | None, simulated: bool,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Hold the key, check the base URL (given, else the environment's, else the
        service's) and join the account's pool. ``headers`` ride on every request of a pool
        opened here (never a secret)."""
        self._key = Secret(key)
        raw_base = base_url or os.environ.get(self.env_base_url) or self.default_base_url
        try:
            base = httpx.URL(raw_base.rstrip("/"))
        except httpx.InvalidURL as exc:
            raise ConfigError(f"invalid {self.label} base URL {raw_base!r}: {exc}") from None
        if base.scheme not in ("http", "https") or not base.host:
            raise ConfigError(
                f"invalid {self.label} base URL {raw_base!r}: expected http(s)://host[:port]",
                hint=f"check {self.env_base_url}",
            )
        self._base_url = base
        if simulated:
            # Free work must never be assumed of the real service: only a loopback address can
            # be the built-in simulator (refstudio.simulator), and only the caller who started
            # it says so.
            if base.host not in _LOOPBACK:
                raise ConfigError(
                    f"simulated=True needs the simulator's loopback address, not {raw_base!r}"
                )
            self.paid = False
        # Explicit timeouts win everywhere; otherwise each operation picks its own defaults.
        self._timeout_override = timeout
        # One pool per account (key + base URL) per process, whoever opens it; a test transport
        # gets a pool of its own.
        self._pool = SharedPool.attach(self.name, key, base, max_connections, transport,
                                       headers=headers)
        self._closed = False

    # ------------------------------------------------------------------ plumbing

    @property
    def base_url(self) -> str:
        """The API base URL in use (no trailing slash)."""
        return str(self._base_url).rstrip("/")

    @property
    def account(self) -> str:
        """The API base URL: records read elsewhere say nothing about requests sent here.
        (The key is not part of it: it is a secret, and a new key of one account sees the
        same records.)"""
        return self.base_url

    @property
    def account_key(self) -> str:
        """Names the account (key + base URL) without showing the key: a hash of both."""
        return self._pool.account_key

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key='****')"

    async def __aenter__(self: ProviderT) -> ProviderT:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Let go of the account's shared pool (closed when its last user lets go). Safe twice."""
        if not self._closed:
            self._closed = True
            await run_here(self._pool.detach())

    def _auth(self) -> dict[str, str]:
        """Per-request auth header. Not a client default, so it never rides along to CDN hosts."""
        return {"Authorization": f"Bearer {self._key.reveal()}"}

    def _timeout(self, default: httpx.Timeout) -> httpx.Timeout:
        return self._timeout_override or default

    def _scrub(self, text: str) -> str:
        """Remove the key from text that may end up in an exception (servers sometimes echo it)."""
        key = self._key.reveal()
        return text.replace(key, "****") if key else text

    def _same_origin(self, url: httpx.URL) -> bool:
        return same_origin(url, self._base_url)

    def _describe(self, exc: BaseException) -> str:
        """A short scrubbed text for a transport exception (type plus its own words)."""
        words = str(exc).strip()
        text = f"{type(exc).__name__}: {words}" if words else type(exc).__name__
        return self._scrub(text)[:MAX_MESSAGE_CHARS]

    # ------------------------------------------------------------------ requests

    async def _free_request(
        self, method: str, target: str | httpx.URL, what: str, *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT, headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """A free call (poll, upload, account read) with the key (unless ``headers`` replace
        it); a transport failure is a TransientError, "{label} {what} failed", worth asking
        again. Runs on the network loop."""
        try:
            async with self._pool.slots():
                return await self._pool.client().request(
                    method, target, headers=self._auth() if headers is None else headers,
                    timeout=self._timeout(timeout), **kwargs)
        except httpx.HTTPError as exc:
            # `from None` on purpose: chained httpx exceptions hold the request, headers and
            # all, and tracebacks/loggers that walk __cause__ should not find the key there.
            raise TransientError(f"{self.label} {what} failed: {self._describe(exc)}") from None

    async def _post_paid(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        """POST a paid request once, traced: a request that got no answer is sorted by
        :meth:`_submit_failure`. Runs on the network loop."""
        sent = SendTrace()
        try:
            async with self._pool.slots():
                return await self._pool.client().post(
                    path, json=body, headers=self._auth(),
                    timeout=self._timeout(SUBMIT_TIMEOUT), extensions={"trace": sent})
        except httpx.HTTPError as exc:
            raise self._submit_failure(exc, sent) from None

    @abc.abstractmethod
    def _submit_failure(self, exc: httpx.HTTPError, sent: SendTrace) -> ProviderError:
        """The error of a paid request that got no answer: "certainly not taken" or "may have
        been taken" (each service words it its own way)."""

    # ------------------------------------------------------------------ download

    def _inline_output(self, output: str) -> Iterable[bytes] | None:
        """An output carried in the answer itself, as chunks; None when ``output`` is a URL to
        stream (the default: every output is)."""
        return None

    async def download(self, output: str) -> AsyncIterator[bytes]:
        """Yield an output's bytes in chunks, streamed from its URL (the key goes only to the
        API's own origin: outputs live on CDN hosts)."""
        inline = self._inline_output(output)
        if inline is not None:
            for chunk in inline:
                yield chunk
            return
        try:
            url = httpx.URL(output)
        except httpx.InvalidURL as exc:
            raise ProtocolError(f"{self.label} output is not a valid URL: {exc}") from None
        # (On a redirect, httpx itself drops Authorization when the origin changes.)
        headers = self._auth() if self._same_origin(url) else {}
        # The stream lives on the network loop, with the pool; its chunks cross over in batches
        # (one hop per ~0.5 MiB, not per 64 KiB chunk).
        stream = Download(self._stream(url, headers))
        try:
            while batch := await run_here(stream.next_batch()):
                yield batch
        finally:
            await run_here(stream.close())

    async def _stream(
        self, url: httpx.URL, headers: dict[str, str]
    ) -> AsyncGenerator[bytes, None]:
        where = f"download from {url.host}"
        try:
            async with self._pool.slots(), self._pool.client().stream(
                "GET",
                url,
                headers=headers,
                timeout=self._timeout(DOWNLOAD_TIMEOUT),
                follow_redirects=True,  # CDNs redirect; a GET is safe to follow
            ) as response:
                if not response.is_success:
                    await response.aread()
                    raise self._download_refused(response, where)
                async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK):
                    yield chunk
        except httpx.HTTPError as exc:
            raise TransientError(f"{where} failed: {self._describe(exc)}") from None

    def _download_refused(self, response: httpx.Response, where: str) -> TransientError:
        """The error of a download answered with a failing status (worth trying again)."""
        return TransientError(f"{where} answered {response.status_code}",
                              status_code=response.status_code)
