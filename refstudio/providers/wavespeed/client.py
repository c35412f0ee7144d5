"""WaveSpeedAI provider for Runway Gen-4 Image, over one shared async httpx client.

Protocol: ``/work/shared/protocol/wavespeed.md``. The part that matters most is *paying safely*: a
submit is paid work, so :meth:`WaveSpeedProvider.submit` never retries and sorts every failure
into exactly one of

* :class:`~refstudio.errors.NotAcceptedError` — the server certainly did not take the task
  (connection never established, 429, 503, 408): the engine may resend;
* :class:`~refstudio.errors.AmbiguousSubmitError` — the body left and no clear answer came back
  (500/502/504, read timeout, dropped connection): the task may exist and be billed, so nobody
  resends without the user's say-so;
* :class:`~refstudio.errors.AuthenticationError` / :class:`~refstudio.errors.RequestRejectedError`
  — the server refused the request (fix the key or the request);
* :class:`~refstudio.errors.ProtocolError` — a success status whose body we cannot read (no task
  id): treat it like ambiguous, the task may exist.

Polls, uploads and downloads are free and raise :class:`~refstudio.errors.TransientError` for
anything worth retrying; the engine owns all retry loops and backoff.

Secrets: the API key is held in a :class:`~refstudio.providers.http.Secret` whose
``repr``/``str`` are masked, is sent only to the API host (never to the CDN hosts outputs live
on), and every message we build is scrubbed of it before it goes into an exception (the
plumbing all HTTP providers share: :mod:`refstudio.providers.http_provider`)."""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from refstudio.errors import (
    AmbiguousSubmitError,
    AuthenticationError,
    ConfigError,
    NotAcceptedError,
    ProtocolError,
    ProviderError,
    RequestRejectedError,
    TransientError,
)
from refstudio.models.spec import ModelSpec
from refstudio.providers.base import (
    SubmittedTask,
    TaskHistory,
    TaskRecord,
    TaskStateName,
    TaskStatus,
    UploadedImage,
)
from refstudio.providers.http import (
    DOWNLOAD_CHUNK,
    UPLOAD_TIMEOUT,
    SendTrace,
    parse_retry_after,
)
from refstudio.providers.http_provider import MAX_MESSAGE_CHARS, HttpProvider
from refstudio.providers.netloop import run_here

DEFAULT_BASE_URL = "https://api.wavespeed.ai"
ENV_API_KEY = "WAVESPEED_API_KEY"
ENV_BASE_URL = "WAVESPEED_BASE_URL"

#: Every model is served at its own path: ``/api/v3/runwayml/gen4-image`` and so on.
SUBMIT_PATH = "/api/v3/{model}"
RESULT_PATH = "/api/v3/predictions/{task_id}/result"
UPLOAD_PATH = "/api/v3/media/upload/binary"
HISTORY_PATH = "/api/v3/predictions"
#: The documented maximum page size of the history, and how many pages we read at most.
HISTORY_PAGE_SIZE = 100
HISTORY_MAX_PAGES = 50

_FAILED_STATES = frozenset({"failed", "cancelled", "canceled", "timeout", "deleted", "error"})
_CREATED_STATES = frozenset({"created", "pending", "queued", "waiting"})
_PROCESSING_STATES = frozenset({"processing", "running", "starting", "in_progress"})


