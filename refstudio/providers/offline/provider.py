"""The offline provider: no key, no network, no cost — previews made on this machine.

It is what refstudio uses when no ``WAVESPEED_API_KEY`` is set, so a newcomer sees the whole
loop (add, generate, promote, generate again) work at once. Outputs are deterministic preview
images at the model's exact sizes, composed from the bound reference images and the prompt
(:mod:`refstudio.providers.offline.previews`, shared with the simulator), and visibly marked as
previews.

Tasks and uploads are kept as small files in the user's cache folder, so a task submitted by a
process that died can still be polled by the next one, exactly as with a real provider.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

from ...errors import RequestRejectedError, TransientError
from ...models import catalog
from ...models.spec import ModelSpec
from ...storage.fsutil import atomic_write_bytes
from ..base import Provider, SubmittedTask, TaskStatus, UploadedImage

ENV_CACHE = "REFSTUDIO_OFFLINE_DIR"


def _cache_dir() -> Path:
    explicit = os.environ.get(ENV_CACHE)
    if explicit:
        return Path(explicit)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("refstudio")) / "offline"


class OfflineProvider(Provider):
    """Previews any model locally, from the very body that model's provider would receive, at
    the size that model returns (so a layout can be judged before paying)."""

    name: ClassVar[str] = "offline"
    paid: bool = False

    @classmethod
    def serves(cls, model: ModelSpec) -> bool:
        return True

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.root = cache_dir or _cache_dir()
        (self.root / "tasks").mkdir(parents=True, exist_ok=True)
        (self.root / "uploads").mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"OfflineProvider({str(self.root)!r})"

    async def upload(self, data: bytes, *, filename: str, content_type: str) -> UploadedImage:
        sha = hashlib.sha256(data).hexdigest()
        path = self.root / "uploads" / sha
        if not path.exists():
            atomic_write_bytes(path, data)
        return UploadedImage(url=f"offline://uploads/{sha}")

    async def submit(
        self, body: dict[str, Any], *, model: ModelSpec | None = None
    ) -> SubmittedTask:
        spec = model or self.default_model()
        task_id = uuid.uuid4().hex
        task: dict[str, Any] = {"body": dict(body), "model": spec.id}
        # The seed the preview is drawn from: the request's, else one the model could pick.
        seed = spec.seed_of(spec.parse_options(_options_in(spec, body)))
        if seed is None or (spec.seed is not None and seed == spec.seed.random):
            low, high = (spec.seed.low, spec.seed.high) if spec.seed else (1, 2**31 - 1)
            seed = random.randint(max(low, 0), high)
        task["seed"] = seed
        atomic_write_bytes(self.root / "tasks" / f"{task_id}.json", json.dumps(task).encode())
        return SubmittedTask(task_id=task_id, poll_url=None)

    async def fetch_status(self, task_id: str, poll_url: str | None = None) -> TaskStatus:
        path = self.root / "tasks" / f"{task_id}.json"
        if not path.is_file():
            raise RequestRejectedError(f"unknown offline task {task_id}")
        return TaskStatus(
            task_id=task_id,
            state="completed",
            outputs=(f"offline://tasks/{task_id}/0",),
            nsfw=(False,),
            inference_ms=0,
        )

    async def download(self, output: str) -> AsyncIterator[bytes]:
        from .previews import encode_png, following_size, render_preview

        if output.startswith("offline://tasks/"):
            task_id = output.split("/")[3]
            try:
                task = json.loads((self.root / "tasks" / f"{task_id}.json").read_text())
            except OSError as exc:
                raise TransientError(f"offline task {task_id} is gone") from exc
            if "body" not in task:  # a task written before the model layer: a Gen-4 body
                task = {"body": task, "model": catalog.default_model().id, "seed": task["seed"]}
            body = task["body"]
            spec = catalog.get(task["model"])
            field = spec.reference_field
            urls = body.get(field, []) if field else []
            references = [r for r in (self._read_upload(url) for url in urls) if r]
            size = spec.output_size(spec.parse_options(_options_in(spec, body)))
            width, height = size or following_size(references)
            image = render_preview(
                width=width,
                height=height,
                prompt=body["prompt"],
                references=references,
                seed=int(task["seed"]),
                label="OFFLINE PREVIEW",
            )
            yield encode_png(image)
        else:  # base64 never happens offline, but keep the interface whole
            yield base64.b64decode(output)

    def _read_upload(self, url: str) -> bytes | None:
        sha = url.rsplit("/", 1)[-1]
        try:
            return (self.root / "uploads" / sha).read_bytes()
        except OSError:
            return None


def _options_in(spec: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
    """The model's options as they appear in its body."""
    return {k: v for k, v in body.items() if k in spec.options.model_fields}

