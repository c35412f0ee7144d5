"""What each configured provider's account holds, read for the Account page.

One section per provider: WaveSpeed's balance, Runway's credits, tier limits and today's use
(``Generations.accounts``). A provider whose read fails (network, key refused) becomes one
error line in its own section, so one unreachable service neither hides the other nor turns
the page into a 500. The values are plain strings and rows; the template escapes them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import RefstudioError
from .pages import message_of

__all__ = ["ProviderAccount", "read_accounts", "rows_of"]

#: Summary keys never shown: the endpoint is configuration, not the account (and a key must
#: never reach a page even if a provider put one in its summary by mistake).
_HIDDEN = frozenset({"provider", "base_url", "api_key", "key", "runway_api_key"})
#: Labels for the keys the built-in providers report; anything else shows its own name.
_LABELS = {
    "balance": "Balance (US$)",
    "credit_balance": "Credits",
    "max_monthly_credit_spend": "Monthly credit limit",
    "models": "Per model",
    "max_concurrent": "at once",
    "max_daily": "per day",
    "used_today": "used today",
    "remaining_today": "left today",
    "note": "Note",
}


@dataclass
class ProviderAccount:
    """One provider's section: rows of (label, value), or the one line saying why not."""

    provider: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    error: str = ""


def configured_providers(studio: Any) -> list[str]:
    """Providers with a key: in the environment or user config, or given to this server
    (``provider_options``, as ``refstudio demo`` and the tests give the simulator's)."""
    from ..providers import config

    settings = config.effective_settings()
    options = studio.provider_options
    return [name for name in ("wavespeed", "runway")
            if settings.key_for(name) or options.get(name, {}).get("api_key")]


async def read_accounts(studio: Any) -> list[ProviderAccount]:
    """Each configured provider's account, one at a time (free reads, one call each)."""
    found: list[ProviderAccount] = []
    for name in configured_providers(studio):
        try:
            summaries = await studio.accounts(name)
        except RefstudioError as exc:
            found.append(ProviderAccount(name, error=_one_line(exc)))
            continue
        for summary in summaries:
            found.append(ProviderAccount(str(summary.get("provider", name)),
                                         rows=rows_of(summary)))
    return found


def rows_of(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary as label/value rows; a nested mapping (Runway's per-model limits) gives
    one row per entry, its fields joined on one line."""
    rows: list[tuple[str, str]] = []
    for key, value in summary.items():
        if key in _HIDDEN:
            continue
        label = _LABELS.get(key, key.replace("_", " "))
        if isinstance(value, dict):
            for sub, inner in value.items():
                rows.append((f"{label}: {sub}", _value(inner)))
        else:
            rows.append((label, _value(value)))
    return rows


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{_LABELS.get(k, k)} {_value(v)}" for k, v in value.items()
                         if k not in _HIDDEN)
    if value is None:
        return "not stated"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _one_line(exc: RefstudioError) -> str:
    text = " ".join(message_of(exc).split()) or type(exc).__name__
    return f"could not read the account: {text}"
