"""Runway's own API as a provider: ``/v1/text_to_image``, tasks, uploads, the organisation.

Facts: ``shared/protocol/runway.md``. Paying safely, Runway's way:

* a create is sent once. Unlike the official SDK (two blind retries on 5xx and timeouts, no
  idempotency key), a 500/502/504, a timeout or a dropped connection after the body left is
  :class:`~refstudio.errors.AmbiguousSubmitError`: the task may exist and be billed. Only a
  refusal before the body left, a 503 or a 408 is :class:`~refstudio.errors.NotAcceptedError`;
* a 429 on a create means the organisation's **daily** limit for that model is spent:
  :class:`~refstudio.errors.LimitReachedError`, which stops the batch (a retry in seconds
  cannot help) and says when the window frees;
* THROTTLED is a task accepted and waiting for a slot: shown as queued, never an error;
  FAILED keeps its ``failureCode`` with what it means (:mod:`.failures`).

The key goes only to the API origin (never to the presigned upload host or the output CDN),
is masked in ``repr`` and scrubbed from every message. Runway keeps no task list, so a Runway
``unknown`` cannot be settled from its records (``supports_history`` is False).
"""

from __future__ import annotations

import base64
import collections
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from refstudio.errors import (
    AmbiguousSubmitError,
    AuthenticationError,
    BudgetExceededError,
    ConfigError,
    ImageError,
    LimitReachedError,
    NotAcceptedError,
    ProtocolError,
    ProviderError,
    RequestRejectedError,
    TransientError,
)
from refstudio.models import runway_api
from refstudio.models.runway_api import check_tags
from refstudio.models.spec import ModelSpec
from refstudio.providers.base import SubmittedTask, TaskStatus, UploadedImage
from refstudio.providers.http import UPLOAD_TIMEOUT, SendTrace, parse_retry_after
from refstudio.providers.http_provider import MAX_MESSAGE_CHARS, HttpProvider
from refstudio.providers.netloop import run_here
from refstudio.providers.runway import failures
from refstudio.providers.runway.organization import Organization, parse_organization

__all__ = ["RunwayProvider"]

DEFAULT_BASE_URL = "https://api.dev.runwayml.com"
ENV_API_KEY = "RUNWAYML_API_SECRET"
ENV_BASE_URL = "RUNWAYML_BASE_URL"

CREATE_PATH = "/v1/text_to_image"
TASK_PATH = "/v1/tasks/{task_id}"
UPLOAD_PATH = "/v1/uploads"
ORGANIZATION_PATH = "/v1/organization"

#: Runway keeps an ephemeral upload about 24 hours; refstudio reuses one for 23 (a request
#: may wait a while as THROTTLED before Runway reads its images).
UPLOAD_LIFETIME = timedelta(hours=23)
#: Seconds one organisation read answers the checks of a batch (tier, credits, usage).
ORGANIZATION_TTL = 10.0


