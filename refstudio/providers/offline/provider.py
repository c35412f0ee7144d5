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
from ...models import gen4
from ...models.request import BoundImage, GenParams
from ...storage.fsutil import atomic_write_bytes
from ..base import Provider, SubmittedTask, TaskStatus, UploadedImage
from ..payloads import wavespeed_body

ENV_CACHE = "REFSTUDIO_OFFLINE_DIR"


def _cache_dir() -> Path:
    explicit = os.environ.get(ENV_CACHE)
    if explicit:
        return Path(explicit)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("refstudio")) / "offline"


class OfflineProvider(Provider):
    """Makes preview images locally. Same request shape as WaveSpeed, so bodies are comparable."""

    name: ClassVar[str] = "offline"
    model: ClassVar[str] = "refstudio/offline-preview"
    paid: bool = False

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.root = cache_dir or _cache_dir()
        (self.root / "tasks").mkdir(parents=True, exist_ok=True)
        (self.root / "uploads").mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"OfflineProvider({str(self.root)!r})"

    @classmethod
    def build_body(
        cls, prompt: str, images: list[BoundImage], params: GenParams
    ) -> dict[str, Any]:
        return wavespeed_body(prompt, images, params)

    async def upload(self, data: bytes, *, filename: str, content_type: str) -> UploadedImage:
        sha = hashlib.sha256(data).hexdigest()
        path = self.root / "uploads" / sha
        if not path.exists():
            atomic_write_bytes(path, data)
        return UploadedImage(url=f"offline://uploads/{sha}")

    async def submit(self, body: dict[str, Any]) -> SubmittedTask:
        task_id = uuid.uuid4().hex
        task = dict(body)
        task.setdefault("seed", random.randint(gen4.SEED_MIN, gen4.SEED_MAX))
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
        from .previews import encode_png, render_preview

        if output.startswith("offline://tasks/"):
            task_id = output.split("/")[3]
            try:
                body = json.loads((self.root / "tasks" / f"{task_id}.json").read_text())
            except OSError as exc:
                raise TransientError(f"offline task {task_id} is gone") from exc
            width, height = gen4.output_size(body["aspect_ratio"], body.get("resolution", "1080p"))
            references = [self._read_upload(url) for url in body.get("reference_images", [])]
            image = render_preview(
                width=width,
                height=height,
                prompt=body["prompt"],
                references=[r for r in references if r],
                seed=int(body["seed"]),
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
