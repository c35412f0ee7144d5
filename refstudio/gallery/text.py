"""Turning user text into safe HTML: escape everything, then link ``@name`` mentions.

Prompts, descriptions, tags, labels, file names and errors are all user text. Templates escape
them automatically; the one place that builds markup by hand is :func:`linkify_mentions`, which
escapes the whole prompt *first* and only then wraps valid mentions in links, so nothing the
user wrote can ever become markup.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone

import jinja2
from markupsafe import Markup, escape

# A stored prompt is the text as sent: ``@@`` already undone and ``:label`` suffixes dropped,
# so a mention is ``@`` + a name following the tag rule, not glued to a word on either side
# (``me@example.com`` is an address; ``@mara_x`` past 16 characters is not a mention).
# Escaping never produces a word character before ``@`` (entities end in ``;``), so matching on
# the escaped text finds exactly the mentions of the original text.
_MENTION = re.compile(r"(?<![\w])@([A-Za-z][A-Za-z0-9_]{2,15})(?![\w])")


def html_environment(package: str) -> jinja2.Environment:
    """The Jinja environment of ``package``'s ``templates/`` folder, as every HTML page of
    refstudio renders: autoescape for every template, since all user text (prompts, names,
    tags, descriptions, labels, file names, errors) is escaped unless it is already Markup built
    here; an undefined name is an error, not an empty string."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def linkify_mentions(text: str, href_for: Callable[[str], str | None]) -> Markup:
    """``text`` escaped, with each ``@name`` that ``href_for`` resolves wrapped in a link.

    ``href_for(name)`` returns the link target for a mention, or None to leave it as text (a
    name that was not bound, or a reference since removed). Targets come from the gallery
    itself, never from the text.
    """
    escaped = str(escape(text))

    def link(match: re.Match[str]) -> str:
        href = href_for(match.group(1))
        if href is None:
            return match.group(0)
        return f'<a class="mention" href="{escape(href)}">{match.group(0)}</a>'

    return Markup(_MENTION.sub(link, escaped))


def format_time(value: datetime | None) -> str:
    """``2026-01-31 14:05:09 UTC``, or an empty string."""
    if value is None:
        return ""
    if value.tzinfo is None:  # SQLite hands back naive datetimes; they were stored as UTC
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(seconds: float | None) -> str:
    """``850 ms``, ``12.4 s`` or ``3 min 05 s``; empty for None."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"
