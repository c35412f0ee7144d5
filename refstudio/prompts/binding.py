"""The text each model receives, by its binding style.

* ``tag`` (Gen-4): the ``@name`` text as written (escapes undone, ``:label`` dropped, names
  spelled as stored); images go in order of first mention. :attr:`ResolvedPrompt.text_to_send`.
* ``order`` (Nano Banana, Seedream, FLUX Kontext): the models bind images by position, so each
  reference's *first* mention becomes ``mara (image 1)`` and later ones plain ``mara``; the
  images go in the same order, so "image N" is the N-th image sent. The form is a template with
  ``{name}``, ``{n}`` and ``{label}`` (``DEFAULT_ORDER_FORM``); a project or a call may replace
  it, e.g. ``"the {name} in image {n}"`` or ``"image {n}"``.
* ``none``: the text as sent to a tag model (the resolver has already refused any reference).
"""

from __future__ import annotations

import string

from ..errors import ParameterError
from ..models.spec import ModelSpec
from .mentions import Mention, unescape
from .resolve import ResolvedPrompt

__all__ = ["DEFAULT_LATER_FORM", "DEFAULT_ORDER_FORM", "check_form", "text_for_model"]

DEFAULT_ORDER_FORM = "{name} (image {n})"
DEFAULT_LATER_FORM = "{name}"
_FIELDS = frozenset({"name", "n", "label"})


def check_form(form: str) -> str:
    """Return ``form`` if it is a usable order form; ParameterError naming the fields allowed."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(form) if f is not None}
    except ValueError as exc:
        raise ParameterError(f"order form {form!r} is not a valid template: {exc}") from None
    unknown = fields - _FIELDS
    if unknown or ("n" not in fields and "{n}" not in form):
        what = f"unknown field {{{sorted(unknown)[0]}}}" if unknown else "no {n}"
        raise ParameterError(f"order form {form!r} has {what}; it may use {{name}}, {{n}} and "
                             "{label}, and must say {n} (the image's position)")
    if "@" in form:
        raise ParameterError(f"order form {form!r} may not contain '@'")
    return form


def text_for_model(
    resolved: ResolvedPrompt, model: ModelSpec, *, order_form: str | None = None,
    later_form: str = DEFAULT_LATER_FORM,
) -> str:
    """The prompt text ``model`` receives for ``resolved`` (see the module docstring)."""
    if model.binding != "order" or not resolved.bindings:
        return resolved.text_to_send
    form = check_form(order_form) if order_form is not None else DEFAULT_ORDER_FORM
    placed: list[tuple[Mention, str]] = []
    for n, binding in enumerate(resolved.bindings, start=1):
        for i, mention in enumerate(binding.mentions):
            words = (form if i == 0 else later_form).format(
                name=binding.name, n=n, label=mention.label or "")
            placed.append((mention, words))
    placed.sort(key=lambda p: p[0].start)
    # Between mentions the scanner changes only "@@" into "@" (see mentions.scan).
    parts: list[str] = []
    pos = 0
    text = resolved.text
    for mention, words in placed:
        parts.append(unescape(text[pos:mention.start]))
        parts.append(words)
        pos = mention.end
    parts.append(unescape(text[pos:]))
    return "".join(parts)
