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
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

TaskStateName = Literal["created", "processing", "completed", "failed"]


@dataclass(frozen=True)
class GenParams:
    """Model parameters of one request, already validated (see :mod:`refstudio.params`)."""

    aspect_ratio: str
    resolution: str
    seed: int | None = None


@dataclass(frozen=True)
class BoundImage:
    """One reference image bound into a request: its mention name and its (uploaded) URL."""

    tag: str
    url: str


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


class Provider(abc.ABC):
    """Base class of providers. Instances hold one connection pool; close them with ``aclose``."""

    #: Registry name, e.g. ``"wavespeed"``.
    name: ClassVar[str]
    #: Model identifier recorded with every generation.
    model: ClassVar[str]
    max_references: ClassVar[int] = 3
    #: True when requests cost money (the engine applies budgets and write-ahead only then).
    paid: ClassVar[bool] = True

    @classmethod
    @abc.abstractmethod
    def build_body(
        cls, prompt: str, images: list[BoundImage], params: GenParams
    ) -> dict[str, Any]:
        """The exact JSON body this provider receives for (prompt, bound images, params).

        A class method: ``render`` shows the body without creating a provider (no key needed).
        """

    @abc.abstractmethod
    async def upload(self, data: bytes, *, filename: str, content_type: str) -> UploadedImage:
        """Make a local image readable by the provider; return its URL."""

    @abc.abstractmethod
    async def submit(self, body: dict[str, Any]) -> SubmittedTask:
        """Send one paid request. Never retries on its own."""

    @abc.abstractmethod
    async def fetch_status(self, task_id: str, poll_url: str | None = None) -> TaskStatus:
        """Read a task's state once (free; the caller retries)."""

    @abc.abstractmethod
    def download(self, output: str) -> AsyncIterator[bytes]:
        """Stream one output's bytes (an URL, or a base64 payload) in chunks."""

    @property
    def account_key(self) -> str | None:
        """Names the account requests are billed to (never showing a key), or None if none.

        Engines of one process that share an account key share one concurrency gate and one
        rate gate (:mod:`refstudio.engine.account`): what the account allows at once holds for
        every caller together.
        """
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
