"""The public Python API: :class:`Studio` opens a project and does everything the CLI does.

:class:`AsyncStudio` is the same API for asyncio code: the same method names, with the ones that
talk to a provider (``generate``, ``resume``, ``reconcile``, ``retry``, ``run_workflow``) as
coroutines.
:class:`Studio` runs that async core to completion for plain scripts.

>>> from refstudio import Studio
>>> studio = Studio.init("my-project")                      # doctest: +SKIP
>>> studio.add_reference("mara", ["mara.png"], kind="character")  # doctest: +SKIP
>>> [gen] = studio.generate("@mara in the rain")           # doctest: +SKIP
>>> gen.outputs[0].promote("mara_rain")                    # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from ..library.packs import PackExportResult, PackImportResult, export_pack, import_pack
from ..library.provenance import export_image
from ..library.references import AddedImage, ImageInfo, Library, ReferenceInfo
from ..storage.database import Database
from ..storage.media import MediaStore, count_media_files
from ..storage.mediaurl import open_media_store
from ..storage.migrations import MIGRATIONS
from .generation import Generations
from .models_service import Models
from .project import (
    DB_FILE,
    Project,
    check_layout,
    load_config,
    make_media_dir,
    open_project,
    write_new_project,
)
from .workflows import Workflows

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")
StudioT = TypeVar("StudioT", bound="_StudioBase")


def _quality_check() -> Any:
    from ..library.quality import check_image

    return check_image


def _delegate(
    service: Callable[[_StudioBase], S], method: Callable[Concatenate[S, P], R]
) -> Callable[Concatenate[_StudioBase, P], R]:
    """A facade method that calls ``method`` on one of the studio's services: the same
    name, signature and docs, so the facade stays a list of what each service offers."""

    @functools.wraps(method)
    def call(self: _StudioBase, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(service(self), *args, **kwargs)

    return call


def _delegate_async(
    service: Callable[[_StudioBase], S],
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[_StudioBase, P], Coroutine[Any, Any, R]]:
    """:func:`_delegate` for a coroutine: an ``async def`` itself, so it is seen as one."""

    @functools.wraps(method)
    async def call(self: _StudioBase, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await method(service(self), *args, **kwargs)

    return call


def _library(studio: _StudioBase) -> Library:
    return studio.library


def _generations(studio: _StudioBase) -> Generations:
    return studio.generations


def _workflows(studio: _StudioBase) -> Workflows:
    return studio.workflows


def _models(studio: _StudioBase) -> Models:
    return studio.model_verbs


class _StudioBase:
    """What both faces share: the project, its library, and every local (non-network) verb.

    Composed of typed services, each with its dependencies given explicitly: the
    :class:`~refstudio.library.references.Library` (references and images), the
    :class:`~refstudio.app.generation.Generations` (render, generate, promote, history) and the
    :class:`~refstudio.app.workflows.Workflows` (plan and run workflow files). The facade's
    methods delegate to them.
    """

    def __init__(self, project: Project) -> None:
        self.project = project
        url = project.database_url  # a bad one is refused before anything is made
        db_path = project.db_path  # None: the library lives on a database server
        fresh = db_path is not None and not db_path.exists()
        if fresh:
            # A project without its library yet (a copied example, a checkout): nothing can be
            # lost by making media/. Beside an existing library, a missing media/ is refused.
            make_media_dir(project)
        if db_path is not None:
            check_layout(project)
        #: Things the user should hear about this project, said once by whoever opened it (the
        #: CLI prints each as a ``warning:`` line), e.g. a library.db made anew beside old media.
        self.notices: list[str] = []
        self.db = Database(url, create_missing=project.database_per_project)
        try:
            created = self.db.migrate() == [m.name for m in MIGRATIONS]
            if db_path is None:
                # On a server, "new" is known only once the database answers: a library just
                # created there may get its media folder, an existing one must have it.
                if created:
                    make_media_dir(project)
                check_layout(project)
        except BaseException:
            self.db.dispose()  # don't leave a pool open behind a library we refused to open
            raise
        try:
            self.store: MediaStore = open_media_store(
                project.media_url, root=project.root, media_dir=project.media_dir,
                cache_dir=project.cache_dir,
                cache_bytes=int(project.config.media_cache_mb * 1_000_000))
        except BaseException:
            self.db.dispose()
            raise
        if fresh and self.store.is_local:
            unknown = count_media_files(project.media_dir)
            if unknown:
                self.notices.append(
                    f"{DB_FILE} was missing and is now a new, empty library, but "
                    f"media/ holds {unknown} image file(s) it does not know: run `refstudio "
                    "doctor` to list them (`refstudio doctor --fix` adopts them as @recovered)"
                )
        self.library = Library(
            self.db,
            self.store,
            max_image_bytes=project.config.max_image_bytes,
            quality_check=_quality_check(),
            author=project.author,
        )
        self.generations = Generations(project, self.library)
        self.queries = self.generations.queries
        self.workflows = Workflows(project, self.library, self.generations)
        self.model_verbs = Models(project, self.generations)

    @property
    def provider_options(self) -> dict[str, dict[str, Any]]:
        """Per-provider constructor options that win over the user config, e.g.
        ``{"wavespeed": {"base_url": "http://127.0.0.1:8765", "api_key": "..."}}``."""
        return self.generations.provider_options

    @provider_options.setter
    def provider_options(self, value: dict[str, dict[str, Any]]) -> None:
        self.generations.provider_options = value

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def init(cls: type[StudioT], path: Path | str, *, name: str | None = None) -> StudioT:
        """Create a new project folder at ``path`` and open it."""
        root = Path(path).expanduser().resolve()
        write_new_project(root, name)
        return cls(Project(root, load_config(root)))

    @classmethod
    def open(cls: type[StudioT], path: Path | str | None = None) -> StudioT:
        """Open the project at ``path``, or find it from ``$REFSTUDIO_PROJECT`` / the cwd."""
        return cls(open_project(path))

    @property
    def root(self) -> Path:
        return self.project.root

    def close(self) -> None:
        self.store.close()
        self.db.dispose()

    def __enter__(self: StudioT) -> StudioT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    # -- generations and workflows (delegated to the services) ---------------------------------

    render = _delegate(_generations, Generations.render)
    prepare_requests = _delegate(_generations, Generations.prepare_requests)
    price = _delegate(_generations, Generations.price)
    spent = _delegate(_generations, Generations.spent)
    check_budget = _delegate(_generations, Generations.check_budget)
    retry_cost = _delegate(_generations, Generations.retry_cost)
    recorded_images = _delegate(_generations, Generations.recorded_images)
    generation = _delegate(_generations, Generations.generation)
    history = _delegate(_generations, Generations.history)
    lineage = _delegate(_generations, Generations.lineage)
    promote = _delegate(_generations, Generations.promote)
    make_provider = _delegate(_generations, Generations.make_provider)
    engine = _delegate(_generations, Generations.engine)
    find_workflow = _delegate(_workflows, Workflows.find_workflow)
    plan_workflow = _delegate(_workflows, Workflows.plan_workflow)
    models = _delegate(_models, Models.models)
    model = _delegate(_models, Models.model)
    plan_compare = _delegate(_models, Models.plan_compare)

    # -- references ---------------------------------------------------------------------------

    add_reference = _delegate(_library, Library.add_reference)
    add_images = _delegate(_library, Library.add_images)
    remove_image = _delegate(_library, Library.remove_image)
    set_primary = _delegate(_library, Library.set_primary)

    def add_references(
        self, references: Sequence[Mapping[str, Any]]
    ) -> list[tuple[ReferenceInfo, list[AddedImage]]]:
        """Create many references at once, all or nothing; each item holds the arguments of
        :meth:`add_reference` (``name``, ``images``, optionally ``kind``, ``description``,
        ``tags``, ``labels``). Much faster than one call each: the files are flushed to disk
        together and the rows committed in one transaction.

        >>> studio.add_references([{"name": "mara", "images": ["mara.png"]},   # doctest: +SKIP
        ...                        {"name": "tavern", "images": ["tavern.png"],
        ...                         "kind": "location"}])
        """
        return self.library.add_references(references)

    def reference(self, name: str) -> ReferenceInfo:
        """One reference by name (case-insensitive, ``@`` optional)."""
        return self.library.get(name)

    # -- packs and exports ---------------------------------------------------------------------

    def export_pack(
        self, names: Sequence[str], path: Path | str, *, overwrite: bool = False
    ) -> PackExportResult:
        """Write references ``names`` with their images and lineage to a zip at ``path``.

        The pack also carries the references bound into the generations those images came
        from (recursively), marked as dependencies, so every lineage edge survives. An existing
        file is replaced only with ``overwrite=True``; the project's own files never are.
        """
        if isinstance(names, str):
            names = [names]
        return export_pack(self.library, names, path,
                           protected=self.project.protected_area(), overwrite=overwrite)

    def import_pack(
        self, path: Path | str, rename: Mapping[str, str] | None = None
    ) -> PackImportResult:
        """Add a pack's references, generations and images to this project.

        Everything is checked before anything is written; an existing name is never
        overwritten (:class:`NameTakenError` names every clash); ``rename`` maps a pack name to
        the name to import it under. Images already in the project are reused, not copied.
        """
        return import_pack(self.library, path, rename)

    def export_image(
        self, generation_id: int, index: int, path: Path | str, *, overwrite: bool = False
    ) -> Path:
        """Write an output as a PNG whose text chunks record its provenance; return its path.

        JPEG and WebP outputs are converted; the stored original is never changed. An existing
        file is replaced only with ``overwrite=True``; the project's own files never are.
        """
        return export_image(self.queries, generation_id, index, path,
                            protected=self.project.protected_area(), overwrite=overwrite)

    def references(self, *, kind: str | None = None, tag: str | None = None) -> list[ReferenceInfo]:
        """All references sorted by name, optionally filtered by kind or tag."""
        return self.library.list(kind=kind, tag=tag)

    def rename_reference(self, old: str, new: str) -> ReferenceInfo:
        """Rename a reference (the new name must be free, ignoring case)."""
        return self.library.rename(old, new)

    def remove_reference(self, name: str) -> ReferenceInfo:
        """Delete a reference; returns what it was."""
        return self.library.remove(name)

    def update_reference(
        self, name: str, *, kind: str | None = None, description: str | None = None
    ) -> ReferenceInfo:
        """Change a reference's kind or description."""
        return self.library.update(name, kind=kind, description=description)

    def tag_reference(
        self, name: str, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> ReferenceInfo:
        """Add and remove tags."""
        return self.library.tag(name, add, remove)

    def check_reference(self, name: str) -> list[tuple[ImageInfo, list[str]]]:
        """Quality hints for each image of a reference (warnings, never refusals)."""
        return self.library.check(name)

    # -- browsing (what a front end pages through) ---------------------------------------------

    def find_references(
        self,
        text: str = "",
        *,
        kind: str | None = None,
        tag: str | None = None,
        prefix: bool = False,
        offset: int = 0,
        limit: int = 60,
    ) -> tuple[list[ReferenceInfo], int]:
        """One page of references matching ``text`` in name, description or tags (``prefix``:
        names starting with it), sorted by name, and the number matching in all."""
        return self.library.search(text, kind=kind, tag=tag, prefix=prefix, offset=offset,
                                   limit=limit)

    def image_file(self, sha256: str) -> Path:
        """The stored file of a library image, by content hash (ImageNotFoundError if unknown)."""
        return self.library.asset_path(sha256)

    def workflow_names(self) -> list[str]:
        """Names of the workflow files in the project's ``workflows/`` folder, sorted."""
        folder = self.project.workflows_dir
        return sorted(p.stem for p in folder.glob("*.toml") if p.is_file())

    def provider_names(self) -> list[str]:
        """Every installed provider (``refstudio.providers`` entry points), sorted."""
        from ..providers.registry import available

        return sorted(available())

    def default_provider(self) -> str:
        """The provider a generation uses when none is chosen (as ``gen`` decides it)."""
        from ..providers.registry import default_provider_name

        return default_provider_name(self.project.config.provider)

    def account_summary(self) -> AccountSummary:
        """What this machine knows of the provider account, with no secret in it."""
        from ..providers.config import effective_settings

        settings = effective_settings(project_provider=self.project.config.provider)
        budget = self.project.config.budget
        if settings.api_key:
            key = "set (in the environment)" if _key_in_env() else "set (in the user config)"
        else:
            key = "not set: generations use the offline provider"
        return AccountSummary(
            provider=settings.default_provider,
            provider_source=settings.provider_source,
            key=key,
            providers=self.provider_names(),
            concurrency=self.project.config.concurrency,
            budget="none" if budget is None else f"${budget:.2f}",
            spent=f"${self.spent():.2f}",
        )

    def generation_counts(self) -> dict[str, int]:
        """How many generations are in each state (states with none are left out)."""
        from sqlmodel import func, select

        from ..storage.database import read_session
        from ..storage.tables import Generation

        with read_session(self.db) as session:
            rows = session.exec(
                select(Generation.status, func.count()).group_by(Generation.status)).all()
        return {status: int(count) for status, count in rows}


@dataclass(frozen=True)
class AccountSummary:
    """The account page's local facts (:meth:`Studio.account_summary`); never holds the key.

    What the provider's account holds (balance, credits) is asked of the provider:
    :meth:`Studio.accounts`."""

    provider: str
    provider_source: str
    key: str
    providers: list[str]
    concurrency: int
    budget: str
    spent: str


def _key_in_env() -> bool:
    import os

    from ..providers.config import ENV_KEY

    return bool(os.environ.get(ENV_KEY))


def _blocking(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, R]:
    """The sync face of an async verb: same name, signature and docs, run to completion."""

    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(method(*args, **kwargs))
        # Called from code already inside an event loop (a Jupyter cell): asyncio.run would
        # refuse, so run the coroutine to completion on a loop of its own in a helper thread.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, method(*args, **kwargs)).result()

    return run


_generate = _delegate_async(_generations, Generations.generate)
_resume = _delegate_async(_generations, Generations.resume)
_reconcile = _delegate_async(_generations, Generations.reconcile)
_retry = _delegate_async(_generations, Generations.retry)
_cancel = _delegate_async(_generations, Generations.cancel)
_accounts = _delegate_async(_generations, Generations.accounts)
_run_workflow = _delegate_async(_workflows, Workflows.run_workflow)
_compare = _delegate_async(_models, Models.compare)
_sync_models = _delegate_async(_models, Models.sync_models)
_account = _delegate_async(_models, Models.account)


class Studio(_StudioBase):
    """A refstudio project, opened, for ordinary (synchronous) code.

    Close it with :meth:`close` or use it as a context manager. Network verbs block until done.
    """

    generate = _blocking(_generate)
    resume = _blocking(_resume)
    reconcile = _blocking(_reconcile)
    retry = _blocking(_retry)
    cancel = _blocking(_cancel)
    accounts = _blocking(_accounts)
    run_workflow = _blocking(_run_workflow)
    compare = _blocking(_compare)
    sync_models = _blocking(_sync_models)
    account = _blocking(_account)


class AsyncStudio(_StudioBase):
    """A refstudio project for asyncio code: ``generate``, ``resume``, ``reconcile``, ``retry``,
    ``run_workflow``, ``compare``, ``sync_models`` and ``account`` are coroutines."""

    generate = _generate
    resume = _resume
    reconcile = _reconcile
    retry = _retry
    cancel = _cancel
    accounts = _accounts
    run_workflow = _run_workflow
    compare = _compare
    sync_models = _sync_models
    account = _account
