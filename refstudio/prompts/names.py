"""Reference names: the model's tag rule, normalisation, and did-you-mean suggestions."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from ..errors import InvalidNameError
from ..models.naming import NAME_PATTERN


def clean_name(raw: str) -> str:
    """Return ``raw`` without a leading ``@``, validated against the tag rule.

    Raises :class:`InvalidNameError` explaining the rule when the name breaks it.
    """
    name = raw[1:] if raw.startswith("@") else raw
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidNameError(
            f"invalid reference name {raw!r}: names are 3-16 characters, a letter first, "
            "then letters, digits or '_' (the model's tag rule)",
            hint="for example: mara, old_tavern, Hero2",
        )
    return name


def name_key(name: str) -> str:
    """The case-insensitive key a name is matched and kept unique by."""
    return name.lower()


def suggest(name: str, candidates: Iterable[str], limit: int = 3) -> list[str]:
    """Names among ``candidates`` close to ``name`` (case-insensitive), best first."""
    by_key = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), list(by_key), n=limit, cutoff=0.6)
    return [by_key[k] for k in close]