class WaveSpeedProvider(HttpProvider):
    """WaveSpeedAI over HTTP: every ``wavespeed:`` model of the catalog (the model is the path
    of the submit URL; bodies come from each model's spec).

    Every instance for one account (key + base URL) shares one connection pool per process, on
    the process's network loop (:mod:`refstudio.providers.netloop`), whatever event loop or
    thread calls it; ``max_connections`` sizes that pool when it is first opened. Close each
    instance with :meth:`aclose` (or ``async with``). Construction fails with
    :class:`~refstudio.errors.AuthenticationError` when no key is given or set in the environment.
    ``transport`` replaces the network (tests pass an ``httpx.MockTransport``).
    ``simulated=True`` says ``base_url`` is the built-in simulator (a loopback address): its
    work is free, so the engine records it at no cost.
    """

    name: ClassVar[str] = "wavespeed"
    label: ClassVar[str] = "WaveSpeed"
    env_api_key: ClassVar[str] = ENV_API_KEY
    env_base_url: ClassVar[str] = ENV_BASE_URL
    default_base_url: ClassVar[str] = DEFAULT_BASE_URL

    @classmethod
    def key_configured(cls) -> bool:
        from refstudio.providers.config import effective_settings

        return bool(effective_settings(cls.name).api_key)

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: httpx.Timeout | None = None,
        max_connections: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
        simulated: bool = False,
    ) -> None:
        key = self._read_key(
            api_key, missing_hint=f"set the {ENV_API_KEY} environment variable "
            f"(export {ENV_API_KEY}=...), or run `refstudio config set-key`, or drop "
            "--provider wavespeed to use the free offline previews")
        self._connect(key, base_url, timeout=timeout, max_connections=max_connections,
                      transport=transport, simulated=simulated)
        self._poll_targets: dict[tuple[str, str | None], str | httpx.URL] = {}

    # ------------------------------------------------------------------ plumbing

    def _server_message(self, response: httpx.Response, payload: Any = None) -> str:
        """The server's own words: the envelope's ``message`` (or ``data.error``), else its text."""
        if isinstance(payload, Mapping):
            for candidate in (
                payload.get("message"),
                (payload.get("data") or {}).get("error")
                if isinstance(payload.get("data"), Mapping)
                else None,
            ):
                if isinstance(candidate, str) and candidate.strip():
                    return self._scrub(candidate.strip())[:MAX_MESSAGE_CHARS]
        try:
            text = response.text.strip()
        except (httpx.ResponseNotRead, UnicodeDecodeError):  # pragma: no cover - defensive
            text = ""
        return self._scrub(text)[:MAX_MESSAGE_CHARS] or response.reason_phrase or "no message"

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        """Parsed JSON body, or None when it is not JSON."""
        try:
            return response.json()
        except ValueError:
            return None

    @staticmethod
    def _envelope_code(payload: Any) -> int | None:
        """The envelope's ``code`` when it is an int other than 200 (an error in disguise)."""
        if isinstance(payload, Mapping):
            code = payload.get("code")
            if isinstance(code, int) and not isinstance(code, bool) and code != 200:
                return code
        return None

    async def account_summary(self) -> dict[str, Any]:
        """The account's balance in US dollars (``GET /api/v3/balance``; free)."""
        from refstudio.providers.wavespeed.account import balance

        return {"provider": "wavespeed", "base_url": self.base_url,
                "balance": await balance(self)}

    # ------------------------------------------------------------------ submit

    def _submit_error(self, code: int, message: str, retry_after: float | None) -> ProviderError:
        """Map a submit's failing status (HTTP or envelope) to the one right error."""
        where = f"WaveSpeed submit answered {code}: {message}"
        if code == 429:
            return NotAcceptedError(
                where,
                hint="rate limited; the task was not created",
                status_code=code,
                retry_after=retry_after,
            )
        if code in (503, 408):
            # 503: the front door turned us away; 408: the server gave up before reading the
            # whole request. Either way no task exists.
            return NotAcceptedError(where, status_code=code, retry_after=retry_after)
        if code in (401, 403):
            return AuthenticationError(
                where,
                hint=f"check the key in {ENV_API_KEY}",
                status_code=code,
            )
        if 400 <= code < 500:
            return RequestRejectedError(where, status_code=code, retry_after=retry_after)
        # 500/502/504 and anything else: the body reached the server, which may have created (and
        # will bill) the task before failing to answer.
        return AmbiguousSubmitError(
            where,
            hint="the task may have been created and billed; check before resending",
            status_code=code,
            retry_after=retry_after,
        )

    def _submit_failure(self, exc: httpx.HTTPError, sent: SendTrace) -> ProviderError:
        """Sort a submit that got no answer into "certainly not taken" or "may have been taken".

        What decides it is whether the whole request left this machine. httpcore hides that: a
        write that fails (the server closed or reset the connection first, e.g. an idle one it
        timed out) is swallowed, and the failure surfaces on the read that follows as a bare
        ``ReadError`` or a ``RemoteProtocolError``, the same exceptions as a connection lost
        after the server read the body. So the request is traced: unless the last byte of the
        body was handed to the network, the server never had a complete request to act on.
        """
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
            # No connection was ever established (refused, DNS, TLS handshake, unreachable, or no
            # free pool slot): the body never left this machine.
            return NotAcceptedError(
                f"could not reach WaveSpeed at {self.base_url}: {self._describe(exc)}",
                hint=f"check the network and {ENV_BASE_URL}",
            )
        if isinstance(exc, (httpx.ProxyError, httpx.UnsupportedProtocol,
                            httpx.LocalProtocolError)):
            # Fails before or while forming the request; the server never saw a complete one.
            return NotAcceptedError(
                f"could not send the request to WaveSpeed: {self._describe(exc)}"
            )
        if sent.started and not sent.body_sent:
            return NotAcceptedError(
                f"the connection to WaveSpeed failed before the request was fully sent "
                f"({self._describe(exc)}); the task was not created",
                hint=f"check the network and {ENV_BASE_URL}",
            )
        # ReadTimeout, ReadError, RemoteProtocolError (the server closed the socket without
        # answering) ... after the whole body left: the server may have created the task.
        return AmbiguousSubmitError(
            f"WaveSpeed submit got no usable answer: {self._describe(exc)}",
            hint="the task may have been created and billed; check before resending",
        )

    async def submit(
        self, body: dict[str, Any], *, model: ModelSpec | None = None
    ) -> SubmittedTask:
        """POST one generation request for ``model`` (None: the default model). Sent at most
        once: this method never retries."""
        spec = model or self.default_model()
        if not self.serves(spec):
            raise ConfigError(f"the WaveSpeed provider does not serve {spec.id}")
        return await run_here(self._submit(body, SUBMIT_PATH.format(model=spec.model)))

    async def _submit(self, body: dict[str, Any], path: str) -> SubmittedTask:
        response = await self._post_paid(path, body)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        payload = self._json(response)
        if not response.is_success:
            raise self._submit_error(
                response.status_code, self._server_message(response, payload), retry_after
            )
        code = self._envelope_code(payload)
        if code is not None:
            raise self._submit_error(code, self._server_message(response, payload), retry_after)

        data = payload.get("data") if isinstance(payload, Mapping) else None
        task_id = data.get("id") if isinstance(data, Mapping) else None
        if not isinstance(task_id, str) or not task_id:
            raise ProtocolError(
                f"WaveSpeed submit answered {response.status_code} without a task id: "
                f"{self._server_message(response)}",
                hint="the task may have been created and billed; check before resending",
                status_code=response.status_code,
            )
        assert isinstance(data, Mapping)  # it held the task id
        urls = data.get("urls")
        poll_url = urls.get("get") if isinstance(urls, Mapping) else None
        return SubmittedTask(
            task_id=task_id,
            poll_url=poll_url if isinstance(poll_url, str) and poll_url else None,
        )

    # ------------------------------------------------------------------ poll

    def _poll_target(self, task_id: str, poll_url: str | None) -> str | httpx.URL:
        """Where to poll: the submit's ``urls.get`` when it points at our API host, else the
        documented result path. A poll URL on another host is ignored, not followed, because
        following it would hand our key to that host."""
        key = (task_id, poll_url)
        target = self._poll_targets.get(key)
        if target is None:
            # Parsed once per task: URL joining costs ~0.7 ms and a task is polled many times.
            if len(self._poll_targets) >= 4096:
                self._poll_targets.clear()
            target = self._poll_targets[key] = self._resolve_poll_target(task_id, poll_url)
        return target

    def _resolve_poll_target(self, task_id: str, poll_url: str | None) -> str | httpx.URL:
        default = RESULT_PATH.format(task_id=quote(task_id, safe=""))
        if not poll_url:
            return default
        if poll_url.startswith(self.base_url + "/") and "@" not in poll_url:
            return poll_url  # plainly on our own origin: no need for a full parse
        try:
            url = self._base_url.join(poll_url)
        except httpx.InvalidURL:
            return default
        return url if self._same_origin(url) else default

    def _poll_error(
        self, code: int, message: str, retry_after: float | None, task_id: str
    ) -> ProviderError:
        where = f"WaveSpeed poll of task {task_id} answered {code}: {message}"
        if code in (401, 403):
            return AuthenticationError(
                where, hint=f"check the key in {ENV_API_KEY}", status_code=code
            )
        if code == 404:
            return RequestRejectedError(
                f"unknown task {task_id} (WaveSpeed answered 404: {message})", status_code=code
            )
        if code in (408, 429) or code >= 500:
            return TransientError(where, status_code=code, retry_after=retry_after)
        if 400 <= code < 500:
            return RequestRejectedError(where, status_code=code, retry_after=retry_after)
        return ProtocolError(where, status_code=code)

    async def fetch_status(self, task_id: str, poll_url: str | None = None) -> TaskStatus:
        """GET the task's state once. Free; the engine retries on TransientError."""
        return await run_here(self._fetch_status(task_id, poll_url))

    async def _fetch_status(self, task_id: str, poll_url: str | None) -> TaskStatus:
        response = await self._free_request(
            "GET", self._poll_target(task_id, poll_url), f"poll of task {task_id}")
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        payload = self._json(response)
        if not response.is_success:
            raise self._poll_error(
                response.status_code, self._server_message(response, payload), retry_after, task_id
            )
        code = self._envelope_code(payload)
        if code is not None:
            raise self._poll_error(
                code, self._server_message(response, payload), retry_after, task_id
            )
        data = payload.get("data") if isinstance(payload, Mapping) else None
        if not isinstance(data, Mapping):
            # A 200 that is not our envelope is most likely a proxy or CDN hiccup: poll again.
            raise TransientError(
                f"WaveSpeed poll of task {task_id} answered {response.status_code} without data: "
                f"{self._server_message(response)}",
                status_code=response.status_code,
            )
        return self._parse_status(task_id, data)

    @staticmethod
    def _parse_state(raw_state: str) -> TaskStateName:
        raw_state = raw_state.strip().lower()
        if raw_state == "completed":
            return "completed"
        if raw_state in _FAILED_STATES:
            return "failed"
        if raw_state in _CREATED_STATES:
            return "created"
        # "processing", and any state name we do not know: an unknown name is not a reason to
        # give up on a paid task; keep polling and let the engine's deadline decide.
        return "processing"

    def _parse_status(self, task_id: str, data: Mapping[str, Any]) -> TaskStatus:
        """Turn a result ``data`` object into a :class:`TaskStatus`."""
        raw_state = str(data.get("status") or "").strip().lower()
        error = data.get("error")
        error_text = self._scrub(error.strip()) if isinstance(error, str) else ""

        state = self._parse_state(raw_state)
        if state == "failed":
            if raw_state != "failed":
                # Keep which terminal state it was: "cancelled" reads differently from a failure.
                error_text = f"task {raw_state}" + (f": {error_text}" if error_text else "")
            error_text = error_text or "task failed (no reason given)"

        outputs_raw = data.get("outputs") or []
        if not isinstance(outputs_raw, list) or not all(isinstance(o, str) for o in outputs_raw):
            raise ProtocolError(f"WaveSpeed task {task_id}: outputs is not a list of strings")
        outputs = tuple(o.strip() for o in outputs_raw)
        kinds = {_is_url(o) for o in outputs}
        if len(kinds) > 1:
            raise ProtocolError(f"WaveSpeed task {task_id}: outputs mix URLs and base64 data")
        # The poll cannot tell us whether the body asked for base64, so decide by content.
        outputs_are_base64 = kinds == {False}

        if state == "completed" and not outputs:
            # Seen as a race on some servers: the state flips before outputs are attached.
            # Polling is free, so ask again rather than store a completed-but-empty generation.
            raise TransientError(f"WaveSpeed task {task_id} completed without outputs yet")

        nsfw_raw = data.get("has_nsfw_contents")
        nsfw = tuple(bool(x) for x in nsfw_raw) if isinstance(nsfw_raw, list) else ()

        inference_ms: int | None = None
        timings = data.get("timings")
        if isinstance(timings, Mapping):
            inference = timings.get("inference")
            if isinstance(inference, (int, float)) and not isinstance(inference, bool):
                inference_ms = round(inference)

        return TaskStatus(
            task_id=str(data.get("id") or task_id),
            state=state,
            outputs=outputs,
            outputs_are_base64=outputs_are_base64,
            nsfw=nsfw,
            error=error_text if state == "failed" else "",
            inference_ms=inference_ms,
            raw=dict(data),
        )

    # ------------------------------------------------------------------ history

    supports_history: ClassVar[bool] = True

    async def task_history(
        self, *, model: str, since: datetime, until: datetime, max_pages: int = HISTORY_MAX_PAGES
    ) -> TaskHistory:
        """Page through ``POST /api/v3/predictions`` for ``model`` in [since, until).

        Free, so it raises :class:`TransientError` for anything worth asking again. The result
        says whether it is complete: every page read, and as many distinct tasks as the
        server's ``total`` (when it gives one). New tasks arriving while we page push older
        ones down (seen twice, harmless); a page we could not read makes it incomplete.
        """
        tasks: dict[str, TaskRecord] = {}
        seen: set[str] = set()
        total: int | None = None
        offsets: list[tuple[float, float, float]] = []
        page = 1
        complete, reason = True, ""
        while True:
            if page > max_pages:
                complete, reason = False, (
                    f"more than {max_pages * HISTORY_PAGE_SIZE} tasks in the window; "
                    "refstudio read no further")
                break
            query = {"page": page, "page_size": HISTORY_PAGE_SIZE, "model": model,
                     "created_after": _iso_ms(since, up=False),
                     "created_before": _iso_ms(until, up=True)}
            data, date = await run_here(self._history_page(query))
            if date is not None:
                offsets.append(date)
            items = data.get("items")
            if not isinstance(items, list):
                raise ProtocolError("WaveSpeed history answered without an items list")
            announced = data.get("total")
            if isinstance(announced, int) and not isinstance(announced, bool):
                total = announced
            for item in items:
                record = self._history_item(item)
                seen.add(record.task_id)
                if record.model == model:
                    tasks[record.task_id] = record
            if len(items) < HISTORY_PAGE_SIZE:
                break
            if total is not None and page * HISTORY_PAGE_SIZE >= total:
                break
            page += 1
        if complete and total is not None and len(seen) < total:
            complete, reason = False, (
                f"the history announced {total} tasks but listed {len(seen)}")
        offset, error = _clock_offset(offsets)
        server_now = (None if offset is None
                      else datetime.fromtimestamp(time.time() + offset, timezone.utc))
        return TaskHistory(
            tasks=tuple(tasks.values()), since=since, until=until, complete=complete,
            reason=reason, server_now=server_now, clock_offset=offset, clock_error=error,
        )

    async def read_api(self, method: str, path: str, body: Any = None) -> Any:
        """One free call to the account API (catalog, balance, price quote): its ``data``.

        Raises AuthenticationError (401/403), TransientError (network, 408/429/5xx; worth
        asking again), RequestRejectedError (other 4xx, e.g. an endpoint this server lacks).
        """
        return await run_here(self._read_api(method, path, body))

    async def _read_api(self, method: str, path: str, body: Any) -> Any:
        response = await self._free_request(method, path, path, json=body)
        payload = self._json(response)
        code = response.status_code if not response.is_success else self._envelope_code(payload)
        if code is not None:
            message = f"WaveSpeed {path} answered {code}: {self._server_message(response, payload)}"
            if code in (401, 403):
                raise AuthenticationError(message, hint=f"check the key in {ENV_API_KEY}",
                                          status_code=code)
            if code in (408, 429) or code >= 500:
                raise TransientError(message, status_code=code)
            raise RequestRejectedError(message, status_code=code)
        if not isinstance(payload, Mapping) or "data" not in payload:
            raise ProtocolError(f"WaveSpeed {path} answered without data")
        return payload["data"]

    async def _history_page(
        self, query: dict[str, Any]
    ) -> tuple[Mapping[str, Any], tuple[float, float, float] | None]:
        """One page: its ``data``, and from its ``Date`` header (server time, local time,
        ± local uncertainty)."""
        sent = time.time()
        response = await self._free_request("POST", HISTORY_PATH, "history", json=query)
        received = time.time()
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        payload = self._json(response)
        code = response.status_code if not response.is_success else self._envelope_code(payload)
        if code is not None:
            words = self._server_message(response, payload)
            message = f"WaveSpeed history answered {code}: {words}"
            if code in (401, 403):
                raise AuthenticationError(message, hint=f"check the key in {ENV_API_KEY}",
                                          status_code=code)
            if code in (408, 429) or code >= 500:
                raise TransientError(message, status_code=code, retry_after=retry_after)
            raise RequestRejectedError(message, status_code=code)
        data = payload.get("data") if isinstance(payload, Mapping) else None
        if not isinstance(data, Mapping):
            raise TransientError(f"WaveSpeed history answered {response.status_code} without data")
        date: tuple[float, float, float] | None = None
        header = response.headers.get("Date")
        if header:
            try:
                server = parsedate_to_datetime(header).timestamp()
                # The header has whole seconds and was written somewhere between send and receive.
                date = (server, (sent + received) / 2, (received - sent) / 2)
            except (TypeError, ValueError, IndexError):
                date = None
        return data, date

    def _history_item(self, item: Any) -> TaskRecord:
        if not isinstance(item, Mapping):
            raise ProtocolError("WaveSpeed history listed an item that is not an object")
        task_id, created = item.get("id"), item.get("created_at")
        if not isinstance(task_id, str) or not task_id or not isinstance(created, str):
            raise ProtocolError("WaveSpeed history listed a task without id or created_at")
        when = parse_time(created)
        if when is None:
            raise ProtocolError(f"WaveSpeed history: unreadable created_at {created!r}")
        urls = item.get("urls")
        poll_url = urls.get("get") if isinstance(urls, Mapping) else None
        raw_input = item.get("input")
        state = self._parse_state(str(item.get("status") or ""))
        return TaskRecord(
            task_id=task_id,
            model=str(item.get("model") or ""),
            created_at=when,
            state=state,
            poll_url=poll_url if isinstance(poll_url, str) and poll_url else None,
            input=dict(raw_input) if isinstance(raw_input, Mapping) else None,
        )

    # ------------------------------------------------------------------ upload

    async def upload(self, data: bytes, *, filename: str, content_type: str) -> UploadedImage:
        """POST the bytes as multipart field ``file``; return the URL to put in a body."""
        return await run_here(self._upload(data, filename, content_type))

    async def _upload(self, data: bytes, filename: str, content_type: str) -> UploadedImage:
        # Uploads are free: whatever happened in transport, trying again is harmless.
        response = await self._free_request("POST", UPLOAD_PATH, "upload", timeout=UPLOAD_TIMEOUT,
                                            files={"file": (filename, data, content_type)})
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        payload = self._json(response)
        code = response.status_code if not response.is_success else self._envelope_code(payload)
        if code is not None:
            message = f"WaveSpeed upload answered {code}: {self._server_message(response, payload)}"
            if code in (401, 403):
                raise AuthenticationError(
                    message, hint=f"check the key in {ENV_API_KEY}", status_code=code
                )
            if code in (408, 429) or code >= 500:
                raise TransientError(message, status_code=code, retry_after=retry_after)
            if 400 <= code < 500:
                raise RequestRejectedError(message, status_code=code)
            raise ProtocolError(message, status_code=code)

        body = payload.get("data") if isinstance(payload, Mapping) else None
        url = body.get("download_url") if isinstance(body, Mapping) else None
        if not isinstance(url, str) or not url:
            raise ProtocolError(
                f"WaveSpeed upload answered {response.status_code} without a download_url",
                status_code=response.status_code,
            )
        return UploadedImage(url=url, expires_at=None)

    # ------------------------------------------------------------------ download

    def _inline_output(self, output: str) -> list[bytes] | None:
        """A base64 output (anything but an http(s) URL), decoded in chunks."""
        return None if _is_url(output) else _decode_base64_chunks(output)

    def _download_refused(self, response: httpx.Response, where: str) -> TransientError:
        return TransientError(
            f"{where} answered {response.status_code}: {self._server_message(response)}",
            status_code=response.status_code,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )


