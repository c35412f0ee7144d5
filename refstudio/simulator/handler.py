"""The HTTP face of the simulator: routing, auth, fault injection, bodies in and out."""

from __future__ import annotations

import contextlib
import io
import json
import mimetypes
import re
import sys
import time
import warnings
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from PIL import Image

from refstudio.models import catalog
from refstudio.models.spec import ModelSpec
from refstudio.simulator.multipart import MultipartError, parse_multipart
from refstudio.simulator.runway.routes import ROUTES as RUNWAY_ROUTES
from refstudio.simulator.runway.routes import RunwayRoutes
from refstudio.simulator.state import SimState, sha256_name
from refstudio.simulator.validate import (
    ValidationError,
    parse_history_query,
    validate_submit,
)

if TYPE_CHECKING:
    from refstudio.simulator.server import SimHTTPServer

__all__ = ["SimHandler"]

#: Bodies above this are refused with 413 (the real service caps uploads at 200 MB; a local
#: simulator needs far less, and refusing early keeps a runaway client from eating memory).
MAX_BODY = 64 * 1024 * 1024

#: Pillow format -> (file extension, Content-Type) of the image types WaveSpeed accepts.
IMAGE_FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
    "BMP": ("bmp", "image/bmp"),
    "TIFF": ("tiff", "image/tiff"),
}
_EXT_TYPES = {ext: ctype for ext, ctype in IMAGE_FORMATS.values()} | {"jpeg": "image/jpeg"}

#: A submit: ``/api/v3/<model path>`` for any WaveSpeed model of the catalog (tried last).
_SUBMIT_RE = re.compile(r"^/api/v3/([a-z0-9][a-z0-9._-]*(?:/[a-z0-9][a-z0-9._-]*)+)$")
_RESULT_RE = re.compile(r"^/api/v3/predictions/([0-9A-Za-z_-]+)(/result)?$")
_OUTPUT_RE = re.compile(r"^/_sim/outputs/([0-9A-Za-z_-]+)/(\d+)\.png$")
_UPLOAD_RE = re.compile(r"^/_sim/uploads/([0-9A-Za-z_.-]+)$")
_PUT_RE = re.compile(r"^/_sim/put/([0-9a-f]+)$")


class _Drop(Exception):
    """Raised to close the connection without answering (simulated network failure)."""


class _BodyTooLarge(Exception):
    pass


