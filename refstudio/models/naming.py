"""The rule every reference name follows, whatever model it is sent to.

It is Runway's tag rule (3-16 characters, a letter first, then letters, digits or ``_``), the
strictest of the models refstudio knows: a name that satisfies it can be a ``@tag`` on Runway's
models and plain text everywhere else, so a library stays portable to every model.
"""

from __future__ import annotations

import re

__all__ = ["NAME_PATTERN"]

NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{2,15}$")
