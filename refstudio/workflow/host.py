"""What a workflow run needs from the rest of refstudio, as a typed protocol.

The runner sits below the app layer, so it cannot name :class:`refstudio.app.generation.
Generations`; it names these few public verbs instead, and the app's service satisfies them
(mypy checks that where the app hands itself to a runner).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..engine import Engine, Event, PreparedRequest
    from ..library.references import Library, ReferenceInfo
    from ..library.results import GenerationQueries


class Rendered(Protocol):
    """The part of a rendered prompt a run reads: what one image is estimated to cost."""

    @property
    def cost_estimate(self) -> float: ...


class WorkflowHost(Protocol):
    """The library, its generations, and the generation verbs a run drives."""

    @property
    def library(self) -> Library: ...

    @property
    def queries(self) -> GenerationQueries: ...

    def prepare_requests(
        self,
        prompt: str | None = None,
        *,
        template: str | None = None,
        variables: Mapping[str, Any] | None = None,
        n: int = 1,
        aspect_ratio: str | None = None,
        resolution: str | None = None,
        seed: int | None = None,
        provider: str | None = None,
        run_id: int | None = None,
        step_id: str | None = None,
    ) -> tuple[Rendered, list[PreparedRequest]]: ...

    def price(self, provider: str, resolution: str) -> float: ...

    def engine(
        self,
        provider_name: str,
        on_event: Callable[[Event], None] | None = None,
        concurrency: int | None = None,
    ) -> AbstractAsyncContextManager[Engine]: ...

    def promote(
        self,
        generation_id: int,
        name: str,
        *,
        index: int = 0,
        kind: str | None = None,
        label: str | None = None,
        description: str | None = None,
        keep_primary: bool = False,
    ) -> ReferenceInfo: ...


__all__ = ["Rendered", "WorkflowHost"]
