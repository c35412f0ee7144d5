"""The HTTP face of the simulated Runway API: ``/v1/...`` routes on the shared handler.

Runway answers errors as ``{"error": "..."}`` (no envelope), requires ``X-Runway-Version`` on
every API call, and answers a create over the daily limit with 429. Fault injection follows
the WaveSpeed side's options: staged ``submit_faults`` and the ``rate_5xx``/``drop_rate`` dice
(half of the 5xx before the task exists, half after it: the ambiguous case), ``rate_429``/
``rate_5xx`` on polls, and failure codes through ``runway_task_faults``/``fail_rate``.
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any

from refstudio.models import runway_api
from refstudio.simulator.multipart import MultipartError, parse_multipart
from refstudio.simulator.runway.book import RunwayBook
from refstudio.simulator.runway.validate import ValidationError, validate_create

if TYPE_CHECKING:
    from refstudio.simulator.handler import SimHandler

__all__ = ["ROUTES", "RunwayRoutes"]

_TASK_RE = re.compile(r"^/v1/tasks/([0-9A-Za-z_-]+)$")
_FORM_RE = re.compile(r"^/_sim/runway-upload/([0-9a-f]+)$")
#: Formats Runway takes for images (no GIF).
_IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


class RunwayRoutes:
    """One request's Runway answers; ``handler`` is the connection's :class:`SimHandler`."""

    def __init__(self, handler: SimHandler, book: RunwayBook) -> None:
        self.h = handler
        self.book = book
        self.state = book.state

    # ---- plumbing -------------------------------------------------------------------------
    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.h._send(status, json.dumps({"error": message}).encode(), "application/json",
                     headers)

    def _ok(self, data: dict[str, Any], status: int = 200) -> None:
        self.h._send(status, json.dumps(data).encode(), "application/json")

    def _api_checks(self) -> bool:
        """Auth and the version header, as every ``/v1`` call needs; answers when they fail."""
        if not self.h._authorized():
            self._error(401, "Unauthorized: invalid or missing API key")
            return False
        version = self.h.headers.get("X-Runway-Version")
        if version != runway_api.API_VERSION:
            self._error(400, f"X-Runway-Version header must be {runway_api.API_VERSION!r}, "
                        f"got {version!r}")
            return False
        return True

    # ---- create ---------------------------------------------------------------------------
    def create(self, body: bytes) -> None:
        state, cfg = self.state, self.state.config
        state.count("submits_received")
        if not self._api_checks():
            state.count("submits_rejected_401")
            return
        staged = state.next_submit_fault()
        if staged in ("429", "503", "502_lost", "drop_lost"):
            self._staged(staged)
            return
        fault_5xx = staged is None and state.chance(cfg.rate_5xx)
        if fault_5xx and state.chance(0.5):
            state.count("submits_5xx_not_accepted")
            self._error(503, "Service temporarily unavailable")
            return
        try:
            params = validate_create(json.loads(body or b"null"),
                                     known_upload=self.book.known_upload)
        except (json.JSONDecodeError, ValidationError) as exc:
            state.count("submits_rejected_400")
            self._error(400, f"Invalid request: {exc}")
            return
        model: runway_api.RunwayModel = params["model"]
        wait = self.book.daily_full(model, time.time())
        if wait is not None:
            state.count("submits_rejected_daily_limit")
            self._error(429, f"You have exceeded the daily generation limit for {model.api_name}",
                        headers={"Retry-After": str(round(wait))})
            return
        if self.book.credits < runway_api.credits_for(model, params["ratio"]):
            state.count("submits_rejected_400")
            self._error(400, "You do not have enough credits to run this task.")
            return
        if staged == "500_after" or fault_5xx:
            self.book.create(params, outcome="5xx")
            self._error(500 if staged else state.choice((500, 502, 504)),
                        "Internal error while creating the task")
            return
        if staged == "drop_after" or state.chance(cfg.drop_rate):
            self.book.create(params, outcome="dropped")
            from refstudio.simulator.handler import _Drop

            raise _Drop
        task = self.book.create(params)
        self._ok({"id": task.id})

    def _staged(self, fault: str) -> None:
        state = self.state
        if fault == "429":
            state.count("submits_rejected_daily_limit")
            self._error(429, "You have exceeded the daily generation limit",
                        headers={"Retry-After": "3600"})
        elif fault == "503":
            state.count("submits_5xx_not_accepted")
            self._error(503, "Service temporarily unavailable")
        else:
            state.count("submits_lost")
            if fault == "drop_lost":
                from refstudio.simulator.handler import _Drop

                raise _Drop
            self._error(502, "Bad gateway")

    # ---- tasks ----------------------------------------------------------------------------
    def task(self, body: bytes, task_id: str) -> None:
        state, cfg = self.state, self.state.config
        state.count("polls")
        if not self._api_checks():
            return
        task = state.get_task(task_id)
        if task is not None:
            state.note_poll(task)
        if state.chance(cfg.rate_429):
            state.count("polls_faulted")
            self._error(429, "Too many requests", headers={"Retry-After": f"{cfg.retry_after:g}"})
            return
        if state.chance(cfg.rate_5xx):
            state.count("polls_faulted")
            self._error(state.choice((500, 502, 503)), "Internal server error")
            return
        if task is None or task.protocol != "runway":
            self._error(404, f"Task {task_id} not found")
            return
        self._ok(self.book.task_json(task))

    def cancel(self, body: bytes, task_id: str) -> None:
        self.state.count("cancels")
        if not self._api_checks():
            return
        task = self.state.get_task(task_id)
        if task is None or task.protocol != "runway":
            self._error(404, f"Task {task_id} not found")
            return
        self.book.cancel(task)
        self.h._send(204, b"", "text/plain")

    # ---- uploads --------------------------------------------------------------------------
    def upload(self, body: bytes) -> None:
        if not self._api_checks():
            return
        try:
            req = json.loads(body or b"null")
        except json.JSONDecodeError:
            self._error(400, "request body is not valid JSON")
            return
        if not isinstance(req, dict) or set(req) - {"filename", "type"}:
            self._error(400, "expected {filename, type: 'ephemeral'}")
            return
        filename, kind = req.get("filename"), req.get("type")
        if kind != "ephemeral":
            self._error(400, "type: must be 'ephemeral'")
            return
        ext = filename.rsplit(".", 1)[-1].lower() if isinstance(filename, str) else ""
        if not isinstance(filename, str) or ext not in ("png", "jpg", "jpeg", "webp"):
            self._error(400, "filename: a .png, .jpg, .jpeg or .webp name is required")
            return
        token, uri, fields = self.book.open_upload(filename)
        self._ok({"uploadUrl": f"{self.state.base_url}/_sim/runway-upload/{token}",
                  "fields": fields, "runwayUri": uri})

    def form_post(self, body: bytes, token: str) -> None:
        """The presigned form POST: every issued field unchanged, then the file (S3's rule)."""
        from refstudio.simulator.handler import sniff_image

        ticket = self.book.ticket(token)
        if ticket is None:
            self._error(403, "unknown or used upload URL")
            return
        _, fields = ticket
        try:
            parts = parse_multipart(self.h.headers.get("Content-Type", ""), body)
        except MultipartError as exc:
            self._error(400, f"bad multipart body: {exc}")
            return
        got = {p.name: p.data.decode("utf-8", "replace") for p in parts if p.name != "file"}
        if any(got.get(k) != v for k, v in fields.items()):
            self._error(403, "the form's fields do not match the presigned policy")
            return
        if not parts or parts[-1].name != "file":
            self._error(400, "the file must be the last field of the form")
            return
        kind = sniff_image(parts[-1].data)
        ctype = _IMAGE_TYPES.get({"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}.get(
            kind[0], "") if kind else "")
        if ctype is None:
            self._error(400, "the file is not a PNG, JPEG or WebP image")
            return
        self.book.complete_upload(token, parts[-1].data, ctype)
        self.h._send(204, b"", "text/plain")

    # ---- organisation ---------------------------------------------------------------------
    def organization(self, body: bytes) -> None:
        if self._api_checks():
            self._ok(self.book.organization())


#: (method, path or pattern, RunwayRoutes method name), merged into the handler's routes.
ROUTES: list[tuple[str, re.Pattern[str] | str, str]] = [
    ("POST", "/v1/text_to_image", "create"),
    ("GET", _TASK_RE, "task"),
    ("DELETE", _TASK_RE, "cancel"),
    ("POST", "/v1/uploads", "upload"),
    ("POST", _FORM_RE, "form_post"),
    ("GET", "/v1/organization", "organization"),
]
