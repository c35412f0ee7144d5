"""Build the static HTML gallery of a project: library, generations, and lineage.

The site is plain HTML and one stylesheet, rendered with Jinja2 from templates shipped in this
package. It needs no server, no CDN and no JavaScript: every link is relative, so it works from
``file://`` and can be zipped and shared with the project's ``media/`` folder beside it.

Layout of ``<out>/`` (default ``<project>/gallery/``)::

    index.html              the library: every reference, its images, kind, tags, warnings
    generations.html        newest generations first, PAGE_SIZE per page
    generations-2.html …
    lineage-<name>.html     one per reference: which output became which image, as a chain
    compare.html            prompts made on several models (``refstudio compare``), one column
                            per model
    gallery.css
    thumbs/<sha256>.jpg     thumbnails, cached by content hash across rebuilds
    .refstudio-gallery      marks the folder as a gallery's, so a rebuild may replace its files

Full-size images are linked where they already live (``../media/…`` for the default location)
instead of being copied: a gallery of a big project costs only its thumbnails on disk. A project
whose media are in a remote store (``s3://``) has no such place: its images are copied once,
hash-checked, into ``<out>/media/<key>`` (kept across rebuilds), so the gallery still works
from ``file://``.

The build only reads the project. It never sees the API key: nothing here reads configuration
or the environment, and provider payloads (which hold upload URLs) are not shown.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import jinja2
from markupsafe import Markup

from ..storage.fsutil import atomic_write_bytes, check_output_dir
from .compare import find_comparisons
from .downloads import ensure_downloads
from .text import format_duration, format_time, html_environment, linkify_mentions
from .thumbs import ensure_thumbnails, thumb_name

if TYPE_CHECKING:
    from ..library.references import ImageInfo, ReferenceInfo
    from ..library.results import GenerationInfo
    from ..storage.database import Database
    from ..storage.fsutil import ProtectedArea
    from ..storage.media import MediaStore


class GalleryProject(Protocol):
    """The part of a project the gallery asks about: which files it must never replace."""

    def protected_area(self) -> ProtectedArea: ...


class GallerySource(Protocol):
    """What the gallery reads of a project; :class:`refstudio.Studio` is one.

    A protocol, not the Studio class, so the gallery sits below the public API it serves.
    """

    db: Database
    store: MediaStore

    @property
    def root(self) -> Path: ...

    @property
    def project(self) -> GalleryProject: ...

    def references(self) -> list[ReferenceInfo]: ...

    def history(self, *, limit: int | None = ...,
                model: str | None = ...) -> list[GenerationInfo]: ...

    def lineage(self, name: str) -> dict[str, Any]: ...

#: Generations per page: a page of 100 cards with lazy thumbnails stays quick to open.
PAGE_SIZE = 100
#: States whose estimated cost the gallery counts as spent (as ``Studio.spent`` does).
_PAID = frozenset({"submitting", "submitted", "completed", "unknown"})
_OWN_PAGES = re.compile(r"^(generations-\d+|lineage-[a-z0-9_]+)\.html$")
#: Left in every gallery folder, so a rebuild knows the files there are its own to replace.
MARKER = ".refstudio-gallery"


@dataclass(frozen=True)
class GalleryReport:
    """What :func:`build_gallery` did."""

    out_dir: Path
    pages: int
    thumbnails_made: int
    thumbnails_reused: int
    seconds: float

    @property
    def index(self) -> Path:
        """The gallery's front page."""
        return self.out_dir / "index.html"

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape of ``refstudio gallery --json``."""
        return {
            "out_dir": str(self.out_dir),
            "index": str(self.index),
            "pages": self.pages,
            "thumbnails_made": self.thumbnails_made,
            "thumbnails_reused": self.thumbnails_reused,
            "seconds": round(self.seconds, 3),
        }


def build_gallery(
    studio: GallerySource,
    out_dir: Path | str | None = None,
    *,
    page_size: int = PAGE_SIZE,
    workers: int | None = None,
    overwrite: bool = False,
    model: str | None = None,
) -> GalleryReport:
    """Write the gallery of ``studio``'s project to ``out_dir`` (default ``<project>/gallery``).

    Thumbnails already in ``out_dir/thumbs`` are reused; only new images are thumbnailed.
    Returns a :class:`GalleryReport` with the page count, thumbnails made and reused, and time.
    A folder that holds files no gallery build wrote is written into only with ``overwrite``;
    the project folder itself and ``media/`` never are. ``model`` (an id or alias) keeps only
    that model's generations.
    """
    started = time.perf_counter()
    out = check_output_dir(
        out_dir if out_dir else studio.root / "gallery",
        protected=studio.project.protected_area(),
        # The default folder is refstudio's by convention (and galleries built before the
        # marker existed have none).
        overwrite=overwrite or not out_dir,
        marker=MARKER,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).touch()
    data = _collect(studio, out, model)
    site = _Site(out, data, page_size)
    thumbs = ensure_thumbnails(data.sources, out / "thumbs", site.wanted_thumbnails(), workers)
    site.missing = thumbs.missing
    site.downloads = ensure_downloads(data.gens, out / "downloads").files

    env = _environment()
    written: list[str] = []

    def write(name: str, template: str, **context: Any) -> None:
        html = env.get_template(template).render(site=site.summary, **context)
        _atomic_write(out / name, html.encode("utf-8"))
        written.append(name)

    write("index.html", "index.html.j2", page="library", refs=site.reference_views())
    pages = site.generation_pages()
    for number, gens in enumerate(pages, start=1):
        write(
            site.page_file(number),
            "generations.html.j2",
            page="generations",
            gens=gens,
            number=number,
            page_links=site.page_links(len(pages), number),
        )
    for ref in data.refs:
        write(
            site.lineage_file(ref.name),
            "lineage.html.j2",
            page="lineage",
            ref=site.reference_view(ref),
            images=site.lineage_view(studio, ref),
        )
    write("compare.html", "compare.html.j2", page="compare", comparisons=site.compare_views())
    _atomic_write(out / "gallery.css", _stylesheet())
    _remove_stale_pages(out, set(written))
    return GalleryReport(
        out_dir=out,
        pages=len(written),
        thumbnails_made=thumbs.made,
        thumbnails_reused=thumbs.reused,
        seconds=time.perf_counter() - started,
    )


# -- reading the project ------------------------------------------------------------------------


@dataclass
class _ProjectData:
    refs: list[ReferenceInfo]
    gens: list[GenerationInfo]  # newest first
    sources: dict[str, Path]  # sha256 -> stored file, for every asset
    output_ids: dict[int, tuple[int, int]]  # Output.id -> (generation id, index)


def _collect(studio: GallerySource, out: Path, model: str | None = None) -> _ProjectData:
    # Read-only, three bulk queries beyond the public API: assets (to thumbnail any image a
    # lineage mentions, even one no longer attached to a reference) and output ids (the
    # lineage edge ImageInfo.source_output_id points at).
    from sqlmodel import select

    from ..storage.database import read_session
    from ..storage.tables import Asset, Output

    with read_session(studio.db) as session:
        assets = session.exec(select(Asset.sha256, Asset.path)).all()
        outputs = session.exec(select(Output.id, Output.generation_id, Output.index)).all()
    return _ProjectData(
        refs=studio.references(),
        gens=studio.history(limit=None, model=model),
        sources=_sources(studio.store, assets, out),
        output_ids={oid: (gid, idx) for oid, gid, idx in outputs if oid is not None},
    )


def _sources(store: MediaStore, assets: Iterable[tuple[str, str]], out: Path) -> dict[str, Path]:
    """sha256 -> a local file of every asset: the stored file for a folder store, else a copy
    under ``out/media`` made once (a missing or damaged object simply gets no file)."""
    if store.is_local:
        return {sha: store.local_copy(key, sha) for sha, key in assets}
    from ..errors import StorageError

    sources: dict[str, Path] = {}
    for sha, key in assets:
        target = out / "media" / key
        if not target.is_file():
            try:
                data = store.local_copy(key, sha).read_bytes()
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(target, data)
            except (StorageError, OSError):
                continue
        sources[sha] = target
    return sources


# -- turning it into what templates show --------------------------------------------------------


def _key(name: str) -> str:
    # Names follow the tag rule ([A-Za-z0-9_]); the substitution only guards file names and
    # anchors against a row that somehow breaks it.
    return re.sub(r"[^a-z0-9_]", "_", name.lower())


class _Site:
    """Links, thumbnails and view models for one build. All paths are relative to ``out``."""

    def __init__(self, out: Path, data: _ProjectData, page_size: int) -> None:
        self.out = out
        self.data = data
        self.page_size = max(1, page_size)
        self.missing: set[str] = set()
        self.downloads: dict[tuple[int, int], str] = {}
        self.refs_by_key = {_key(r.name): r for r in data.refs}
        self.ref_of_image: dict[int, ReferenceInfo] = {
            img.id: ref for ref in data.refs for img in ref.images
        }
        self.page_of = {g.id: i // self.page_size + 1 for i, g in enumerate(data.gens)}
        # Which references each output became: the lineage edge, seen from the generation.
        self.became: dict[tuple[int, int], list[tuple[ReferenceInfo, ImageInfo]]] = {}
        for ref in data.refs:
            for img in ref.images:
                edge = data.output_ids.get(img.source_output_id or -1)
                if edge is not None:
                    self.became.setdefault(edge, []).append((ref, img))
        self.uses = Counter(_key(b["name"]) for g in data.gens for b in g.bindings)
        self.summary = {
            "references": len(data.refs),
            "generations": len(data.gens),
            "outputs": sum(len(g.outputs) for g in data.gens),
            # What was or may have been paid: failed and never-sent work cost nothing.
            "cost": f"${sum(g.cost_estimate for g in data.gens if g.status in _PAID):.2f}",
            "pages": max(1, -(-len(data.gens) // self.page_size)),
        }
        self.comparisons = find_comparisons(data.gens)
        self.summary["comparisons"] = len(self.comparisons)

    # links -----------------------------------------------------------------------------------

    def page_file(self, number: int) -> str:
        return "generations.html" if number == 1 else f"generations-{number}.html"

    def page_links(self, count: int, current: int) -> list[dict[str, Any]]:
        return (
            [
                {"number": n, "href": self.page_file(n), "current": n == current}
                for n in range(1, count + 1)
            ]
            if count > 1
            else []
        )

    def lineage_file(self, name: str) -> str:
        return f"lineage-{_key(name)}.html"

    def ref_href(self, name: str) -> str:
        return f"index.html#ref-{_key(name)}"

    def gen_href(self, gen_id: int) -> str | None:
        page = self.page_of.get(gen_id)
        return None if page is None else f"{self.page_file(page)}#gen-{gen_id}"

    def thumb(self, sha: str | None) -> str | None:
        if not sha or sha in self.missing or sha not in self.data.sources:
            return None
        return f"thumbs/{thumb_name(sha)}"

    def full(self, sha: str | None) -> str | None:
        source = self.data.sources.get(sha or "")
        if source is None or not source.is_file():
            return None
        return quote(Path(os.path.relpath(source, self.out)).as_posix())

    def image(self, sha: str | None, **extra: Any) -> dict[str, Any]:
        return {
            "sha": sha or "",
            "short": (sha or "")[:12],
            "thumb": self.thumb(sha),
            "full": self.full(sha),
            **extra,
        }

    def wanted_thumbnails(self) -> Iterable[str]:
        for ref in self.data.refs:
            yield from (img.sha256 for img in ref.images)
        for gen in self.data.gens:
            yield from (o.sha256 for o in gen.outputs)
            yield from (b["sha256"] for b in gen.bindings if b.get("sha256"))

    def prompt_html(self, prompt: str, bindings: list[dict[str, Any]]) -> Markup:
        """Only names this generation bound become links; a bound reference that was renamed
        since is found through the image it bound."""
        targets: dict[str, str] = {}
        for binding in bindings:
            ref = self.refs_by_key.get(_key(binding["name"])) or self.ref_of_image.get(
                binding.get("image_id") or -1
            )
            if ref is not None:
                targets[_key(binding["name"])] = self.ref_href(ref.name)
        return linkify_mentions(prompt, lambda name: targets.get(_key(name)))

    # library --------------------------------------------------------------------------------

    def reference_views(self) -> list[dict[str, Any]]:
        return [self.reference_view(ref) for ref in self.data.refs]

    def reference_view(self, ref: ReferenceInfo) -> dict[str, Any]:
        images = []
        for img in ref.images:
            edge = self.data.output_ids.get(img.source_output_id or -1)
            origin: dict[str, Any]
            if edge is not None:
                origin = {
                    "kind": "generation",
                    "text": f"output {edge[0]}:{edge[1]}",
                    "href": self.gen_href(edge[0]),
                }
            elif img.source_file:
                origin = {"kind": "file", "text": Path(img.source_file).name, "href": None}
            else:
                origin = {"kind": "unknown", "text": "", "href": None}
            images.append(
                self.image(
                    img.sha256,
                    label=img.label,
                    primary=img.is_primary,
                    width=img.width,
                    height=img.height,
                    format=img.format,
                    size=_size(img.bytes),
                    origin=origin,
                    warnings=list(img.warnings),
                )
            )
        return {
            "name": ref.name,
            "key": _key(ref.name),
            "kind": ref.kind,
            "description": ref.description,
            "tags": list(ref.tags),
            "warnings": list(ref.warnings),
            "images": images,
            "uses": self.uses.get(_key(ref.name), 0),
            "lineage_href": self.lineage_file(ref.name),
            "updated": format_time(ref.updated_at),
        }

    # generations ----------------------------------------------------------------------------

    def generation_pages(self) -> list[list[dict[str, Any]]]:
        gens = self.data.gens
        if not gens:
            return [[]]
        return [
            [self.generation_view(g) for g in gens[i : i + self.page_size]]
            for i in range(0, len(gens), self.page_size)
        ]

    def _download_href(self, gen_id: int, index: int) -> str | None:
        name = self.downloads.get((gen_id, index))
        return f"downloads/{name}" if name else None

    def generation_view(self, gen: GenerationInfo) -> dict[str, Any]:
        refs = []
        for binding in gen.bindings:
            ref = self.refs_by_key.get(_key(binding["name"])) or self.ref_of_image.get(
                binding.get("image_id") or -1
            )
            refs.append(
                self.image(
                    binding.get("sha256"),
                    name=binding["name"],
                    label=binding.get("label"),
                    href=self.ref_href(ref.name) if ref else None,
                )
            )
        outputs = [
            self.image(
                o.sha256,
                handle=o.ref,
                download=self._download_href(o.generation_id, o.index),
                width=o.width,
                height=o.height,
                nsfw=o.nsfw,
                became=[
                    {"name": r.name, "href": self.lineage_file(r.name), "primary": img.is_primary}
                    for r, img in self.became.get((o.generation_id, o.index), [])
                ],
            )
            for o in gen.outputs
        ]
        waited = None
        if gen.submitted_at and gen.completed_at:
            waited = (gen.completed_at - gen.submitted_at).total_seconds()
        params = [(k, v) for k, v in sorted(gen.params.items()) if k != "seed"]
        template = gen.template_source if gen.template_source not in (None, gen.prompt) else None
        return {
            "id": gen.id,
            "status": gen.status,
            "provider": gen.provider,
            "model": gen.model,
            "prompt_html": self.prompt_html(gen.prompt, gen.bindings),
            "template": template,
            "refs": refs,
            "outputs": outputs,
            "seed": gen.seed,
            "params": params,
            "created": format_time(gen.created_at),
            "submitted": format_time(gen.submitted_at),
            "completed": format_time(gen.completed_at),
            "waited": format_duration(waited),
            "inference": format_duration(gen.inference_ms / 1000) if gen.inference_ms else "",
            "cost": f"${gen.cost_estimate:.3f}",
            "error": gen.error,
            "attempts": gen.attempts,
            "run_id": gen.run_id,
            "step_id": gen.step_id,
            "request_id": gen.request_id,
        }

    # comparisons ----------------------------------------------------------------------------

    def compare_views(self) -> list[dict[str, Any]]:
        """One section per compared prompt: a column per model with its name, cost and seeds."""
        views = []
        for number, comparison in enumerate(self.comparisons, start=1):
            first = comparison.columns[0].gens[0]
            columns = []
            for column in comparison.columns:
                runs = []
                for gen in column.gens:
                    view = self.generation_view(gen)
                    # The text this model received, when its binding rewrote the prompt.
                    view["rendered"] = gen.prompt if gen.prompt != comparison.source else None
                    view["href"] = self.gen_href(gen.id)
                    runs.append(view)
                columns.append({
                    "model": column.model,
                    "name": column.name,
                    "cost": f"${sum(g.cost_estimate for g in column.gens):.3f}",
                    "gens": runs,
                })
            views.append({
                "id": f"cmp-{number}",
                "prompt_html": self.prompt_html(comparison.source, first.bindings),
                "columns": columns,
            })
        return views

    # lineage --------------------------------------------------------------------------------

    def lineage_view(self, studio: GallerySource, ref: ReferenceInfo) -> list[dict[str, Any]]:
        tree = studio.lineage(ref.name)
        by_id = {img.id: img for img in ref.images}
        views = []
        for node in tree["images"]:
            info = by_id.get(node["image_id"])
            views.append(
                self.image(
                    node["sha256"],
                    label=node.get("label"),
                    primary=node.get("is_primary", False),
                    chain=self.node_view(node),
                    id=node["image_id"],
                    warnings=list(info.warnings) if info else [],
                )
            )
        return views

    def node_view(self, node: dict[str, Any]) -> dict[str, Any]:
        """One step back in an image's history, with its inputs (recursively)."""
        view = self.image(node.get("sha256"), origin=node.get("origin", "unknown"))
        if view["origin"] == "file":
            source = node.get("source_file")
            view["file"] = Path(source).name if source else "imported file"
        elif view["origin"] == "generation":
            inputs = node.get("inputs")
            view.update(
                gen_id=node["generation_id"],
                handle=f"{node['generation_id']}:{node['output_index']}",
                gen_href=self.gen_href(node["generation_id"]),
                seed=node.get("seed"),
                prompt_html=self.prompt_html(
                    node.get("prompt", ""),
                    inputs if isinstance(inputs, list) else [],
                ),
                cycle=not isinstance(inputs, list),
                inputs=[
                    {
                        "name": child["name"],
                        "label": child.get("label"),
                        "href": self.ref_href(child["name"])
                        if _key(child["name"]) in self.refs_by_key
                        else None,
                        "node": self.node_view(child),
                    }
                    for child in (inputs if isinstance(inputs, list) else [])
                ],
            )
        return view


# -- output -------------------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    return html_environment("refstudio.gallery")


def _stylesheet() -> bytes:
    return (resources.files("refstudio.gallery") / "static" / "gallery.css").read_bytes()


def _size(n: int) -> str:
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


def _atomic_write(path: Path, data: bytes) -> None:
    # A reader (a browser refreshing mid-build) sees the old page or the new one, never half.
    atomic_write_bytes(path, data)


def _remove_stale_pages(out: Path, written: set[str]) -> None:
    # Pages of references removed or generation pages no longer needed since the last build.
    # Only files matching the names this module writes are touched.
    for path in out.glob("*.html"):
        if path.name not in written and _OWN_PAGES.match(path.name):
            path.unlink(missing_ok=True)
