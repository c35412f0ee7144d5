"""User-level settings: the API key and provider endpoints, outside any project folder.

Order of precedence: environment variables, then the user config file
(``<platform config dir>/refstudio/config.toml``). The key is never written to a project,
a database, a log or an error message; :func:`masked` is how it is shown.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .fsutil import UnreadableFileError, read_regular_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV_KEY = "WAVESPEED_API_KEY"
ENV_BASE_URL = "WAVESPEED_BASE_URL"
ENV_CONFIG = "REFSTUDIO_CONFIG"
_KNOWN = {"wavespeed_api_key", "wavespeed_base_url", "default_provider"}
MAX_USER_CONFIG_BYTES = 1_000_000


def config_path() -> Path:
    explicit = os.environ.get(ENV_CONFIG)
    if explicit:
        return Path(explicit)
    from platformdirs import user_config_dir

    return Path(user_config_dir("refstudio")) / "config.toml"


def load_user_config() -> dict[str, Any]:
    path = config_path()
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(read_regular_text(path, limit=MAX_USER_CONFIG_BYTES))
    except UnreadableFileError as exc:
        raise ConfigError(f"cannot read {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]}", hint=f"known: {sorted(_KNOWN)}")
    return data


def api_key() -> str | None:
    """The WaveSpeed key from the environment, else the user config; None when neither."""
    return os.environ.get(ENV_KEY) or load_user_config().get("wavespeed_api_key") or None


def base_url() -> str | None:
    return os.environ.get(ENV_BASE_URL) or load_user_config().get("wavespeed_base_url") or None


def save_api_key(key: str) -> Path:
    """Store the key in the user config file (mode 0600), keeping other settings."""
    path = config_path()
    data = load_user_config()
    data["wavespeed_api_key"] = key.strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{k} = {_toml_string(str(v))}" for k, v in sorted(data.items())]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def masked(key: str | None) -> str:
    """How a key is shown: its last 4 characters at most."""
    if not key:
        return "(not set)"
    return "****" + key[-4:] if len(key) > 12 else "****"
