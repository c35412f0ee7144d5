"""WaveSpeed's account and catalog endpoints: what the service publishes about its models, the
balance, and a price quote. All free reads (shared/protocol/wavespeed-models.md).

* ``GET /api/v3/models`` -> every model with its request JSON Schema (``models sync`` compares
  them with the built-in descriptions, :func:`refstudio.models.schema.diff_schemas`);
* ``GET /api/v3/balance`` -> ``{balance}`` in US dollars;
* ``POST /api/v3/model/pricing`` ``{model_id, inputs}`` -> ``{unit_price, currency}`` (the
  documented path; the official MCP server uses ``/api/v3/model/price`` -> ``{price}``: tried
  second).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import ProtocolError, RequestRejectedError
from .client import WaveSpeedProvider

__all__ = ["balance", "catalog_schemas", "quote"]

CATALOG_PATH = "/api/v3/models"
BALANCE_PATH = "/api/v3/balance"
PRICING_PATHS = ("/api/v3/model/pricing", "/api/v3/model/price")


async def catalog_schemas(provider: WaveSpeedProvider) -> dict[str, dict[str, Any]]:
    """Model path -> its request JSON Schema, as the service publishes them."""
    data = await provider.read_api("GET", CATALOG_PATH)
    items = data.get("items", data) if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise ProtocolError("WaveSpeed's model catalog is not a list")
    schemas: dict[str, dict[str, Any]] = {}
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("model_id"), str):
            continue
        found: Any = {}
        api = item.get("api_schema")
        entries = api.get("api_schemas") if isinstance(api, Mapping) else None
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, Mapping) and isinstance(entry.get("request_schema"), Mapping):
                found = entry["request_schema"]
                break
        schemas[item["model_id"]] = dict(found)
    return schemas


async def balance(provider: WaveSpeedProvider) -> float:
    """US dollars left on the account."""
    data = await provider.read_api("GET", BALANCE_PATH)
    value = data.get("balance") if isinstance(data, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError("WaveSpeed's balance answer has no balance")
    return float(value)


async def quote(provider: WaveSpeedProvider, model: str, inputs: Mapping[str, Any]) -> float | None:
    """The service's price of one run of ``model`` with ``inputs``; None when it quotes none
    (neither pricing path exists on this server)."""
    for path in PRICING_PATHS:
        try:
            data = await provider.read_api("POST", path, {"model_id": model,
                                                          "inputs": dict(inputs)})
        except RequestRejectedError as exc:
            if exc.status_code == 404:
                continue
            raise
        if isinstance(data, Mapping):
            for key in ("unit_price", "discounted_price", "price"):
                value = data.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    return float(value)
        raise ProtocolError(f"WaveSpeed {path} answered without a price")
    return None
