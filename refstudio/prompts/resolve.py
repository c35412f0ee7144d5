"""Resolving a prompt's ``@name`` mentions against the reference library.

The library is reached only through the small :class:`ReferenceLookup` protocol, so this module
knows no SQL and tests can use a dict. Rules (``shared/design.md``, "Reference syntax"):

* names match case-insensitively; a binding carries the name as stored;
* ``@name`` binds the reference's primary image (the first image when none is flagged primary),
  ``@name:label`` the image with that label (labels also match case-insensitively);
* mentioning one reference several times binds it once; mentions that would bind two *different*
  images of one reference (``@mara`` and ``@mara:side``) are an error, because a reference binds
  one image per prompt (mentions that land on the same image, e.g. ``@mara:front`` when
  ``front`` is the primary image, are fine);
* bindings come in order of first mention; at most the chosen model's ``max_references`` (and at
  least its ``min_references``).

Checks run in this order, so the first error a user sees is the most basic one: malformed
mention, unknown name, no images, unknown label, two images of one reference, too many.

Performance: the happy path costs one ``find`` per distinct name; ``all_names`` (which may list a
whole library) is called only to build a did-you-mean for an unknown name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..errors import MentionError, TooFewReferencesError, TooManyReferencesError
from ..models import catalog
from ..models.request import BoundImage
from ..models.spec import ModelSpec
from .mentions import Mention, line_of, scan
from .names import suggest

__all__ = [
    "Binding",
    "RefImage",
    "RefRecord",
    "ReferenceLookup",
    "ResolvedPrompt",
    "resolve",
]


@dataclass(frozen=True)
class RefImage:
    """One image of a reference, as the library describes it."""

    image_id: int
    label: str | None
    is_primary: bool
    sha256: str
    path: str
    width: int
    height: int
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class RefRecord:
    """A reference with its images in the library's order."""

    name: str
    kind: str
    description: str
    tags: tuple[str, ...]
    images: tuple[RefImage, ...]


class ReferenceLookup(Protocol):
    """What resolution needs from the library."""

    def find(self, name: str) -> RefRecord | None:
        """The reference called ``name`` (case-insensitively), or None."""
        ...

    def all_names(self) -> list[str]:
        """Every reference name; used only to suggest a name after a miss."""
        ...


@dataclass(frozen=True)
class Binding:
    """One reference bound into a prompt: the name as stored, the chosen image, its mentions."""

    name: str
    label: str | None
    image: RefImage
    mentions: tuple[Mention, ...]

    @property
    def positions(self) -> tuple[int, ...]:
        """Start offsets of this reference's mentions in the resolved text."""
        return tuple(m.start for m in self.mentions)


@dataclass(frozen=True)
class ResolvedPrompt:
    """A prompt whose mentions are bound to images.

    ``text`` is the prompt as given; ``text_to_send`` is what a provider receives: escapes undone,
    ``:label`` suffixes dropped, and each mentioned name spelled as stored (``@Mara`` -> ``@mara``)
    so the ``@tag`` in the text equals the tag a provider such as Runway gets with the image
    (Runway does not document whether tags match case-insensitively).
    """

    text: str
    text_to_send: str
    bindings: tuple[Binding, ...]

    def bound_images(self, url_for: Callable[[RefImage], str]) -> list[BoundImage]:
        """The provider-facing image list in binding order; ``url_for`` gives each uploaded URL."""
        return [BoundImage(tag=b.name, url=url_for(b.image)) for b in self.bindings]


def _error(
    text: str, mention: Mention, message: str, hint: str | None, source: str | None
) -> MentionError:
    return MentionError(
        message,
        hint=hint,
        position=mention.start,
        source=source,
        line=line_of(text, mention.start),
    )


def _pick_image(
    text: str, record: RefRecord, mention: Mention, source: str | None
) -> RefImage:
    if not record.images:
        raise _error(
            text,
            mention,
            f"reference @{record.name} has no images (at position {mention.start})",
            "add an image to it first",
            source,
        )
    if mention.label is None:
        for image in record.images:
            if image.is_primary:
                return image
        return record.images[0]
    wanted = mention.label.lower()
    for image in record.images:
        if image.label is not None and image.label.lower() == wanted:
            return image
    labels = [i.label for i in record.images if i.label]
    have = (
        "its labels are " + ", ".join(labels) if labels else "none of its images has a label"
    )
    raise _error(
        text,
        mention,
        f"reference @{record.name} has no image labelled {mention.label!r} "
        f"(at position {mention.start}); {have}",
        f"write @{record.name} for its primary image" if labels else None,
        source,
    )


