"""User-level settings: the API key and provider endpoints, outside any project folder.

Order of precedence: environment variables, then the user config file
(``<platform config dir>/refstudio/config.toml``). The key is never written to a project,
a database, a log or an error message; :func:`masked` is how it is shown.

:func:`effective_settings` is the one place that decides which provider a command uses; both
``refstudio config`` and every command that generates read it, so what ``config`` shows is what
``gen``, ``render`` and ``run`` do.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..storage.fsutil import UnreadableFileError, read_regular_text

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
        data: dict[str, Any] = tomllib.loads(read_regular_text(path, limit=MAX_USER_CONFIG_BYTES))
    except UnreadableFileError as exc:
        raise ConfigError(f"cannot read {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except RecursionError:  # tomllib recurses: a value thousands of levels deep
        raise ConfigError(f"cannot read {path}: a value is nested too deeply") from None
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]}", hint=f"known: {sorted(_KNOWN)}")
    return data


def api_key() -> str | None:
    """The WaveSpeed key from the environment, else the user config; None when neither."""
    return os.environ.get(ENV_KEY) or load_user_config().get("wavespeed_api_key") or None


def base_url() -> str | None:
    return os.environ.get(ENV_BASE_URL) or load_user_config().get("wavespeed_base_url") or None


DEFAULT_BASE_URL = "https://api.wavespeed.ai"


@dataclass(frozen=True)
class EffectiveSettings:
    """The settings a command runs with, and where the provider choice came from."""

    config_file: Path
    api_key: str | None
    base_url: str
    default_provider: str
    #: Why that provider: "given", "refstudio.toml", "user config", "API key" or "no API key".
    provider_source: str

    def __repr__(self) -> str:  # the key never shows, even in a debugger or a log
        return (f"EffectiveSettings(default_provider={self.default_provider!r}, "
                f"api_key={masked(self.api_key)!r}, base_url={self.base_url!r})")

    def to_dict(self) -> dict[str, str]:
        """What ``refstudio config`` prints (the key masked)."""
        return {
            "config_file": str(self.config_file),
            "wavespeed_api_key": masked(self.api_key),
            "wavespeed_base_url": self.base_url,
            "default_provider": self.default_provider,
            "provider_source": self.provider_source,
        }


def effective_settings(
    provider: str | None = None, *, project_provider: str | None = None
) -> EffectiveSettings:
    """Resolve the settings once: key and endpoint from the environment, then the user config;
    the provider from ``provider`` (an explicit choice), then the project's
    ``[defaults].provider``, then the user config's ``default_provider``, then wavespeed when
    a key is set (in either place), else offline."""
    user = load_user_config()
    key = os.environ.get(ENV_KEY) or user.get("wavespeed_api_key") or None
    url = os.environ.get(ENV_BASE_URL) or user.get("wavespeed_base_url") or DEFAULT_BASE_URL
    if provider:
        chosen, source = provider, "given"
    elif project_provider:
        chosen, source = project_provider, "refstudio.toml"
    elif user.get("default_provider"):
        chosen, source = str(user["default_provider"]), "user config"
    elif key:
        chosen, source = "wavespeed", "API key"
    else:
        chosen, source = "offline", "no API key"
    return EffectiveSettings(config_path(), key, url, chosen, source)


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