def sniff_image(data: bytes) -> tuple[str, str] | None:
    """(extension, content type) if ``data`` is an accepted image, else None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                fmt = im.format
                im.verify()
    except Exception:  # not an image, truncated, or a bomb: all mean "reject"
        return None
    return IMAGE_FORMATS.get(fmt or "")


class SimHandler(BaseHTTPRequestHandler):
    """One connection's requests. HTTP/1.1 with keep-alive; every answer has a Content-Length."""

    protocol_version = "HTTP/1.1"
    server_version = "refstudio-simulator/1.0"
    #: Idle keep-alive connections are closed after this, so threads do not pile up.
    timeout = 30.0
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms per answer on Linux). Polling clients would measure that, not us.
    disable_nagle_algorithm = True
    server: SimHTTPServer

    # ---- plumbing -------------------------------------------------------------------------
    @property
    def state(self) -> SimState:
        return self.server.state

    def log_message(self, format: str, *args: Any) -> None:
        if self.state.config.verbose:
            sys.stderr.write(f"[sim] {self.address_string()} {format % args}\n")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers, if any, end with an empty line.
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise _BodyTooLarge
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise _BodyTooLarge
        return self.rfile.read(length) if length > 0 else b""

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(
        self,
        status: int,
        data: dict[str, Any] | list[Any] | None = None,
        message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer with the WaveSpeed envelope; ``code`` mirrors the HTTP status."""
        envelope = {
            "code": status,
            "message": message
            if message is not None
            else ("success" if status == 200 else HTTPStatus(status).phrase),
            "data": data if data is not None else {},
        }
        self._send(status, json.dumps(envelope).encode(), "application/json", headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors (bad request line, unsupported method) as an envelope too."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self._json(
                code, message=message or HTTPStatus(code).phrase, headers={"Connection": "close"}
            )

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        expected = self.state.config.key
        return expected is None or token == expected

    def _free_call_fault(self, counter: str) -> bool:
        """Answer a free call (poll, history) with a configured fault instead, a 429 or a 5xx,
        counted under ``counter``; True when one was sent."""
        state, cfg = self.state, self.state.config
        if state.chance(cfg.rate_429):
            state.count(counter)
            self._json(429, message="Too many requests", headers=self._retry_after(cfg.retry_after))
            return True
        if state.chance(cfg.rate_5xx):
            state.count(counter)
            self._json(state.choice((500, 502, 503)), message="Internal server error")
            return True
        return False

    def _retry_after(self, seconds: float) -> dict[str, str]:
        # Retry-After is integer seconds by RFC 9110; keep fractions (our clients parse floats)
        # but never send "0.0", which some clients read as "no limit".
        value = f"{seconds:g}" if seconds > 0 else "0"
        return {"Retry-After": value}

    def _dispatch(self, method: str) -> None:
        self.state.request_started()
        self.state.count("requests")
        try:
            self._dispatch_counted(method)
        finally:
            self.state.request_ended()

    def _dispatch_counted(self, method: str) -> None:
        try:
            body = self._read_body() if method in ("POST", "PUT") else b""
        except _BodyTooLarge:
            self.close_connection = True
            self._json(413, message="request body too large")
            return
        except (ValueError, OSError):
            self.close_connection = True
            self._json(400, message="malformed request body")
            return
        path = urlsplit(self.path).path
        try:
            self._route(method, path, body)
        except _Drop:
            # Say nothing and hang up: the client sees a dropped connection.
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ---- routing --------------------------------------------------------------------------
    def _route(self, method: str, path: str, body: bytes) -> None:
        routes: list[tuple[str, re.Pattern[str] | str, Any]] = [
            ("POST", "/api/v3/predictions", self._history),
            ("GET", "/api/v3/models", self._models),
            ("GET", "/api/v3/balance", self._balance),
            ("POST", "/api/v3/model/pricing", self._pricing),
            ("GET", _RESULT_RE, self._poll),
            ("POST", "/api/v3/media/upload/binary", self._upload_binary),
            ("POST", "/api/v3/media/uploads", self._upload_ticket),
            ("PUT", _PUT_RE, self._upload_put),
            ("GET", _UPLOAD_RE, self._get_upload),
            ("GET", _OUTPUT_RE, self._get_output),
            ("GET", "/_sim/stats", self._stats),
            ("POST", "/_sim/reset", self._reset),
            ("POST", _SUBMIT_RE, self._submit),
        ]
        if path.startswith(("/v1/", "/_sim/runway-upload/")):
            runway = RunwayRoutes(self, self.server.runway)
            routes += [(m, p, getattr(runway, name)) for m, p, name in RUNWAY_ROUTES]
        path_matched = False
        for want_method, pattern, handler in routes:
            if isinstance(pattern, str):
                match: re.Match[str] | None = None
                hit = path == pattern
            else:
                match = pattern.match(path)
                hit = match is not None
            if not hit:
                continue
            path_matched = True
            if method == want_method:
                handler(body, *(match.groups() if match else ()))
                return
        if path_matched:
            self._json(405, message=f"method {method} not allowed on {path}")
        else:
            self._json(404, message=f"no such endpoint: {path}")

    # ---- API ------------------------------------------------------------------------------
    def _submit(self, body: bytes, model: str) -> None:
        state, cfg = self.state, self.state.config
        spec = _served(model)
        if spec is None:
            self._json(404, message=f"no such model: {model}")
            return
        state.count("submits_received")
        if not self._authorized():
            state.count("submits_rejected_401")
            self._json(401, message="Unauthorized: invalid or missing API key")
            return
        staged = state.next_submit_fault()
        if staged is not None and staged != "ok":
            self._staged_submit(staged, body, spec)
            return
        wait = state.rate_limited()
        if wait is not None:
            state.count("submits_rejected_429")
            self._json(
                429,
                message="Too many requests: rate limit of the account level reached",
                headers=self._retry_after(max(cfg.retry_after, wait)),
            )
            return
        if state.chance(cfg.rate_429):
            state.count("submits_rejected_429")
            self._json(429, message="Too many requests", headers=self._retry_after(cfg.retry_after))
            return
        # Decide the 5xx fault once; half of them strike before the task exists (a clean
        # "not accepted"), half after (the ambiguous case a careful client must not resend).
        fault_5xx = state.chance(cfg.rate_5xx)
        before = fault_5xx and state.chance(0.5)
        if before:
            state.count("submits_5xx_not_accepted")
            self._json(503, message="Service temporarily unavailable")
            return
        if state.chance(cfg.rate_lost):
            state.count("submits_lost")
            self._json(state.choice((502, 504)), message="Bad gateway")
            return
        try:
            params = validate_submit(json.loads(body or b"null"), spec)
        except json.JSONDecodeError as exc:
            state.count("submits_rejected_400")
            self._json(400, message=f"request body is not valid JSON: {exc.msg}")
            return
        except ValidationError as exc:
            state.count("submits_rejected_400")
            self._json(400, message=str(exc))
            return
        if fault_5xx:
            state.create_task(params, outcome="5xx")
            status = state.choice((500, 502, 504))
            self._json(status, message="Internal error while creating the task")
            return
        if state.chance(cfg.drop_rate):
            state.create_task(params, outcome="dropped")
            raise _Drop
        task = state.create_task(params)
        if params["enable_sync_mode"]:
            deadline = min(task.completed_at, task.created_at + cfg.sync_timeout)
            # Sleep in slices so a stopping server does not wait out a long task.
            while (left := deadline - time.time()) > 0 and not self.server.stopping:
                time.sleep(min(left, 0.2))
            data = state.task_data(task)
            if data["status"] not in ("completed", "failed"):
                data["status"] = "processing"
                data["error"] = "Sync mode timed out; query the result by id"
            self._json(200, data)
            return
        data = state.task_data(task, seen=False)
        data["status"] = "created"  # the submit answer always says created, even for 0 s tasks
        data["outputs"], data["has_nsfw_contents"], data["error"], data["timings"] = [], [], "", {}
        self._json(200, data)

    def _staged_submit(self, fault: str, body: bytes, spec: ModelSpec) -> None:
        """Answer a submit with a fault a test staged (see ``SimulatorConfig.submit_faults``)."""
        state, cfg = self.state, self.state.config
        if fault == "429":
            state.count("submits_rejected_429")
            self._json(429, message="Too many requests", headers=self._retry_after(cfg.retry_after))
            return
        if fault == "503":
            state.count("submits_5xx_not_accepted")
            self._json(503, message="Service temporarily unavailable")
            return
        if fault in ("502_lost", "drop_lost"):
            state.count("submits_lost")
            if fault == "drop_lost":
                raise _Drop
            self._json(502, message="Bad gateway")
            return
        try:
            params = validate_submit(json.loads(body or b"null"), spec)
        except (json.JSONDecodeError, ValidationError) as exc:
            state.count("submits_rejected_400")
            self._json(400, message=str(exc))
            return
        if fault == "500_after":
            state.create_task(params, outcome="5xx")
            self._json(500, message="Internal error while creating the task")
            return
        state.create_task(params, outcome="dropped")  # drop_after
        raise _Drop

    def _models(self, body: bytes) -> None:
        """``GET /api/v3/models``: every model served, with its request JSON Schema."""
        if not self._authorized():
            self._json(401, message="Unauthorized: invalid or missing API key")
            return
        self._json(200, self.state.catalog())

    def _balance(self, body: bytes) -> None:
        """``GET /api/v3/balance``: what is left on the account, in US dollars."""
        if not self._authorized():
            self._json(401, message="Unauthorized: invalid or missing API key")
            return
        self._json(200, {"balance": round(self.state.balance(), 6)})

    def _pricing(self, body: bytes) -> None:
        """``POST /api/v3/model/pricing`` ``{model_id, inputs}``: the price of one run."""
        if not self._authorized():
            self._json(401, message="Unauthorized: invalid or missing API key")
            return
        try:
            query = json.loads(body or b"null")
        except json.JSONDecodeError as exc:
            self._json(400, message=f"request body is not valid JSON: {exc.msg}")
            return
        if not isinstance(query, dict) or not isinstance(query.get("model_id"), str):
            self._json(400, message="field 'model_id' is required")
            return
        spec = _served(query["model_id"])
        if spec is None:
            self._json(404, message=f"no such model: {query['model_id']}")
            return
        inputs = query.get("inputs") or {}
        if not isinstance(inputs, dict):
            self._json(400, message="field 'inputs' must be an object")
            return
        options = {k: v for k, v in inputs.items() if k in spec.options.model_fields}
        try:
            price = spec.price_of(spec.parse_options(options))
        except Exception as exc:  # a RefstudioError naming the option: the 400 message
            self._json(400, message=str(exc))
            return
        self._json(200, {"model_id": spec.model, "unit_price": price, "currency": "USD"})

    def _history(self, body: bytes) -> None:
        """``POST /api/v3/predictions``: the account's tasks of the last 7 days, newest first."""
        state, cfg = self.state, self.state.config
        state.count("history_requests")
        if not self._authorized():
            self._json(401, message="Unauthorized: invalid or missing API key")
            return
        if self._free_call_fault("history_faulted"):
            return
        try:
            query = parse_history_query(json.loads(body or b"null"))
        except json.JSONDecodeError as exc:
            self._json(400, message=f"request body is not valid JSON: {exc.msg}")
            return
        except ValidationError as exc:
            self._json(400, message=str(exc))
            return
        page, size = query.pop("page"), query.pop("page_size")
        now = time.time()
        tasks = state.history(now=now, **query)
        items = []
        for task in tasks[(page - 1) * size: page * size]:
            item = state.task_data(task, now=now, seen=False)  # browsing is not noticing
            if item["timings"]:
                item["executionTime"] = item["timings"]["inference"]
            if cfg.history_input:
                item["input"] = dict(task.input)
            items.append(item)
        self._json(200, {"page": page, "total": len(tasks), "items": items})

    def _poll(self, body: bytes, task_id: str, _suffix: str | None = None) -> None:
        state, cfg = self.state, self.state.config
        state.count("polls")
        if not self._authorized():
            self._json(401, message="Unauthorized: invalid or missing API key")
            return
        task = state.get_task(task_id)
        if task is not None:
            state.note_poll(task)
        if self._free_call_fault("polls_faulted"):
            return
        if state.chance(cfg.drop_rate):
            state.count("polls_faulted")
            raise _Drop
        if task is None:
            self._json(404, message=f"task {task_id} not found")
            return
        self._json(200, state.task_data(task))

    def _upload_binary(self, body: bytes) -> None:
        if not self._authorized():
            self._json(401, message="Unauthorized: invalid or missing API key")
            return
        try:
            parts = parse_multipart(self.headers.get("Content-Type", ""), body)
        except MultipartError as exc:
            self._json(400, message=f"bad multipart body: {exc}")
            return
        part = next((p for p in parts if p.name == "file"), None)
        if part is None:
            self._json(400, message="multipart field 'file' is missing")
            return
        kind = sniff_image(part.data)
        if kind is None:
            self._json(
                400,
                message="field 'file' is not a supported image (JPG, PNG, WebP, GIF, BMP, TIFF)",
            )
            return
        ext, ctype = kind
        name = sha256_name(part.data, ext)
        self.state.store_upload(name, part.data, ctype)
        self._json(
            200,
            {
                "type": "image",
                "download_url": f"{self.state.base_url}/_sim/uploads/{name}",
                "filename": part.filename or name,
                "size": len(part.data),
            },
        )

    def _upload_ticket(self, body: bytes) -> None:
        if not self._authorized():
            self._json(401, message="Unauthorized: invalid or missing API key")
            return
        try:
            req = json.loads(body or b"null")
        except json.JSONDecodeError:
            self._json(400, message="request body is not valid JSON")
            return
        if not isinstance(req, dict):
            self._json(400, message="request body must be a JSON object")
            return
        filename, size, ctype = req.get("filename"), req.get("size"), req.get("content_type")
        if not isinstance(filename, str) or not filename:
            self._json(400, message="field 'filename' is required and must be a non-empty string")
            return
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            self._json(400, message="field 'size' must be a non-negative integer")
            return
        if ctype is None:  # the SDK leaves it out when it cannot guess one
            ctype = mimetypes.guess_type(filename)[0]
        ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        if not isinstance(ctype, str) or not ctype.startswith("image/") or ext not in _EXT_TYPES:
            self._json(
                400,
                message="field 'content_type' must name a supported image type "
                "(JPG, PNG, WebP, GIF, BMP, TIFF) matching 'filename'",
            )
            return
        token, name = self.state.open_ticket("jpg" if ext == "jpeg" else ext, ctype)
        base = self.state.base_url
        self._json(
            200,
            {
                "upload": {
                    "method": "PUT",
                    "url": f"{base}/_sim/put/{token}",
                    "headers": {"Content-Type": ctype},
                },
                "download_url": f"{base}/_sim/uploads/{name}",
                "filename": filename,
            },
        )

    def _upload_put(self, body: bytes, token: str) -> None:
        # No Bearer check: like a presigned URL, the token in the path is the credential
        # (the official SDK sends only the ticket's headers with the PUT).
        ticket = self.state.close_ticket(token)
        if ticket is None:
            self._json(404, message="unknown or already used upload URL")
            return
        name, ctype = ticket
        if sniff_image(body) is None:
            self._json(400, message="uploaded body is not a supported image")
            return
        self.state.store_upload(name, body, ctype)
        self._send(200, b"", "text/plain")

    def _get_upload(self, body: bytes, name: str) -> None:
        found = self.state.get_upload(name)
        if found is None:
            self._json(404, message=f"upload {name} not found")
            return
        self.state.count("upload_fetches")
        self._send(200, found[0], found[1])

    def _get_output(self, body: bytes, task_id: str, index: str) -> None:
        task = self.state.get_task(task_id)
        if task is None or int(index) != 0 or task.status_at(time.time()) != "completed":
            self._json(404, message="output not found")
            return
        png = self.state.output_png(task)
        self.state.count("downloads")
        self._send(200, png, "image/png")

    def _stats(self, body: bytes) -> None:
        self._send(200, json.dumps(self.state.stats()).encode(), "application/json")

    def _reset(self, body: bytes) -> None:
        self.state.reset_stats()
        self._json(200, {"reset": True})


def _served(model: str) -> ModelSpec | None:
    """The WaveSpeed model at this path, or None (the simulator serves the catalog's)."""
    spec = next((m for m in catalog.all_models()
                 if m.provider == "wavespeed" and model in (m.model, *m.also_known_as)), None)
    return spec