def resolve(
    text: str, lookup: ReferenceLookup, *, source: str | None = None,
    model: ModelSpec | None = None,
) -> ResolvedPrompt:
    """Bind every ``@name`` in ``text`` to one image of a reference.

    ``model`` sets the reference limits (None: the default model). ``source`` (e.g. a template
    name) is copied into raised errors. Raises
    :class:`~refstudio.errors.MentionError` (malformed mention, unknown name with did-you-mean,
    unknown label listing the existing ones, reference without images, two images of one
    reference), :class:`~refstudio.errors.TooManyReferencesError` (naming every reference and
    the model's limit) and :class:`~refstudio.errors.TooFewReferencesError`.
    """
    spec = model or catalog.default_model()
    mentions, sent = scan(text, source=source)
    if not mentions:
        if spec.min_references:
            raise _too_few(spec, 0, source)
        return ResolvedPrompt(text, sent, ())

    # Group by case-insensitive name, keeping order of first mention.
    groups: dict[str, list[Mention]] = {}
    for m in mentions:
        groups.setdefault(m.name.lower(), []).append(m)

    records: dict[str, RefRecord] = {}
    for key, group in groups.items():
        record = lookup.find(group[0].name)
        if record is None:
            first = group[0]
            close = suggest(first.name, lookup.all_names())
            hint = "did you mean " + " or ".join("@" + c for c in close) + "?" if close else None
            raise _error(
                text,
                first,
                f"unknown reference @{first.name} (at position {first.start})",
                hint or "see the library's list of references",
                source,
            )
        records[key] = record

    bindings: list[Binding] = []
    for key, group in groups.items():
        record = records[key]
        chosen: tuple[Mention, RefImage] | None = None
        for m in group:
            image = _pick_image(text, record, m, source)
            if chosen is None:
                chosen = (m, image)
            elif image.image_id != chosen[1].image_id:
                raise _error(
                    text,
                    m,
                    f"{chosen[0].raw} and {m.raw} (at position {m.start}) pick two different "
                    f"images of @{record.name}; a reference binds one image per prompt",
                    "mention it with one label only",
                    source,
                )
        assert chosen is not None  # every group has at least one mention
        bindings.append(Binding(record.name, chosen[0].label, chosen[1], tuple(group)))

    limit = spec.max_references
    if len(bindings) > limit:
        extra = bindings[limit].mentions[0]
        names = ", ".join("@" + b.name for b in bindings)
        raise TooManyReferencesError(
            f"the prompt mentions {len(bindings)} references ({names}); "
            f"{spec.alias} ({spec.id}) takes at most {limit}",
            hint="drop a reference, combine them into one image first, or choose a model that "
            "takes more (`refstudio models`)",
            position=extra.start,
            source=source,
            line=line_of(text, extra.start),
        )

    if len(bindings) < spec.min_references:
        raise _too_few(spec, len(bindings), source)
    if any(m.name != records[m.name.lower()].name for m in mentions):
        sent = _respell(text, mentions, records)
    return ResolvedPrompt(text, sent, tuple(bindings))


def _too_few(spec: ModelSpec, count: int, source: str | None) -> TooFewReferencesError:
    return TooFewReferencesError(
        f"{spec.alias} ({spec.id}) needs at least {spec.min_references} reference image(s); "
        f"the prompt mentions {count}",
        hint="mention a reference with @name, or choose a model that works from text alone "
        "(`refstudio models`)",
        source=source,
    )


def _respell(text: str, mentions: list[Mention], records: dict[str, RefRecord]) -> str:
    """Rebuild the text to send with each mention spelled as its reference is stored."""
    # Cheap to redo with the scanner's rules: replace only the name part of each mention and
    # let the scanner undo escapes and drop labels exactly as it always does.
    parts: list[str] = []
    pos = 0
    for m in mentions:
        parts.append(text[pos : m.start + 1])
        parts.append(records[m.name.lower()].name)
        pos = m.start + 1 + len(m.name)
    parts.append(text[pos:])
    return scan("".join(parts))[1]
