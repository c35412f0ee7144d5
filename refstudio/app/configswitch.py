"""Pointing a project's ``refstudio.toml`` at another database or media store (``--switch``).

Only the ``database_url`` / ``media_url`` lines change; comments, order and every other setting
stay as the user wrote them. The file is replaced atomically (a temporary file renamed over it),
so a crash leaves the old settings or the new ones, never half a file.
"""

from __future__ import annotations

import json
import re
import sys

from ..errors import ConfigError
from ..storage.fsutil import atomic_write_bytes
from .project import CONFIG_FILE, Project

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _line(key: str, value: str) -> str:
    return f"{key} = {json.dumps(value)}"  # a JSON string is a valid TOML basic string


def switch_config(project: Project, values: dict[str, str]) -> None:
    """Set top-level keys ``values`` (database_url, media_url) in the project's refstudio.toml.

    The caller has checked the values (no password in a database URL: the file is shared).
    """
    path = project.root / CONFIG_FILE
    lines = path.read_text(encoding="utf-8").splitlines()
    first_table = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("[")),
                       len(lines))
    missing: list[str] = []
    for key, value in values.items():
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        hits = [i for i in range(first_table) if pattern.match(lines[i])]
        if hits:
            lines[hits[0]] = _line(key, value)
        else:
            missing.append(_line(key, value))
    lines[first_table:first_table] = missing
    new_text = "\n".join(lines) + "\n"
    # Checked before it replaces the old file: a line we could not place safely (a multi-line
    # value, say) must not leave the project unreadable.
    try:
        parsed = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError:
        parsed = {}
    if any(parsed.get(key) != value for key, value in values.items()):
        raise ConfigError(f"cannot rewrite {path} safely; the copy is done, set "
                          + " and ".join(f"{k} = {json.dumps(v)}" for k, v in values.items())
                          + " there by hand")
    atomic_write_bytes(path, new_text.encode("utf-8"), durable=True)