def _iso_ms(when: datetime, *, up: bool) -> str:
    """ISO 8601 UTC with milliseconds, rounded outward so a window is never cut short."""
    when = when.astimezone(timezone.utc)
    micros = when.microsecond
    millis = micros // 1000
    if up and micros % 1000:
        millis += 1
    base = when.replace(microsecond=0) + timedelta(milliseconds=millis)
    return base.strftime("%Y-%m-%dT%H:%M:%S.") + f"{base.microsecond // 1000:03d}Z"


_TIME_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_time(text: str) -> datetime | None:
    """A provider timestamp (ISO 8601, any number of fraction digits: WaveSpeed sends
    nanoseconds) as an aware UTC datetime; None if unreadable. No zone means UTC."""
    match = _TIME_RE.match(text.strip())
    if match is None:
        return None
    head, fraction, zone = match.groups()
    micros = (fraction or ".0")[1:7].ljust(6, "0")
    if zone in (None, "Z"):
        zone = "+00:00"
    elif ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    try:
        parsed = datetime.fromisoformat(f"{head.replace(' ', 'T')}.{micros}{zone}")
    except ValueError:
        return None
    return parsed.astimezone(timezone.utc)


def _clock_offset(samples: list[tuple[float, float, float]]) -> tuple[float | None, float]:
    """Server minus local clock (seconds) from ``Date`` headers, and its uncertainty.

    A ``Date`` has whole seconds (truncated), so each sample says the server's clock was in
    [server, server + 1) at a local instant known to ± half the round trip. The best sample is
    the one with the shortest round trip.
    """
    if not samples:
        return None, 0.0
    server, local, half_rtt = min(samples, key=lambda s: s[2])
    return server + 0.5 - local, 0.5 + half_rtt


