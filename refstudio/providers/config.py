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
#: Runway's own variables, the names its official SDK reads.
ENV_RUNWAY_KEY = "RUNWAYML_API_SECRET"
ENV_RUNWAY_BASE_URL = "RUNWAYML_BASE_URL"
_KNOWN = {"wavespeed_api_key", "wavespeed_base_url", "default_provider", "runway_api_key",
          "runway_base_url"}
#: Per provider: (user-config key of its API key, environment variable of it).
KEY_SETTINGS = {"wavespeed": ("wavespeed_api_key", ENV_KEY),
                "runway": ("runway_api_key", ENV_RUNWAY_KEY)}
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
DEFAULT_RUNWAY_BASE_URL = "https://api.dev.runwayml.com"


@dataclass(frozen=True)
class EffectiveSettings:
    """The settings a command runs with, and where the provider choice came from."""

    config_file: Path
    api_key: str | None
    base_url: str
    default_provider: str
    #: Why that provider: "given", "refstudio.toml", "user config", "API key" or "no API key".
    provider_source: str
    runway_api_key: str | None = None
    runway_base_url: str = DEFAULT_RUNWAY_BASE_URL

    def __repr__(self) -> str:  # the key never shows, even in a debugger or a log
        return (f"EffectiveSettings(default_provider={self.default_provider!r}, "
                f"api_key={masked(self.api_key)!r}, base_url={self.base_url!r}, "
                f"runway_api_key={masked(self.runway_api_key)!r})")

    def key_for(self, provider: str) -> str | None:
        """The API key of ``provider`` (None when unset or the provider takes none)."""
        return {"wavespeed": self.api_key, "runway": self.runway_api_key}.get(provider)

    def base_url_for(self, provider: str) -> str | None:
        return {"wavespeed": self.base_url, "runway": self.runway_base_url}.get(provider)

    def to_dict(self) -> dict[str, str]:
        """What ``refstudio config`` prints (the key masked)."""
        return {
            "config_file": str(self.config_file),
            "wavespeed_api_key": masked(self.api_key),
            "wavespeed_base_url": self.base_url,
            "runway_api_key": masked(self.runway_api_key),
            "runway_base_url": self.runway_base_url,
            "default_provider": self.default_provider,
            "provider_source": self.provider_source,
        }


def effective_settings(
    provider: str | None = None, *, project_provider: str | None = None
) -> EffectiveSettings:
    """Resolve the settings once: key and endpoint from the environment, then the user config;
    the provider from ``provider`` (an explicit choice), then the project's
    ``[defaults].provider``, then the user config's ``default_provider``, then wavespeed when
    its key is set (in either place), then runway when its key is, else offline."""
    user = load_user_config()
    key = os.environ.get(ENV_KEY) or user.get("wavespeed_api_key") or None
    url = os.environ.get(ENV_BASE_URL) or user.get("wavespeed_base_url") or DEFAULT_BASE_URL
    runway_key = os.environ.get(ENV_RUNWAY_KEY) or user.get("runway_api_key") or None
    runway_url = (os.environ.get(ENV_RUNWAY_BASE_URL) or user.get("runway_base_url")
                  or DEFAULT_RUNWAY_BASE_URL)
    if provider:
        chosen, source = provider, "given"
    elif project_provider:
        chosen, source = project_provider, "refstudio.toml"
    elif user.get("default_provider"):
        chosen, source = str(user["default_provider"]), "user config"
    elif key:
        chosen, source = "wavespeed", "API key"
    elif runway_key:
        chosen, source = "runway", "Runway API key"
    else:
        chosen, source = "offline", "no API key"
    return EffectiveSettings(config_path(), key, url, chosen, source, runway_key, runway_url)


def save_api_key(key: str, provider: str = "wavespeed") -> Path:
    """Store ``provider``'s key in the user config file (mode 0600), keeping other settings."""
    if provider not in KEY_SETTINGS:
        raise ConfigError(f"no API key setting for provider {provider!r}",
                          hint=f"one of: {', '.join(sorted(KEY_SETTINGS))}")
    path = config_path()
    data = load_user_config()
    data[KEY_SETTINGS[provider][0]] = key.strip()
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
