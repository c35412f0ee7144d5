"""``@name`` mentions in prompt text: finding them, and the text a provider receives.

The syntax (``shared/design.md``, "Reference syntax"), as this module decides it:

* ``@name`` mentions a reference; ``@name:label`` mentions one named image of it. A name is the
  longest run of ``[A-Za-z0-9_]`` after the ``@`` and must follow the model's tag rule
  (:data:`refstudio.models.naming.NAME_PATTERN`: 3-16 characters, a letter first). A label is the
  longest run of ``[A-Za-z0-9_-]`` after the colon, 1-32 characters.
* ``@`` followed by an ASCII letter is always *meant* as a mention, so a run that breaks the
  length rule (``@ab``, ``@a_name_far_too_long``) or runs into a non-ASCII letter (``@José``) is a
  :class:`~refstudio.errors.MentionError` rather than silently sent text: the model would see an
  ``@tag`` with no image behind it. Writing ``@@`` gives a literal ``@`` when text is meant.
* ``@`` followed by anything else (space, digit, punctuation, end of text) is plain text.
* ``@`` preceded by a letter, digit or ``_`` (``me@example.com``) is plain text.
* A colon not followed by a label character is text: ``@mara: hello`` is ``@mara`` + ``": hello"``.
* ``@@`` is an escaped ``@``, wherever it stands: ``@@mara`` is the literal text ``@mara``.

The text sent to a provider (:func:`prompt_to_send`) keeps each mention as ``@name`` but drops the
``:label`` suffix, because labels are a refstudio notion (they pick which image is bound); the
model only knows ``@tag``. Escapes are undone at the same time.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from ..errors import MentionError
from ..models.naming import NAME_PATTERN

__all__ = ["LABEL_PATTERN", "Mention", "parse_mentions", "prompt_to_send", "scan", "unescape"]

#: A label picks one image of a reference: ``@mara:side``.
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
LABEL_MAX = 32

_NAME_RUN = re.compile(r"[A-Za-z0-9_]*")
_LABEL_RUN = re.compile(r"[A-Za-z0-9_-]*")
_NAME_HINT = "names are 3-16 characters, a letter first, then letters, digits or '_'"
_LABEL_HINT = f"labels are 1-{LABEL_MAX} characters: letters, digits, '_' or '-'"
_ESCAPE_HINT = "write @@ for a literal '@'"
# "" is not in it, so the end of the text after "@" reads as "not a name".
_ASCII_LETTERS = frozenset(string.ascii_letters)


@dataclass(frozen=True)
class Mention:
    """One ``@name`` or ``@name:label`` in a prompt.

    ``start``/``end`` are offsets into the parsed text (``text[start:end] == raw``); ``name`` is
    spelled as written (matching is case-insensitive elsewhere); ``label`` is None for ``@name``.
    """

    name: str
    label: str | None
    start: int
    end: int
    raw: str


def _is_word_char(ch: str) -> bool:
    # Unicode-aware on purpose: "josé@mail.com" is an address too.
    return ch.isalnum() or ch == "_"


def line_of(text: str, position: int) -> int:
    """The 1-based line number of ``position`` in ``text``."""
    return text.count("\n", 0, position) + 1


def _malformed(text: str, start: int, end: int, why: str, source: str | None) -> MentionError:
    raw = text[start:end]
    return MentionError(
        f"malformed mention {raw!r} at position {start}: {why}",
        hint=_ESCAPE_HINT,
        position=start,
        source=source,
        line=line_of(text, start),
    )


def scan(text: str, *, source: str | None = None) -> tuple[list[Mention], str]:
    """Parse ``text`` once: return its mentions and the text to send to a provider.

    This is the single scanner behind :func:`parse_mentions` and :func:`prompt_to_send`, so the
    two can never disagree. ``source`` (e.g. a template name) is copied into raised errors.

    Raises :class:`MentionError` for a malformed mention (see the module docstring).
    """
    at = text.find("@")
    if at < 0:  # the common case for plain prompts: no work, no copy
        return [], text
    mentions: list[Mention] = []
    out: list[str] = []
    pos = 0  # text[pos:at] is still to be copied as is
    n = len(text)
    while at >= 0:
        nxt = at + 1
        if nxt < n and text[nxt] == "@":
            # Escape: "@@" -> "@". Checked before anything else so "me@@x" stays text too.
            out.append(text[pos:nxt])
            pos = nxt + 1
            at = text.find("@", pos)
            continue
        if (at > 0 and _is_word_char(text[at - 1])) or text[nxt : nxt + 1] not in _ASCII_LETTERS:
            # An address, or "@" not followed by a name: plain text.
            at = text.find("@", nxt)
            continue
        name_end = _NAME_RUN.match(text, nxt).end()  # type: ignore[union-attr]
        name = text[nxt:name_end]
        if name_end < n and _is_word_char(text[name_end]):
            why = f"{text[name_end]!r} cannot be part of a name; {_NAME_HINT}"
            raise _malformed(text, at, name_end + 1, why, source)
        if not NAME_PATTERN.fullmatch(name):
            why = f"the name is {len(name)} characters long; {_NAME_HINT}"
            raise _malformed(text, at, name_end, why, source)
        label: str | None = None
        end = name_end
        if name_end + 1 < n and text[name_end] == ":":
            label_end = _LABEL_RUN.match(text, name_end + 1).end()  # type: ignore[union-attr]
            if label_end > name_end + 1:  # a colon then a non-label char: no label
                label = text[name_end + 1 : label_end]
                if len(label) > LABEL_MAX:
                    raise _malformed(text, at, label_end, _LABEL_HINT, source)
                if label_end < n and _is_word_char(text[label_end]):
                    raise _malformed(text, at, label_end + 1, _LABEL_HINT, source)
                end = label_end
        mentions.append(Mention(name, label, at, end, text[at:end]))
        # The sent text keeps "@name" and drops ":label" (the model knows only @tag).
        out.append(text[pos:name_end])
        pos = end
        at = text.find("@", end)
    out.append(text[pos:])
    return mentions, "".join(out)


def parse_mentions(text: str, *, source: str | None = None) -> list[Mention]:
    """Return the mentions in ``text`` in order of appearance.

    Raises :class:`MentionError` (with ``position`` and ``line``) for a malformed mention.
    """
    return scan(text, source=source)[0]


def prompt_to_send(text: str, *, source: str | None = None) -> str:
    """The prompt as a provider receives it: ``@@`` -> ``@``, ``@name:label`` -> ``@name``.

    Mentions are otherwise kept exactly as written; text without ``@`` comes back unchanged.
    """
    return scan(text, source=source)[1]


def unescape(text: str) -> str:
    """Turn each ``@@`` into ``@`` (left to right, as the scanner reads them)."""
    return text.replace("@@", "@")