class RunwayProvider(HttpProvider):
    """Runway's image models over HTTP (``gen4_image``, ``gen4_image_turbo``,
    ``gemini_2.5_flash``); the model is the body's ``model`` field.

    ``uploads="runway"`` (the default) sends reference images through ``/v1/uploads``;
    ``uploads="data"`` is the documented fallback for networks that cannot reach Runway's
    upload host: images go inline as ``data:`` URIs (at most 5 MB each). ``simulated=True`` says
    ``base_url`` is the built-in simulator (loopback only): its work is free.
    """

    name: ClassVar[str] = "runway"
    label: ClassVar[str] = "Runway"
    env_api_key: ClassVar[str] = ENV_API_KEY
    env_base_url: ClassVar[str] = ENV_BASE_URL
    default_base_url: ClassVar[str] = DEFAULT_BASE_URL
    #: The model a tier question names when the caller names none.
    DEFAULT_MODEL: ClassVar[str] = "runway:gen4_image"
    #: Runway has no list of past tasks: an ``unknown`` cannot be looked up.
    supports_history: ClassVar[bool] = False
    supports_cancel: ClassVar[bool] = True
    #: Runway's tasks take 8 s and more; noticing them within 0.3 s on average (the SDK: ~3 s)
    #: costs about 3 polls a task, where the automatic 0.18 s would cost 5 (bench_runway.py).
    default_poll_lag: ClassVar[float | None] = 0.3

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: httpx.Timeout | None = None,
        max_connections: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
        simulated: bool = False,
        uploads: str = "runway",
        other_keys: Mapping[str, str | None] | None = None,
    ) -> None:
        key = self._read_key(
            api_key, missing_hint=f"set {ENV_API_KEY} (export {ENV_API_KEY}=...), or run "
            "`refstudio config set-key --provider runway`")
        for provider, other in (other_keys or {}).items():
            if other and other.strip() == key:
                # Sending it would only earn a 401 and show another service's key to Runway.
                raise AuthenticationError(
                    f"the Runway key is the {provider} key; Runway needs its own",
                    hint=f"create one at dev.runwayml.com and set {ENV_API_KEY}")
        if uploads not in ("runway", "data"):
            raise ConfigError(f"uploads must be 'runway' or 'data', not {uploads!r}")
        self._uploads = uploads
        self._org: tuple[float, Organization] | None = None
        self._connect(key, base_url, timeout=timeout, max_connections=max_connections,
                      transport=transport, simulated=simulated,
                      headers={"X-Runway-Version": runway_api.API_VERSION})

    # ------------------------------------------------------------------ plumbing

    def _message(self, response: httpx.Response) -> str:
        """Runway's own words: ``{"error": ...}``, else the body's text."""
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, Mapping):
            for key in ("error", "message"):
                if isinstance(payload.get(key), str) and payload[key].strip():
                    return self._scrub(payload[key].strip())[:MAX_MESSAGE_CHARS]
        text = response.text.strip()
        return self._scrub(text)[:MAX_MESSAGE_CHARS] or response.reason_phrase or "no message"

    def _free_call_error(self, response: httpx.Response, what: str) -> ProviderError:
        code = response.status_code
        message = f"Runway {what} answered {code}: {self._message(response)}"
        if code in (401, 403):
            return AuthenticationError(message, hint=f"check the key in {ENV_API_KEY}",
                                       status_code=code)
        if code in (408, 429) or code >= 500:
            return TransientError(message, status_code=code,
                                  retry_after=parse_retry_after(response.headers.get("Retry-After")))
        return RequestRejectedError(message, status_code=code)

    # ------------------------------------------------------------------ submit

    async def submit(
        self, body: dict[str, Any], *, model: ModelSpec | None = None
    ) -> SubmittedTask:
        """POST one create (the body names its model). Sent at most once: never retried."""
        spec = model or self.default_model()
        if not self.serves(spec):
            raise ConfigError(f"the Runway provider does not serve {spec.id}")
        return await run_here(self._submit(body))

    async def _submit(self, body: dict[str, Any]) -> SubmittedTask:
        response = await self._post_paid(CREATE_PATH, body)
        if not response.is_success:
            raise self._submit_error(response, str(body.get("model") or ""))
        try:
            payload = response.json()
        except ValueError:
            payload = None
        task_id = payload.get("id") if isinstance(payload, Mapping) else None
        if not isinstance(task_id, str) or not task_id:
            raise ProtocolError(
                f"Runway create answered {response.status_code} without a task id",
                hint="the task may have been created and billed; check before resending",
                status_code=response.status_code)
        return SubmittedTask(task_id=task_id)

    def _submit_failure(self, exc: httpx.HTTPError, sent: SendTrace) -> ProviderError:
        """No answer: "certainly not taken" only when the body never fully left."""
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout,
                            httpx.ProxyError, httpx.UnsupportedProtocol,
                            httpx.LocalProtocolError)) or (sent.started and not sent.body_sent):
            return NotAcceptedError(
                f"could not send the request to Runway at {self.base_url}: "
                f"{self._describe(exc)}; the task was not created",
                hint=f"check the network and {ENV_BASE_URL}")
        return AmbiguousSubmitError(
            f"Runway create got no usable answer: {self._describe(exc)}",
            hint="the task may have been created and billed; Runway keeps no task list to "
            "check, so it is not resent")

    def _submit_error(self, response: httpx.Response, model: str) -> ProviderError:
        code = response.status_code
        words = self._message(response)
        where = f"Runway create answered {code}: {words}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if code == 429:
            return LimitReachedError(
                f"Runway's daily limit for {model or 'this model'} is spent ({words})",
                hint=_window_hint(retry_after), status_code=code, retry_after=retry_after)
        if code in (503, 408):
            return NotAcceptedError(where, status_code=code, retry_after=retry_after)
        if code in (401, 403):
            return AuthenticationError(
                where, status_code=code,
                hint=f"check {ENV_API_KEY}: Runway keys come from dev.runwayml.com (a WaveSpeed "
                "key does not work here)")
        if 400 <= code < 500:
            return RequestRejectedError(where, status_code=code)
        return AmbiguousSubmitError(
            where, status_code=code,
            hint="the task may have been created and billed; Runway keeps no task list to "
            "check, so it is not resent")

    # ------------------------------------------------------------------ tasks

    async def fetch_status(self, task_id: str, poll_url: str | None = None) -> TaskStatus:
        return await run_here(self._fetch_status(task_id))

    async def _fetch_status(self, task_id: str) -> TaskStatus:
        what = f"poll of task {task_id}"
        response = await self._task_request("GET", task_id, what)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, Mapping) or not isinstance(data.get("status"), str):
            raise TransientError(f"Runway {what} answered without a status")
        return parse_task(task_id, data)

    async def cancel(self, task_id: str) -> None:
        """``DELETE /v1/tasks/{id}``: cancel a running task (a finished one is deleted)."""
        await run_here(self._cancel(task_id))

    async def _cancel(self, task_id: str) -> None:
        await self._task_request("DELETE", task_id, f"cancel of task {task_id}")

    async def _task_request(self, method: str, task_id: str, what: str) -> httpx.Response:
        """A free call on one task: an unknown task is RequestRejectedError, any other failing
        answer the free-call error."""
        response = await self._free_request(
            method, TASK_PATH.format(task_id=quote(task_id, safe="")), what)
        if response.status_code == 404:
            raise RequestRejectedError(f"unknown Runway task {task_id} (404)", status_code=404)
        if not response.is_success:
            raise self._free_call_error(response, what)
        return response

    # ------------------------------------------------------------------ account

    async def organization(self) -> Organization:
        """Credits, the tier's limits and today's usage per model (free)."""
        return await run_here(self._organization())

    async def _organization(self) -> Organization:
        response = await self._free_request("GET", ORGANIZATION_PATH, "organization")
        if not response.is_success:
            raise self._free_call_error(response, "organization")
        try:
            return parse_organization(response.json())
        except ValueError:
            raise ProtocolError("Runway's organization answer is not JSON") from None

    async def _recent_organization(self) -> Organization:
        """One organisation read serves a batch's checks for a few seconds (one GET per
        batch, not one per question)."""
        now = time.monotonic()
        if self._org is None or now - self._org[0] > ORGANIZATION_TTL:
            self._org = (now, await self.organization())
        return self._org[1]

    def _check_images(self, images: Sequence[Mapping[str, Any]]) -> None:
        """The tag rule, and with ``uploads="data"`` the 5 MB data-URI limit, checked from
        each image's name and size before anything is recorded."""
        check_tags([str(i.get("tag")) for i in images])
        if self._uploads != "data":
            return
        for image in images:
            size = image.get("bytes")
            # base64 makes 4 characters of 3 bytes; the prefix is a few dozen more.
            if isinstance(size, int) and 4 * -(-size // 3) + 32 > runway_api.DATA_URI_MAX:
                raise ImageError(
                    f"reference @{image.get('tag')} would be {4 * -(-size // 3) / 1e6:.1f} MB "
                    "as a data URI; Runway takes at most 5 MB that way; nothing was sent",
                    hint="leave REFSTUDIO_RUNWAY_UPLOADS unset to use Runway uploads, or use a "
                    "smaller image")

    async def account_summary(self) -> dict[str, Any]:
        org = await self.organization()
        return {"provider": "runway", "base_url": self.base_url, **org.to_dict()}

    async def concurrency_limit(self, model: str | None = None) -> int | None:
        """The tier's concurrent generations for ``model`` (more would wait as THROTTLED)."""
        org = await self._recent_organization()
        return org.limits(_api_name(model or self.DEFAULT_MODEL)).max_concurrent

    async def preflight(self, requests: Sequence[Mapping[str, Any]]) -> None:
        """Refuse a batch that needs more credits than the balance, or more generations of a
        model than today's remain: nothing is recorded or sent."""
        if not requests:
            return
        for params in requests:
            self._check_images(params.get("images") or ())
        org = await self._recent_organization()
        credits = 0
        per_model: collections.Counter[str] = collections.Counter()
        for params in requests:
            name = _api_name(str(params.get("model") or self.DEFAULT_MODEL))
            model = runway_api.get(name)
            if model is None:
                continue
            ratio = params.get("ratio") or model.ratio_for(
                str(params.get("aspect_ratio")), str(params.get("resolution")))
            credits += runway_api.credits_for(model, str(ratio)) if ratio else max(model.credits)
            per_model[name] += 1
        if credits > org.credit_balance:
            raise BudgetExceededError(
                f"this batch needs {credits} Runway credits and the organisation has "
                f"{org.credit_balance}; nothing was sent",
                hint="buy credits at dev.runwayml.com, or send fewer (`refstudio account` shows "
                "the balance)")
        for name, count in sorted(per_model.items()):
            limits = org.limits(name)
            left = limits.remaining_today
            if left is not None and count > left:
                raise LimitReachedError(
                    f"this batch needs {count} {name} generations and Runway allows {left} more "
                    f"today ({limits.used_today} of {limits.max_daily} used); nothing was sent",
                    hint=(f"send at most {left} now (-n {left})" if left else
                          "Runway counts a rolling day: the limit frees within 24 h"))

    # ------------------------------------------------------------------ upload

    async def upload(self, data: bytes, *, filename: str, content_type: str) -> UploadedImage:
        """A ``runway://`` URI for the image (ticket, then the presigned form POST), valid
        about 24 h; or, with ``uploads="data"``, a ``data:`` URI (at most 5 MB)."""
        if self._uploads == "data":
            from refstudio.models.runway_api import check_reference_uri

            uri = f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"
            check_reference_uri(uri, filename)
            return UploadedImage(url=uri, expires_at=None)
        return await run_here(self._upload(data, filename, content_type))

    async def _upload(self, data: bytes, filename: str, content_type: str) -> UploadedImage:
        started = datetime.now(timezone.utc)
        response = await self._free_request("POST", UPLOAD_PATH, "upload",
                                            json={"filename": filename, "type": "ephemeral"})
        if not response.is_success:
            raise self._free_call_error(response, "upload")
        try:
            ticket = response.json()
        except ValueError:
            ticket = None
        if not (isinstance(ticket, Mapping) and isinstance(ticket.get("uploadUrl"), str)
                and isinstance(ticket.get("runwayUri"), str)
                and isinstance(ticket.get("fields"), Mapping)):
            raise ProtocolError("Runway's upload answer lacks uploadUrl, fields or runwayUri")
        try:
            target = httpx.URL(ticket["uploadUrl"])
        except httpx.InvalidURL:
            raise ProtocolError("Runway's upload URL is not a URL") from None
        # A presigned form: its own fields unchanged, the file last; no key (the signature in
        # the fields is the credential, and the host is a storage service, not Runway's API).
        headers = self._auth() if self._same_origin(target) else {}
        posted = await self._free_request(
            "POST", target, "upload", headers=headers, timeout=UPLOAD_TIMEOUT,
            data={str(k): str(v) for k, v in ticket["fields"].items()},
            files={"file": (filename, data, content_type)})
        if not posted.is_success:
            raise self._free_call_error(posted, "upload form")
        return UploadedImage(url=ticket["runwayUri"], expires_at=started + UPLOAD_LIFETIME)


def _api_name(model: str) -> str:
    """``runway:gen4_image`` or ``gen4_image`` -> ``gen4_image``."""
    provider, sep, name = model.partition(":")
    return name if sep and provider == "runway" else model


def parse_task(task_id: str, data: Mapping[str, Any]) -> TaskStatus:
    """A Runway task as a :class:`TaskStatus`: PENDING and THROTTLED are ``created`` (queued,
    not an error), RUNNING is ``processing`` (``progress`` in ``raw``), SUCCEEDED is
    ``completed``, FAILED and CANCELLED are ``failed`` with the code explained."""
    status = str(data.get("status")).upper()
    raw = dict(data)
    if status == "SUCCEEDED":
        output = data.get("output")
        if not isinstance(output, list) or not all(isinstance(o, str) for o in output):
            raise ProtocolError(f"Runway task {task_id}: output is not a list of URLs")
        if not output:
            raise TransientError(f"Runway task {task_id} succeeded without outputs yet")
        return TaskStatus(task_id, "completed", outputs=tuple(output), raw=raw)
    if status == "FAILED":
        code = data.get("failureCode")
        failure = data.get("failure")
        return TaskStatus(task_id, "failed", raw=raw, error=failures.explain(
            code if isinstance(code, str) else None, failure if isinstance(failure, str) else ""))
    if status == "CANCELLED":
        return TaskStatus(task_id, "failed", raw=raw,
                          error="cancelled at Runway (`refstudio cancel`, or deleted there)")
    if status == "RUNNING":
        progress = data.get("progress")
        shown = (f"running {progress:.0%}" if isinstance(progress, (int, float))
                 and not isinstance(progress, bool) else "running")
        return TaskStatus(task_id, "processing", raw=raw, detail=shown)
    # PENDING, THROTTLED (accepted, waiting for a slot of the tier: not an error), and any
    # state we do not know: keep waiting on a paid task.
    return TaskStatus(task_id, "created", raw=raw,
                      detail="queued (THROTTLED)" if status == "THROTTLED" else "queued")


def _window_hint(retry_after: float | None) -> str:
    """When the daily window frees, as well as can be said."""
    rest = "the rest of the batch was not sent; `refstudio resume` sends it then"
    if retry_after is not None and retry_after > 0:
        when = datetime.fromtimestamp(time.time() + retry_after, timezone.utc)
        return f"Runway frees a generation at about {when:%Y-%m-%d %H:%M} UTC; {rest}"
    return f"Runway counts a rolling day: the limit frees within 24 h; {rest}"

