"""What the API returns about generations, their outputs, and where images came from."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from ..errors import GenerationNotFoundError
from ..storage.database import Database, read_session
from ..storage.media import MediaStore
from ..storage.tables import Asset, Generation, Output, Reference, ReferenceImage

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class OutputInfo:
    """One stored output image. In Jupyter it displays itself.

    ``key`` names it in the media store; :attr:`path` is a local file holding it, fetched on
    demand (for the default folder store, the stored file itself)."""

    generation_id: int
    index: int
    key: str
    sha256: str
    width: int
    height: int
    nsfw: bool
    _store: MediaStore = field(repr=False, compare=False)
    _promote: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    @property
    def path(self) -> Path:
        """A local copy of the image (downloaded and hash-checked first for a remote store)."""
        return self._store.local_copy(self.key, self.sha256)

    @property
    def location(self) -> str:
        """Where the image is stored (a file path, or an ``s3://`` URL), without fetching it."""
        return self._store.location(self.key)

    def data(self) -> bytes:
        """The stored bytes, refused (StorageError) when they no longer match :attr:`sha256`."""
        return self._store.read_verified(self.key, self.sha256)

    @property
    def ref(self) -> str:
        """``GEN:INDEX``, the handle ``refstudio promote`` takes."""
        return f"{self.generation_id}:{self.index}"

    def image(self) -> Image.Image:
        """The output as a loaded Pillow image."""
        from .imaging import open_image

        return open_image(self.data())

    def promote(self, name: str, **options: Any) -> Any:
        """Make this output a reference (or a new primary image of one); see Studio.promote."""
        if self._promote is None:
            raise RuntimeError("this output is not attached to an open Studio")
        return self._promote(self.generation_id, name, index=self.index, **options)

    def _repr_png_(self) -> bytes:
        img = self.image()
        img.thumbnail((512, 512))
        buf = io.BytesIO()
        img.save(buf, "PNG")
        return buf.getvalue()

    def to_dict(self) -> dict[str, Any]:
        return {
            "generation_id": self.generation_id,
            "index": self.index,
            "path": self.location,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
            "nsfw": self.nsfw,
        }


@dataclass(frozen=True)
class GenerationInfo:
    """Everything recorded about one generation."""

    id: int
    status: str
    provider: str
    model: str
    prompt: str
    template_source: str | None
    params: dict[str, Any]
    bindings: list[dict[str, Any]]
    payload: dict[str, Any]
    request_id: str | None
    error: str
    cost_estimate: float
    attempts: int
    run_id: int | None
    step_id: str | None
    created_at: datetime
    submitted_at: datetime | None
    completed_at: datetime | None
    inference_ms: int | None
    outputs: tuple[OutputInfo, ...] = ()
    #: What was found out afterwards (e.g. "reconciled: …", "not accepted: …").
    note: str = ""
    #: Submits that were, or may have been, accepted and billed.
    paid_attempts: int = 0
    #: The catalog id of the model asked for (``wavespeed:google/nano-banana/edit``).
    model_id: str = ""

    @property
    def seed(self) -> int | None:
        return self.params.get("seed")

    def _repr_html_(self) -> str:
        import base64
        import html

        imgs = "".join(
            f'<img src="data:image/png;base64,{base64.b64encode(o._repr_png_()).decode()}" '
            f'style="max-width:256px;margin:2px" title="{o.ref}">'
            for o in self.outputs
        )
        return (f"<div><b>generation #{self.id}</b> ({html.escape(self.status)}): "
                f"{html.escape(self.prompt)}<br>{imgs}</div>")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "provider": self.provider,
            "model": self.model,
            "model_id": self.model_id,
            "prompt": self.prompt,
            "template_source": self.template_source,
            "params": self.params,
            "seed": self.seed,
            "bindings": self.bindings,
            "payload": self.payload,
            "request_id": self.request_id,
            "error": self.error,
            "cost_estimate": self.cost_estimate,
            "attempts": self.attempts,
            "run_id": self.run_id,
            "step_id": self.step_id,
            "created_at": _iso(self.created_at),
            "submitted_at": _iso(self.submitted_at),
            "completed_at": _iso(self.completed_at),
            "inference_ms": self.inference_ms,
            "outputs": [o.to_dict() for o in self.outputs],
            "note": self.note,
            "paid_attempts": self.paid_attempts,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class GenerationQueries:
    """Read-only queries over generations and outputs."""

    def __init__(
        self, db: Database, store: MediaStore, promote: Callable[..., Any] | None = None
    ) -> None:
        self.db = db
        self.store = store
        self._promote = promote

    def get(self, generation_id: int) -> GenerationInfo:
        from ..models.params import check_generation_id

        infos = self._load([check_generation_id(generation_id)])
        if not infos:
            raise GenerationNotFoundError(
                f"no generation #{generation_id}", hint="see `refstudio history`"
            )
        return infos[0]

    def many(self, ids: list[int]) -> list[GenerationInfo]:
        by_id = {g.id: g for g in self._load(ids)}
        return [by_id[i] for i in ids if i in by_id]

    def history(
        self, *, ref: str | None = None, status: str | None = None, limit: int | None = 50,
        model: str | None = None, text: str | None = None,
    ) -> list[GenerationInfo]:
        """Newest first, optionally only those that used reference ``ref``, in one state, of
        one model (a catalog id or alias; UnknownModelError with a did-you-mean), or whose
        prompt contains ``text`` (any case)."""
        from sqlmodel import func

        from ..models import catalog
        from ..models.params import check_limit

        limit = check_limit(limit)
        model_id = catalog.get(model).id if model is not None else None
        with read_session(self.db) as session:
            query = select(Generation.id).order_by(col(Generation.id).desc())
            if status:
                query = query.where(Generation.status == status)
            if model_id:
                query = query.where(Generation.model_id == model_id)
            if text:
                query = query.where(
                    func.lower(Generation.prompt).contains(text.lower(), autoescape=True))
            if ref:
                # Narrow in SQL, then match names exactly (case-insensitively) in Python.
                query = query.where(col(Generation.bindings_json).ilike(f"%{ref.lstrip('@')}%"))
            elif limit:
                # Without a name to match in Python, the limit can apply in SQL: don't load
                # every generation of a large library to show the newest fifty.
                query = query.limit(limit)
            ids = list(session.exec(query).all())
        infos = self.many(ids)  # type: ignore[arg-type]
        if ref:
            key = ref.lstrip("@").lower()
            infos = [g for g in infos if any(b["name"].lower() == key for b in g.bindings)]
        return infos[:limit] if limit else infos

    def _load(self, ids: list[int]) -> list[GenerationInfo]:
        if not ids:
            return []
        with read_session(self.db) as session:
            gens = session.exec(select(Generation).where(col(Generation.id).in_(ids))).all()
            rows = session.exec(
                select(Output, Asset)
                .join(Asset, col(Asset.id) == Output.asset_id)
                .where(col(Output.generation_id).in_(ids))
                .order_by(col(Output.generation_id), col(Output.index))
            ).all()
            bindings = _current_bindings(session, gens)
        outputs: dict[int, list[OutputInfo]] = {}
        for out, asset in rows:
            outputs.setdefault(out.generation_id, []).append(
                OutputInfo(
                    generation_id=out.generation_id,
                    index=out.index,
                    key=asset.path,
                    sha256=asset.sha256,
                    width=asset.width,
                    height=asset.height,
                    nsfw=out.nsfw,
                    _store=self.store,
                    _promote=self._promote,
                )
            )
        return [
            GenerationInfo(
                id=g.id,  # type: ignore[arg-type]
                status=g.status,
                provider=g.provider,
                model=g.model,
                model_id=g.model_id,
                prompt=g.prompt,
                template_source=g.template_source,
                params=json.loads(g.params_json),
                bindings=bindings[g.id],  # type: ignore[index]
                payload=json.loads(g.payload_json),
                request_id=g.request_id,
                error=g.error,
                cost_estimate=g.cost_estimate,
                attempts=g.attempts,
                run_id=g.run_id,
                step_id=g.step_id,
                created_at=g.created_at,
                submitted_at=g.submitted_at,
                completed_at=g.completed_at,
                inference_ms=g.inference_ms,
                outputs=tuple(outputs.get(g.id, ())),  # type: ignore[arg-type]
                note=g.note,
                paid_attempts=g.paid_attempts,
            )
            for g in gens
        ]


def _current_bindings(
    session: Session, gens: Sequence[Generation]
) -> dict[int | None, list[dict[str, Any]]]:
    """Each generation's bindings, with ``reference_id`` as the library stands now.

    The name in a binding is the one written in the prompt and stays as history. Its
    ``reference_id`` says which reference that is today: the one holding the bound image (same
    image id, same bytes), else the one recorded when it was made, if it still exists and is not
    younger than the generation (SQLite reuses the id of a deleted row). A renamed reference
    keeps its id; a deleted one gives null, never another reference's id.
    """
    decoded = {g.id: json.loads(g.bindings_json) for g in gens}
    image_ids = {b["image_id"] for bs in decoded.values() for b in bs if b.get("image_id")}
    ref_ids = {b["reference_id"] for bs in decoded.values() for b in bs if b.get("reference_id")}
    images: dict[int, tuple[int, str]] = {}
    if image_ids:
        for image_id, reference_id, sha256 in session.exec(
            select(ReferenceImage.id, ReferenceImage.reference_id, Asset.sha256)
            .join(Asset, col(Asset.id) == ReferenceImage.asset_id)
            .where(col(ReferenceImage.id).in_(image_ids))
        ).all():
            images[image_id] = (reference_id, sha256)  # type: ignore[index]
    born: dict[int, datetime] = {}
    if ref_ids:
        for ref_id, created_at in session.exec(
            select(Reference.id, Reference.created_at).where(col(Reference.id).in_(ref_ids))
        ).all():
            born[ref_id] = created_at  # type: ignore[index]
    created = {g.id: g.created_at for g in gens}
    for gen_id, bindings in decoded.items():
        for b in bindings:
            holder = images.get(b.get("image_id") or 0)
            recorded = b.get("reference_id")
            if holder is not None and holder[1] == b.get("sha256"):
                b["reference_id"] = holder[0]
            elif recorded in born and born[recorded] <= created[gen_id]:
                b["reference_id"] = recorded
            else:
                b["reference_id"] = None
    return decoded


def lineage_of_image(
    db: Database, queries: GenerationQueries, image: ReferenceImage | None, sha256: str,
    seen: set[int] | None = None,
) -> dict[str, Any]:
    """Where one image came from: a file, or a generation and (recursively) its inputs."""
    seen = set() if seen is None else seen
    if image is None or image.source_output_id is None:
        return {"sha256": sha256, "origin": "file",
                "source_file": image.source_file if image else None}
    with read_session(db) as session:
        output = session.get(Output, image.source_output_id)
    if output is None:
        return {"sha256": sha256, "origin": "unknown"}
    gen = queries.get(output.generation_id)
    node: dict[str, Any] = {
        "sha256": sha256,
        "origin": "generation",
        "generation_id": gen.id,
        "output_index": output.index,
        "prompt": gen.prompt,
        "seed": gen.seed,
        "provider": gen.provider,
        "inputs": [],
    }
    if gen.id in seen:
        node["inputs"] = "(cycle)"
        return node
    seen = seen | {gen.id}
    for binding in gen.bindings:
        with read_session(db) as session:
            image_id = binding.get("image_id")
            src = session.get(ReferenceImage, image_id) if image_id else None
        child = lineage_of_image(db, queries, src, binding["sha256"], seen)
        node["inputs"].append({"name": binding["name"], "label": binding.get("label"), **child})
    return node
