"""The small interface every provider implements, and the typed values that cross it.

A provider knows one HTTP protocol (or none, for the offline one): how to shape a request body,
upload an image, submit a task, read a task's state and fetch an output. It knows nothing of the
library, the database or prompt syntax. All methods are async; the engine drives them.

Errors: a provider raises only :mod:`refstudio.errors` classes. In particular ``submit`` must
tell apart :class:`~refstudio.errors.NotAcceptedError` (certainly not taken: safe to retry) from
:class:`~refstudio.errors.AmbiguousSubmitError` (may have been taken and billed: never retry
on our own).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from ..models import catalog
from ..models.request import BoundImage
from ..models.spec import ModelOptions, ModelSpec

TaskStateName = Literal["created", "processing", "completed", "failed"]


@dataclass(frozen=True)
class UploadedImage:
    """Where the provider can read an uploaded image, and until when (None: unknown)."""

    url: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class SubmittedTask:
    """What a successful submit returns. ``poll_url`` is the provider's own poll address."""

    task_id: str
    poll_url: str | None = None


@dataclass(frozen=True)
class TaskStatus:
    """A task's state as the provider reports it.

    ``outputs`` are URLs, or base64 payloads when ``outputs_are_base64``. ``nsfw`` has one flag per
    output (empty when the provider did not say). ``inference_ms`` is the provider's own timing.
    """

    task_id: str
    state: TaskStateName
    outputs: tuple[str, ...] = ()
    outputs_are_base64: bool = False
    nsfw: tuple[bool, ...] = ()
    error: str = ""
    inference_ms: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: A short note for progress displays while the task runs ("queued: THROTTLED",
    #: "running 40%"); empty when the provider says nothing more than the state.
    detail: str = ""


@dataclass(frozen=True)
class TaskRecord:
    """One task from the provider's own records (its history), as the provider reports it.

    ``created_at`` is on the provider's clock. ``input`` is the request the task was made from,
    when the history shows it (None when it does not: match by model and time only).
    """

    task_id: str
    model: str
    created_at: datetime
    state: TaskStateName
    poll_url: str | None = None
    input: dict[str, Any] | None = None


@dataclass(frozen=True)
class TaskHistory:
    """Tasks the account created between ``since`` and ``until`` (the provider's clock).

    ``complete`` is True only when every page was read and agreed with the announced total:
    only then can the absence of a task prove that a request was never accepted.
    ``server_now`` is the provider's clock when the last page was answered, and
    ``clock_offset`` (provider minus local, seconds) ± ``clock_error`` converts our times to
    theirs; None when the provider did not say what time it was.
    """

    tasks: tuple[TaskRecord, ...]
    since: datetime
    until: datetime
    complete: bool
    reason: str = ""
    server_now: datetime | None = None
    clock_offset: float | None = None
    clock_error: float = 0.0
    #: How far back the provider keeps records.
    retention: timedelta = timedelta(days=7)


class Provider(abc.ABC):
    """Base class of providers. Instances hold one connection pool; close them with ``aclose``.

    A provider serves the models registered under its name (:mod:`refstudio.models.catalog`,
    ``spec.provider == name``); each request says which one (``model=``). The body comes from
    the model's spec; a provider only adds what its transport needs (:meth:`build_body`).
    """

    #: Registry name, e.g. ``"wavespeed"``.
    name: ClassVar[str]
    #: False when this provider's work costs nothing (the offline previews, the built-in
    #: simulator): the engine then records its cost as 0 and no budget applies to it. A class
    #: default an instance may override, since one WaveSpeed client may talk to the simulator.
    paid: bool = True

    @classmethod
    def serves(cls, model: ModelSpec) -> bool:
        """True when this provider can run ``model`` (its own models; offline: any)."""
        return model.provider == cls.name

    @classmethod
    def key_configured(cls) -> bool:
        """True when this provider's API key is set (in the environment or the user config);
        providers without keys say True."""
        return True

    @classmethod
    def build_body(
        cls, model: ModelSpec, prompt: str, images: Sequence[BoundImage],
        options: ModelOptions,
    ) -> dict[str, Any]:
        """The exact JSON body this provider receives for ``model`` (the spec's own body).

        A class method: ``render`` shows the body without creating a provider (no key needed).
        Raises ParameterError / TooManyReferencesError (the spec validates again).
        """
        return model.build_body(prompt, images, options)

    @classmethod
    def default_model(cls) -> ModelSpec:
        """The model a request names when it names none: the catalog's first of this provider."""
        default = catalog.default_model()
        if cls.serves(default):
            return default
        return next(m for m in catalog.all_models() if cls.serves(m))

    @abc.abstractmethod
    async def upload(self, data: bytes, *, filename: str, content_type: str) -> UploadedImage:
        """Make a local image readable by the provider; return its URL."""

    @abc.abstractmethod
    async def submit(
        self, body: dict[str, Any], *, model: ModelSpec | None = None
    ) -> SubmittedTask:
        """Send one paid request for ``model`` (None: :meth:`default_model`). Never retries on
        its own."""

    @abc.abstractmethod
    async def fetch_status(self, task_id: str, poll_url: str | None = None) -> TaskStatus:
        """Read a task's state once (free; the caller retries)."""

    @abc.abstractmethod
    def download(self, output: str) -> AsyncIterator[bytes]:
        """Stream one output's bytes (an URL, or a base64 payload) in chunks."""

    @property
    def account(self) -> str:
        """Where requests go, as recorded with each submit: whose records can speak for them.
        Never a secret."""
        return self.name

    #: True when :meth:`task_history` can list the account's tasks (used to resolve `unknown`).
    supports_history: ClassVar[bool] = False

    async def task_history(
        self, *, model: str, since: datetime, until: datetime
    ) -> TaskHistory:
        """Every task of ``model`` the account created in [since, until) (provider's clock).

        Only for providers with ``supports_history``; the others keep no such records.
        """
        raise NotImplementedError(f"the {self.name} provider keeps no task history")

    #: The mean detection lag (seconds) polls aim for when the project sets no ``poll_lag``;
    #: None: the engine's automatic lag (2 % of the typical task time, at least 0.18 s).
    default_poll_lag: ClassVar[float | None] = None
    #: True when :meth:`cancel` can stop a task at the provider (Runway's DELETE).
    supports_cancel: ClassVar[bool] = False

    async def cancel(self, task_id: str) -> None:
        """Cancel a running task at the provider (free). Only for ``supports_cancel``."""
        raise NotImplementedError(f"the {self.name} provider cannot cancel tasks")

    async def account_summary(self) -> dict[str, Any] | None:
        """What the account holds and allows (credits, limits, today's use), for
        ``refstudio account``; None when the provider tells nothing (free, one call)."""
        return None

    async def concurrency_limit(self, model: str | None = None) -> int | None:
        """Tasks of ``model`` the account runs at once (its tier), or None when unknown: the
        engine then keeps the project's setting."""
        return None

    async def preflight(self, requests: Sequence[Mapping[str, Any]]) -> None:
        """Refuse, before anything is recorded or sent, a batch the account cannot run
        (credits, remaining daily generations). Each request is its parameters (with
        ``model``). The default accepts everything."""
        return None

    @property
    def account_key(self) -> str | None:
        """Names the account requests are billed to (never showing a key), or None if none.

        Engines of one process that share an account key share one concurrency gate and one
        rate gate (:mod:`refstudio.engine.account`): what the account allows at once holds for
        every caller together.

        Deliberately not :attr:`account`: that one names whose records speak for a request and
        must stay the same when a key is replaced (WaveSpeed: the base URL), while this one
        names who is billed, so two keys on one base URL are two gates.
        """
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
