"""A model's request body as JSON Schema, in the shape WaveSpeed's catalog publishes, and the
differences between two such schemas.

``GET /api/v3/models`` answers ``[{model_id, name, type, base_price, api_schema: {api_schemas:
[{request_schema: {properties, required, x-order-properties}}]}}]``. :func:`request_schema`
derives that schema from a :class:`~refstudio.models.spec.ModelSpec` (the simulator publishes
and enforces it); :func:`diff_schemas` compares ours with the service's for ``models sync``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .spec import ModelSpec

__all__ = ["TRANSPORT_FIELDS", "Drift", "catalog_entry", "diff_schemas", "request_schema"]

#: Fields every WaveSpeed model takes that are about the transport, not the image.
TRANSPORT_FIELDS: dict[str, dict[str, Any]] = {
    "enable_base64_output": {"type": "boolean", "default": False},
    "enable_sync_mode": {"type": "boolean", "default": False},
}
#: JSON Schema keywords that describe a field's values (compared by ``models sync``).
_COMPARED = ("type", "enum", "minimum", "maximum", "minItems", "maxItems", "maxLength",
             "pattern", "x-side-min", "x-side-max")


def _simplify(prop: Mapping[str, Any]) -> dict[str, Any]:
    """Pydantic's schema of one option -> a flat one: ``X | None`` becomes X, titles go."""
    prop = dict(prop)
    any_of = prop.pop("anyOf", None)
    if any_of:
        kinds = [p for p in any_of if p.get("type") != "null"]
        if len(kinds) == 1:
            prop = {**kinds[0], **prop}
    prop.pop("title", None)
    if "const" in prop and "enum" not in prop:
        prop["enum"] = [prop.pop("const")]
    if prop.get("default", 0) is None:
        prop.pop("default")
    return prop


def request_schema(spec: ModelSpec) -> dict[str, Any]:
    """The JSON Schema of ``spec``'s request body (no extra properties allowed)."""
    props: dict[str, Any] = {"prompt": {"type": "string", "minLength": 1}}
    if spec.prompt_max is not None:
        props["prompt"]["maxLength"] = spec.prompt_max
    required = ["prompt"]
    if spec.reference_field:
        props[spec.reference_field] = {
            "type": "array", "items": {"type": "string", "format": "uri"},
            "minItems": spec.min_references, "maxItems": spec.max_references,
        }
        if spec.min_references:
            required.append(spec.reference_field)
    options = spec.options.model_json_schema()
    for name, prop in options.get("properties", {}).items():
        props[name] = _simplify(prop)
    props.update(TRANSPORT_FIELDS)
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
        "x-order-properties": list(props),
    }


def catalog_entry(spec: ModelSpec) -> dict[str, Any]:
    """One item of ``GET /api/v3/models`` for ``spec``."""
    return {
        "model_id": spec.model,
        "name": spec.display_name,
        "type": "image-to-image" if spec.min_references else "text-to-image",
        "base_price": spec.price.base,
        "api_schema": {"api_schemas": [{"type": "model_run",
                                        "request_schema": request_schema(spec)}]},
    }


@dataclass(frozen=True)
class Drift:
    """One difference between our description of a model and the service's."""

    model: str  # the provider's model name
    kind: str  # "new model", "removed model", "new field", "removed field", "changed field",
    #            "now required", "no longer required"
    field: str = ""
    ours: Any = None
    theirs: Any = None

    def __str__(self) -> str:
        where = f"{self.model}: {self.kind}" + (f" {self.field!r}" if self.field else "")
        if self.kind == "changed field":
            return f"{where}: ours {self.ours}, the service's {self.theirs}"
        return where


def _described(prop: Mapping[str, Any]) -> dict[str, Any]:
    return {k: prop[k] for k in _COMPARED if k in prop}


def diff_schemas(model: str, ours: Mapping[str, Any] | None,
                 theirs: Mapping[str, Any] | None) -> list[Drift]:
    """Every field-level difference between two request schemas (None: the model is absent)."""
    if ours is None and theirs is None:
        return []
    if theirs is None:
        return [Drift(model, "removed model")]
    if ours is None:
        return [Drift(model, "new model")]
    drift: list[Drift] = []
    our_props, their_props = ours.get("properties", {}), theirs.get("properties", {})
    for name in their_props:
        if name not in our_props:
            drift.append(Drift(model, "new field", name, None, _described(their_props[name])))
    for name, prop in our_props.items():
        if name not in their_props:
            drift.append(Drift(model, "removed field", name, _described(prop), None))
            continue
        a, b = _described(prop), _described(their_props[name])
        if a != b:
            changed = sorted(set(a) | set(b))
            drift.append(Drift(model, "changed field", name,
                               {k: a.get(k) for k in changed if a.get(k) != b.get(k)},
                               {k: b.get(k) for k in changed if a.get(k) != b.get(k)}))
    our_req, their_req = set(ours.get("required", [])), set(theirs.get("required", []))
    drift += [Drift(model, "now required", n) for n in sorted(their_req - our_req)]
    drift += [Drift(model, "no longer required", n) for n in sorted(our_req - their_req)]
    return drift