def _is_url(output: str) -> bool:
    """True for an http(s) URL; anything else (including ``data:`` URIs) is inline data."""
    head = output[:8].lower()
    return head.startswith("http://") or head.startswith("https://")


def _decode_base64_chunks(output: str, chunk_chars: int = 4 * DOWNLOAD_CHUNK) -> list[bytes]:
    """Decode a base64 output (an optional ``data:...;base64,`` prefix is tolerated) in slices.

    Slices are a multiple of 4 characters long so each decodes on its own; the whole payload is
    validated as it goes, so corrupt data fails loudly instead of storing a broken image.
    """
    text = output.strip()
    if text[:5].lower() == "data:":
        _, _, text = text.partition(",")
    text = "".join(text.split())  # line-wrapped base64 is still base64
    if not text:
        raise ProtocolError("WaveSpeed output is empty")
    # Tolerate missing padding, which some encoders drop.
    text += "=" * (-len(text) % 4)
    step = max(4, chunk_chars - chunk_chars % 4)
    chunks: list[bytes] = []
    try:
        for start in range(0, len(text), step):
            chunks.append(base64.b64decode(text[start : start + step], validate=True))
    except (binascii.Error, ValueError):
        raise ProtocolError("WaveSpeed output is neither a URL nor valid base64") from None
    return chunks
