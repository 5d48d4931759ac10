"""Build a plausible, deterministic example value from a JSON Schema (used for simulated tool-call arguments).

Only the subset that function-calling schemas use is understood: type (or a list of types), properties, items,
enum/const/default, anyOf/oneOf/allOf, local `$ref`s (`#/$defs/...`, `#/definitions/...`), numeric bounds and
minItems. Anything else yields a reasonable scalar rather than an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_MAX_DEPTH = 8
_STRING_BY_NAME = (
    ("city", "Paris"),
    ("location", "Paris"),
    ("place", "Paris"),
    ("country", "France"),
    ("email", "user@example.com"),
    ("url", "https://example.com"),
    ("name", "Alice"),
    ("unit", "celsius"),
    ("query", "weather in Paris"),
    ("date", "2024-01-01"),
)
_STRING_BY_FORMAT = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "time": "12:00:00",
    "email": "user@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def example_from_schema(schema: object) -> Any:
    """Return a JSON-compatible example for `schema`; a missing or non-object schema gives `{}`."""
    if not isinstance(schema, Mapping):
        return {}
    return _example(schema, root=schema, name="", depth=0)


def _example(schema: Mapping[str, Any], *, root: Mapping[str, Any], name: str, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return None
    schema = _resolve_ref(schema, root)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        options = [opt for opt in schema.get(key) or [] if isinstance(opt, Mapping) and opt.get("type") != "null"]
        if options:
            return _example(options[0], root=root, name=name, depth=depth + 1)
    all_of = [part for part in schema.get("allOf") or [] if isinstance(part, Mapping)]
    if all_of:
        return _example(_merge(all_of, root), root=root, name=name, depth=depth + 1)
    kind = _schema_type(schema)
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        return {
            key: _example(sub, root=root, name=key, depth=depth + 1)
            for key, sub in properties.items()
            if isinstance(sub, Mapping)
        }
    if kind == "array":
        items = schema.get("items")
        item_schema = items if isinstance(items, Mapping) else {}
        count = max(1, _int_or(schema.get("minItems"), 1))
        return [_example(item_schema, root=root, name=name, depth=depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        return _bounded_number(schema)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string_for(schema, name)


def _resolve_ref(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    target: Any = root
    for part in ref[2:].split("/"):
        target = target.get(part) if isinstance(target, Mapping) else None
    return target if isinstance(target, Mapping) else {}


def _merge(parts: list[Mapping[str, Any]], root: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    for part in parts:
        resolved = _resolve_ref(part, root)
        merged.update(resolved)
        if isinstance(resolved.get("properties"), Mapping):
            properties.update(resolved["properties"])
    if properties:
        merged["properties"] = properties
        merged["type"] = "object"
    return merged


def _schema_type(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _bounded_number(schema: Mapping[str, Any]) -> int | float:
    value: int | float = 1
    minimum = schema.get("minimum", schema.get("exclusiveMinimum"))
    maximum = schema.get("maximum", schema.get("exclusiveMaximum"))
    if isinstance(minimum, int | float) and value < minimum:
        value = minimum + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
    if isinstance(maximum, int | float) and value > maximum:
        value = maximum - (1 if "exclusiveMaximum" in schema and "maximum" not in schema else 0)
    if schema.get("type") == "integer":
        return int(value)
    return value


def _string_for(schema: Mapping[str, Any], name: str) -> str:
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _STRING_BY_FORMAT:
        return _STRING_BY_FORMAT[fmt]
    lowered = name.lower()
    value = next((example for key, example in _STRING_BY_NAME if key in lowered), "Paris" if not name else "example")
    min_length = _int_or(schema.get("minLength"), 0)
    max_length = _int_or(schema.get("maxLength"), 0)
    if len(value) < min_length:
        value = value + "x" * (min_length - len(value))
    if max_length and len(value) > max_length:
        value = value[:max_length]
    return value


def _int_or(value: object, fallback: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else fallback
