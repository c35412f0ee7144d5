"""HTTP plumbing every HTTP provider shares: one pool per account per process, on the network
loop (:mod:`refstudio.providers.netloop`); a masked secret; ``Retry-After``; a send trace that
tells "the body never left" from "it may have been taken"; downloads driven across loops.

Lifted from the WaveSpeed client so the Runway provider runs on the same machinery: one pool
per account (key + base URL) per process, one request per connection at a time.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import os
import ssl
import threading
import time
from collections.abc import AsyncGenerator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx

from refstudio.providers.netloop import at_close

__all__ = [
    "DEFAULT_TIMEOUT",
    "DOWNLOAD_TIMEOUT",
    "SUBMIT_TIMEOUT",
    "UPLOAD_TIMEOUT",
    "Download",
    "Secret",
    "SendTrace",
    "SharedPool",
    "parse_retry_after",
    "same_origin",
    "ssl_context",
]

DOWNLOAD_CHUNK = 64 * 1024
#: Default client timeouts (each request may pass its own). Connect is short (a refused or
#: unreachable host should fail fast and is safe to retry); read 30 s suits polls; the pool wait
#: is generous because waiting for a free connection happens before anything is sent.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=30.0, write=30.0, pool=60.0)
#: Paid requests get a longer read: every read timeout on one is an *ambiguous* (maybe paid)
#: task, so waiting a little longer for the answer is much cheaper than giving up early.
SUBMIT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=60.0)
#: Uploads send up to several MB of image; give the write side room on slow uplinks.
UPLOAD_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=180.0, pool=60.0)
#: Downloads: each read waits at most this long for the next chunk, not for the whole file.
DOWNLOAD_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=30.0, pool=60.0)


class Secret:
    """A string that does not show itself: ``repr``/``str`` are masked, ``reveal()`` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'****'"

    __str__ = __repr__


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent
    or unreadable. Never negative (a date in the past means "now")."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:  # pragma: no cover - older Pythons returned None instead of raising
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """(scheme, host, port) with default ports filled in, for same-origin checks."""
    port = url.port
    if port is None:
        port = {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host.lower(), port)


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    """True when both URLs name one scheme, host and port (a key may go to one, not another)."""
    return origin(a) == origin(b)


@functools.lru_cache(maxsize=1)
def ssl_context() -> ssl.SSLContext:
    """One verified TLS context per process: loading the CA bundle costs ~60 ms a client."""
    return httpx.create_ssl_context()


class Download:
    """A download stream driven from another loop, one step at a time, on the network loop.

    A lock orders the steps: a close that follows a cancelled step waits for that step to end
    (an async generator cannot be closed while it runs).
    """

    def __init__(self, stream: AsyncGenerator[bytes, None]) -> None:
        self._stream = stream
        self._lock: asyncio.Lock | None = None

    def _guard(self) -> asyncio.Lock:
        if self._lock is None:  # made on the network loop, where it is used
            self._lock = asyncio.Lock()
        return self._lock

    async def next_batch(self, size: int = 8 * DOWNLOAD_CHUNK) -> bytes:
        """The next chunks joined, up to about ``size`` bytes; b"" once the stream has ended."""
        async with self._guard():
            parts: list[bytes] = []
            total = 0
            async for chunk in self._stream:
                parts.append(chunk)
                total += len(chunk)
                if total >= size:
                    break
            return b"".join(parts)

    async def close(self) -> None:
        async with self._guard():
            await self._stream.aclose()


class SendTrace:
    """An httpcore ``trace`` hook that notes how far a request got before it failed."""

    __slots__ = ("body_sent", "started")

    def __init__(self) -> None:
        self.started = False  # a connection was ours and writing the request began
        self.body_sent = False  # the body's last byte was handed to the network

    async def __call__(self, event: str, info: Mapping[str, Any]) -> None:
        if event.endswith(".send_request_headers.started"):
            self.started = True
        elif event.endswith(".send_request_body.complete"):
            self.body_sent = True


class SharedPool:
    """One account's connection pool, shared by every provider of this process for that account.

    Lives on the network loop (:mod:`refstudio.providers.netloop`): the client is created there
    on first use and every request runs there. ``slots`` hands httpx at most one request per
    connection: httpcore re-scans every connection for every queued request, which made 50
    concurrent polls cost ~1.3 s of CPU. Closed when the last provider using it is closed.
    """

    _lock = threading.Lock()
    _shared: ClassVar[dict[str, SharedPool]] = {}

    def __init__(
        self, account_key: str, base: httpx.URL, max_connections: int,
        transport: httpx.AsyncBaseTransport | None, headers: Mapping[str, str] | None = None,
    ) -> None:
        self.account_key = account_key
        self._headers = {"Accept": "application/json", "User-Agent": "refstudio",
                         **(headers or {})}
        self._base = base
        self._max_connections = max(1, max_connections)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None
        self._users = 0
        self._closed = False

    @classmethod
    def attach(
        cls, provider: str, key: str, base: httpx.URL, max_connections: int,
        transport: httpx.AsyncBaseTransport | None, headers: Mapping[str, str] | None = None,
    ) -> SharedPool:
        """The pool of ``provider``'s account (key + base URL), opened on first use; the
        account is named by a hash, so the key never shows. ``headers`` ride on every request
        of a pool opened here (never a secret: keys go per request)."""
        digest = hashlib.sha256(f"{key}\n{base}".encode()).hexdigest()[:16]
        account_key = f"{provider}:{digest}"
        with cls._lock:
            pool = None if transport is not None else cls._shared.get(account_key)
            if pool is None:
                pool = cls(account_key, base, max_connections, transport, headers)
                if transport is None:
                    cls._shared[account_key] = pool
            pool._users += 1
            return pool

    def client(self) -> httpx.AsyncClient:
        """The pool's client (on the network loop only)."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self._base,
                timeout=DEFAULT_TIMEOUT,
                limits=httpx.Limits(
                    max_connections=self._max_connections,
                    max_keepalive_connections=min(self._max_connections, 20),
                ),
                http1=True,
                http2=False,
                # Never follow redirects on API calls: a redirected POST could be re-sent
                # elsewhere.
                follow_redirects=False,
                headers=self._headers,
                transport=self._transport,
                verify=ssl_context(),
            )
        return self._client

    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_connections)
        return self._slots

    async def detach(self) -> None:
        """One user fewer; the last one closes the client (on the network loop)."""
        with self._lock:
            self._users -= 1
            last = self._users <= 0
            if last and self._shared.get(self.account_key) is self:
                del self._shared[self.account_key]
        if last:
            await self.aclose()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._client is not None:
                await self._client.aclose()

    @classmethod
    async def close_all(cls) -> None:
        """At exit: close the pools whose providers were never closed."""
        with cls._lock:
            pools = list(cls._shared.values())
            cls._shared.clear()
        for pool in pools:
            await pool.aclose()

    @classmethod
    def forget_all(cls) -> None:
        """In a forked child: the pools belong to the parent's network loop."""
        cls._lock = threading.Lock()
        cls._shared.clear()


at_close(SharedPool.close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=SharedPool.forget_all)


