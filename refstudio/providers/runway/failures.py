"""What Runway's task failure codes mean, in words a user can act on.

Codes (``failureCode`` of a FAILED task) are dotted, most general first: ``SAFETY.INPUT.TEXT``.
``SAFETY.*`` is moderation: the same request would be refused again, so refstudio never resends
it on its own (and ``SAFETY.INPUT.*`` is not refunded). See Runway's "task failures" page.
"""

from __future__ import annotations

__all__ = ["explain", "is_moderation"]

#: Longest known prefix first wins.
_MEANINGS: dict[str, str] = {
    "SAFETY.INPUT.TEXT": "Runway's moderation refused the prompt text",
    "SAFETY.INPUT.IMAGE": "Runway's moderation refused a reference image",
    "SAFETY.INPUT": "Runway's moderation refused the input",
    "SAFETY.OUTPUT": "Runway's moderation withheld the generated image",
    "SAFETY": "Runway's moderation refused the request",
    "INTERNAL.BAD_OUTPUT": "the model produced an output Runway rejected as unusable",
    "INTERNAL": "Runway failed internally",
    "ASSET.INVALID": "Runway could not read an input image (format, size or an expired upload)",
    "ASSET": "Runway could not read an input",
    "INPUT_PREPROCESSING": "Runway could not prepare the input",
}


def is_moderation(code: str | None) -> bool:
    return bool(code) and str(code).upper().startswith("SAFETY")


def explain(code: str | None, failure: str = "") -> str:
    """One line: the code, what it means, what to do, and Runway's own words."""
    code = (code or "").strip()
    upper = code.upper()
    meaning = next((text for prefix, text in _MEANINGS.items()
                    if upper == prefix or upper.startswith(prefix + ".")),
                   "the task failed")
    if is_moderation(code):
        advice = "not retried: the same request would be refused again; change the prompt or images"
        if upper.startswith("SAFETY.INPUT"):
            advice += " (input moderation failures are not refunded)"
    elif upper.startswith("INTERNAL"):
        advice = "`refstudio retry` sends it again (may cost again)"
    else:
        advice = "check the inputs, then `refstudio retry`"
    words = f" (Runway: {failure.strip()})" if failure and failure.strip() else ""
    head = f"{code}: " if code else ""
    return f"{head}{meaning}; {advice}{words}"
