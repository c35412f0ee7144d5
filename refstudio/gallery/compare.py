"""Which generations make a comparison: the same prompt, as the user wrote it, on several models.

``refstudio compare`` records one ordinary generation per model and variant and no batch id, so
the gallery finds comparisons the way a reader would: generations whose source text (the
template or prompt as typed, before a model's own rendering such as ``mara (image 1)``) is the
same, made on at least two models. A prompt later re-run on one of those models joins its column:
it is still that prompt on that model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UnknownModelError
from ..models import catalog

if TYPE_CHECKING:
    from ..library.results import GenerationInfo

__all__ = ["Comparison", "ModelColumn", "find_comparisons", "model_name"]


@dataclass(frozen=True)
class ModelColumn:
    """One model's generations of a compared prompt, oldest first."""

    model: str  # the catalog id (or the provider's name for rows older than the catalog)
    name: str  # what a person reads: the model's display name
    gens: list[GenerationInfo]


@dataclass(frozen=True)
class Comparison:
    """One prompt on several models; columns in the order the models were first asked for."""

    source: str
    columns: list[ModelColumn]

    @property
    def newest(self) -> int:
        return max(g.id for c in self.columns for g in c.gens)


def model_name(gen: GenerationInfo) -> str:
    """The model's display name; a model no longer registered keeps the name it was run as."""
    try:
        return catalog.get(gen.model_id or gen.model).display_name
    except UnknownModelError:
        return gen.model_id or gen.model


def find_comparisons(gens: Iterable[GenerationInfo]) -> list[Comparison]:
    """Every prompt made on two or more models, the most recently made first."""
    by_source: dict[str, dict[str, list[GenerationInfo]]] = {}
    for gen in sorted(gens, key=lambda g: g.id):
        source = gen.template_source or gen.prompt
        by_source.setdefault(source, {}).setdefault(gen.model_id or gen.model, []).append(gen)
    found = [
        Comparison(source, [ModelColumn(model, model_name(runs[0]), runs)
                            for model, runs in columns.items()])
        for source, columns in by_source.items()
        if len(columns) > 1
    ]
    return sorted(found, key=lambda c: c.newest, reverse=True)
