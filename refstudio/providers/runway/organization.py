"""Runway's organisation as ``GET /v1/organization`` describes it: credits, tier, usage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from refstudio.errors import ProtocolError

__all__ = ["ModelLimits", "Organization", "parse_organization"]


@dataclass(frozen=True)
class ModelLimits:
    """One model's tier limits (None: no limit) and today's use."""

    max_concurrent: int | None
    max_daily: int | None
    used_today: int

    @property
    def remaining_today(self) -> int | None:
        return None if self.max_daily is None else max(0, self.max_daily - self.used_today)


@dataclass(frozen=True)
class Organization:
    credit_balance: int
    max_monthly_credit_spend: int | None
    models: Mapping[str, ModelLimits]

    def limits(self, model: str) -> ModelLimits:
        """The limits of ``model`` (Runway's own name); a model the tier does not list has no
        stated limit and no use today."""
        return self.models.get(model, ModelLimits(None, None, 0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "credit_balance": self.credit_balance,
            "max_monthly_credit_spend": self.max_monthly_credit_spend,
            "models": {name: {"max_concurrent": m.max_concurrent, "max_daily": m.max_daily,
                              "used_today": m.used_today, "remaining_today": m.remaining_today}
                       for name, m in sorted(self.models.items())},
        }


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def parse_organization(data: Any) -> Organization:
    """An :class:`Organization` from the endpoint's JSON; ProtocolError when it is not one."""
    if not isinstance(data, Mapping) or _int(data.get("creditBalance")) is None:
        raise ProtocolError("Runway's organization answer has no creditBalance")
    tier = _map(data.get("tier"))
    tier_models = _map(tier.get("models"))
    usage_models = _map(_map(data.get("usage")).get("models"))
    models: dict[str, ModelLimits] = {}
    for name in set(tier_models) | set(usage_models):
        limits = _map(tier_models.get(name))
        used = _map(usage_models.get(name))
        models[str(name)] = ModelLimits(
            max_concurrent=_int(limits.get("maxConcurrentGenerations")),
            max_daily=_int(limits.get("maxDailyGenerations")),
            used_today=_int(used.get("dailyGenerations")) or 0,
        )
    credits = _int(data.get("creditBalance"))
    assert credits is not None
    return Organization(credits, _int(tier.get("maxMonthlyCreditSpend")), models)
