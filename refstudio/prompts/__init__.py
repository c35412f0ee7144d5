"""The prompt language: Jinja2 templates, ``@name`` mentions, and their resolution.

Pure functions only: no database, no HTTP. The library plugs in through
:class:`ReferenceLookup`.
"""

from __future__ import annotations

from .mentions import LABEL_PATTERN, Mention, parse_mentions, prompt_to_send, scan, unescape
from .resolve import Binding, ReferenceLookup, RefImage, RefRecord, ResolvedPrompt, resolve
from .templates import (
    RefView,
    TemplateLimits,
    load_vars_file,
    parse_var_assignments,
    render_string,
    render_template,
)

__all__ = [
    "LABEL_PATTERN",
    "Binding",
    "Mention",
    "RefImage",
    "RefRecord",
    "RefView",
    "ReferenceLookup",
    "ResolvedPrompt",
    "TemplateLimits",
    "load_vars_file",
    "parse_mentions",
    "parse_var_assignments",
    "prompt_to_send",
    "render_string",
    "render_template",
    "resolve",
    "scan",
    "unescape",
]
