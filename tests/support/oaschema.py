"""Validate JSON bodies against component schemas of OpenAI's official OpenAPI 3.1 document.

The document is ``shared/specs/openai-openapi.yaml`` (openai/openai-openapi @ f85dbe2, read-only), found via
``$YOUROUTER_OPENAPI_SPEC`` or ``<repo root>/../shared/specs/openai-openapi.yaml``. Parsing its 3 MB of YAML takes
~1.5 s, so the parsed document is cached as JSON in ``<repo>/.pytest_cache/oaschema-<sha256[:16]>.json`` (keyed on the
spec bytes) and loaded from there on later runs. Everything is loaded lazily, once per process and spec path.

Usage::

    from tests.support import oaschema

    def test_chat(...):
        oaschema.require_spec()  # skip (or fail if YOUROUTER_TEST_SERVICES=required) when the spec is absent
        oaschema.validate(oaschema.CHAT_COMPLETION, body)

Components we validate against (all verified to exist in the document; see ``COMPONENTS``):

- ``CreateChatCompletionResponse``        non-streaming ``POST /v1/chat/completions``
- ``CreateChatCompletionStreamResponse``  each SSE ``data:`` chunk of a streamed chat completion
- ``ErrorResponse``                       the ``{"error": {...}}`` envelope (schema ``Error`` inside it)
- ``CreateEmbeddingResponse``             ``POST /v1/embeddings`` (items are ``Embedding``)
- ``ListModelsResponse``                  ``GET /v1/models``
- ``Model``                               ``GET /v1/models/{model}`` and each item of the list

What the schemas demand of the gateway (answers checked against this document; tests in tests/unit/test_oaschema.py):

- Embeddings: base64 is NOT accepted. ``Embedding.embedding`` is ``array of number``, so a response to
  ``encoding_format: "base64"`` (the openai SDK's default when the caller sets none) fails with "... is not of type
  'array'". The gateway must still return base64 strings in that case (real OpenAI does). To check such a response use
  ``validate_embeddings(body)``: it decodes every base64 string as little-endian float32 (what the SDK does), asserts
  the packing is sane, and validates the decoded copy against ``CreateEmbeddingResponse``.
- Stream chunks: the usage-only final chunk (``"choices": []`` plus ``usage``) is accepted (``choices`` has no
  ``minItems``), and ``"usage": null`` on the other chunks is accepted -- but only because of the ``nullable`` fix
  below (``usage`` is ``$ref: CompletionUsage`` + ``nullable: true``). Likewise ``choices[].finish_reason: null``.
  Each chunk choice requires ``delta``, ``finish_reason`` (may be null) and ``index``; ``logprobs`` is optional.
- Errors: ``Error`` requires all four keys ``message``, ``type``, ``param`` and ``code``; ``param``/``code`` may be
  null but must be present. ``{"error": {"message": "x", "type": "y"}}`` is rejected.
- Chat completion: every choice requires ``index``, ``message``, ``finish_reason`` (one of stop, length, tool_calls,
  content_filter, function_call; never null here) and ``logprobs`` (may be null, must be present). ``message``
  requires ``role: "assistant"``, ``content`` and ``refusal`` (both may be null, both must be present).
  ``system_fingerprint``, when present, must be a string (omit it rather than sending null). ``usage`` is optional
  but, when present, must be a ``CompletionUsage`` object (not null) with the three token counts.
- ``Model`` has no ``"type": "object"`` in the document, so a non-object instance passes it vacuously; validate the
  list (``ListModelsResponse``, whose ``data`` items are ``Model``) or assert ``isinstance(body, dict)`` yourself.

Quirks of the document and how they are handled (only these; nothing else is loosened):

1. ``nullable: true`` (OpenAPI 3.0 leftover, 109 schemas, none with ``null`` in its ``type``/``enum``; JSON Schema
   2020-12 ignores the keyword, so e.g. ``"usage": null`` would be rejected). Each schema carrying it is rewritten to
   ``{"anyOf": [<schema>, {"type": "null"}]}``, which is exactly what OpenAPI 3.0 meant (works for ``enum`` and
   ``$ref`` schemas too); the one ``nullable: false`` is dropped.
2. ``exclusiveMinimum: true`` next to ``minimum`` (draft-4 boolean form, 7 fine-tuning hyperparameters). Under
   2020-12 a boolean is compared as the number 1, which is wrong, so ``{minimum: m, exclusiveMinimum: true}`` becomes
   ``{exclusiveMinimum: m}`` (same for the maximum pair).
3. ``$recursiveRef: "#"`` (draft 2019-09, unknown to 2020-12 so ignored, i.e. matches anything) in ``CompoundFilter``
   and ``BetaCompoundFilter`` ``filters`` items. It means "this filter again", so it becomes
   ``$ref: "#/components/schemas/<that component>"``; the companion ``$recursiveAnchor: true`` (a metaschema error
   under 2020-12) is dropped.
4. ``ContainerResource.required`` lists names twice (harmless for validation, but a metaschema error); deduplicated.
   With fixes 1-4 every component passes ``Draft202012Validator.check_schema``.
5. ``discriminator``, ``example``, ``x-*``, ``deprecated`` and unknown ``format`` values (``unixtime``, ``float``...)
   are annotations: ignored by jsonschema (no format checker is used). YAML timestamps (one, inside an ``example``)
   are stored as ISO strings in the JSON cache.

The fixes are applied under ``components.schemas`` only (all ``$ref`` targets live there). The whole document is
registered in a ``referencing.Registry`` under ``DOCUMENT_URI`` so ``$ref: "#/components/schemas/X"`` resolves, and
validation uses ``jsonschema.Draft202012Validator``.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import functools
import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema
import yaml
from jsonschema.exceptions import ValidationError, best_match

__all__ = [
    "CHAT_COMPLETION",
    "CHAT_COMPLETION_CHUNK",
    "COMPONENTS",
    "DOCUMENT_URI",
    "EMBEDDINGS",
    "ERROR",
    "MODEL",
    "MODELS_LIST",
    "components",
    "errors",
    "require_spec",
    "spec_available",
    "spec_path",
    "validate",
    "validate_embeddings",
]

CHAT_COMPLETION = "CreateChatCompletionResponse"
CHAT_COMPLETION_CHUNK = "CreateChatCompletionStreamResponse"
ERROR = "ErrorResponse"
EMBEDDINGS = "CreateEmbeddingResponse"
MODELS_LIST = "ListModelsResponse"
MODEL = "Model"
COMPONENTS = (CHAT_COMPLETION, CHAT_COMPLETION_CHUNK, ERROR, EMBEDDINGS, MODELS_LIST, MODEL)

SPEC_ENV = "YOUROUTER_OPENAPI_SPEC"
SERVICES_ENV = "YOUROUTER_TEST_SERVICES"
DOCUMENT_URI = "urn:yourouter:openai-openapi"

_REPO_ROOT = Path(__file__).resolve().parents[2]
_CACHE_DIR = _REPO_ROOT / ".pytest_cache"
_MAX_MESSAGE = 600  # validator messages embed the instance repr; keep failures readable


# --------------------------------------------------------------------------- locating the spec


def spec_path() -> Path:
    """Path of the OpenAPI document: ``$YOUROUTER_OPENAPI_SPEC`` or ``<repo>/../shared/specs/openai-openapi.yaml``."""
    env = os.environ.get(SPEC_ENV)
    if env:
        return Path(env).expanduser()
    return _REPO_ROOT.parent / "shared" / "specs" / "openai-openapi.yaml"


def spec_available() -> bool:
    return spec_path().is_file()


def require_spec() -> None:
    """In a test: skip when the spec is absent, or fail if ``YOUROUTER_TEST_SERVICES=required``."""
    if spec_available():
        return
    import pytest

    reason = f"OpenAI OpenAPI spec not found at {spec_path()} (set ${SPEC_ENV} or put shared/ beside the repo)"
    if os.environ.get(SERVICES_ENV, "").strip().lower() == "required":
        pytest.fail(f"{reason}; {SERVICES_ENV}=required", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------- loading + cache


def _write_cache(path: Path, data: bytes) -> None:
    """Atomically write the cache (parallel workers may race); silently give up if the tree is read-only."""
    try:
        created = not path.parent.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        if created:  # pytest only writes its .gitignore when *it* creates the dir; keep the cache out of git
            (path.parent / ".gitignore").write_text("# Created by tests/support/oaschema.py\n*\n")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            Path(tmp).chmod(0o644)  # mkstemp creates 0600; let other CI users/containers reuse it
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass


def _parse_yaml(raw: bytes) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(raw, Loader=loader)


def _load_document(path: Path) -> dict[str, Any]:
    """The parsed document, via the JSON cache when it matches the spec bytes."""
    if not path.is_file():
        raise FileNotFoundError(f"OpenAI OpenAPI spec not found at {path} (set ${SPEC_ENV}); use require_spec()")
    raw = path.read_bytes()
    cache = _CACHE_DIR / f"oaschema-{hashlib.sha256(raw).hexdigest()[:16]}.json"
    try:
        return json.loads(cache.read_bytes())
    except (OSError, ValueError):
        pass
    # stdlib json, not orjson: the spec has integers beyond 64 bits (seed bounds) that orjson rejects or turns into
    # floats; json.loads of the 2.3 MB cache takes ~50 ms anyway. default=str stores YAML dates as ISO strings.
    data = json.dumps(_parse_yaml(raw), default=str, separators=(",", ":")).encode()
    _write_cache(cache, data)
    return json.loads(data)  # same shape as a cache hit


# --------------------------------------------------------------------------- OpenAPI -> JSON Schema 2020-12 fixes

_SCHEMA_MAP_KEYWORDS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LIST_KEYWORDS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_KEYWORDS = (
    "items",
    "additionalItems",
    "additionalProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
)


def _subschemas(schema: dict[str, Any]) -> Iterator[tuple[Any, Any]]:
    """(container, key) pairs of every direct subschema, so the caller can replace it in place."""
    for kw in _SCHEMA_MAP_KEYWORDS:
        value = schema.get(kw)
        if isinstance(value, dict):
            yield from ((value, name) for name in value)
    for kw in _SCHEMA_LIST_KEYWORDS:
        value = schema.get(kw)
        if isinstance(value, list):
            yield from ((value, i) for i in range(len(value)))
    for kw in _SCHEMA_KEYWORDS:
        if kw in schema:
            yield schema, kw


def _fix_schema(schema: Any, component: str) -> Any:
    """Return ``schema`` with the documented quirks fixed (mutates dicts in place; may wrap the top level)."""
    if not isinstance(schema, dict):
        return schema
    for container, key in list(_subschemas(schema)):
        container[key] = _fix_schema(container[key], component)
    for bound in ("Minimum", "Maximum"):
        flag = schema.get(f"exclusive{bound}")
        if isinstance(flag, bool):
            del schema[f"exclusive{bound}"]
            if flag and bound.lower() in schema:
                schema[f"exclusive{bound}"] = schema.pop(bound.lower())
    if schema.get("$recursiveRef") == "#":
        del schema["$recursiveRef"]
        schema["$ref"] = f"#/components/schemas/{component}"
    schema.pop("$recursiveAnchor", None)
    required = schema.get("required")
    if isinstance(required, list) and len(set(required)) != len(required):
        schema["required"] = list(dict.fromkeys(required))
    if "nullable" in schema:
        if schema.pop("nullable") is True:
            return {"anyOf": [schema, {"type": "null"}]}
    return schema


@functools.cache
def _registry(path: Path) -> referencing.Registry:
    document = _load_document(path)
    schemas = document["components"]["schemas"]
    for name in schemas:
        schemas[name] = _fix_schema(schemas[name], name)
    resource = referencing.jsonschema.DRAFT202012.create_resource(document)
    return referencing.Registry().with_resource(DOCUMENT_URI, resource)


def components() -> frozenset[str]:
    """Names of all component schemas in the document."""
    return frozenset(_registry(spec_path()).contents(DOCUMENT_URI)["components"]["schemas"])


@functools.cache
def _validator(path: Path, component: str) -> jsonschema.Draft202012Validator:
    names = _registry(path).contents(DOCUMENT_URI)["components"]["schemas"]
    if component not in names:
        close = difflib.get_close_matches(component, names, n=3)
        raise ValueError(f"no component schema {component!r} in {path}" + (f"; did you mean {close}?" if close else ""))
    schema = {"$ref": f"{DOCUMENT_URI}#/components/schemas/{component}"}
    return jsonschema.Draft202012Validator(schema, registry=_registry(path))


# --------------------------------------------------------------------------- public validation API


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _describe(error: ValidationError) -> str:
    return f"{error.json_path}: {_short(error.message)}"


def errors(component: str, instance: object) -> list[str]:
    """All validation errors as ``"<json path>: <message>"`` strings, sorted by path (empty when valid)."""
    found = _validator(spec_path(), component).iter_errors(instance)
    return sorted(_describe(e) for e in found)


def validate(component: str, instance: object) -> None:
    """Raise ``AssertionError`` naming the JSON path and reason of the most relevant failure, if any."""
    found = list(_validator(spec_path(), component).iter_errors(instance))
    if not found:
        return
    best = best_match(found)
    more = f" (+{len(found) - 1} more error(s))" if len(found) > 1 else ""
    schema_path = "/".join(str(p) for p in best.absolute_schema_path)
    raise AssertionError(f"{component} invalid at {_describe(best)}{more} [schema: {_short(schema_path)}]")


def validate_embeddings(instance: object) -> None:
    """Validate an embeddings response whose ``data[].embedding`` may be base64 float32 strings (see module doc)."""
    if isinstance(instance, dict) and isinstance(instance.get("data"), list):
        decoded = dict(instance, data=[_decode_embedding(i, item) for i, item in enumerate(instance["data"])])
        instance = decoded
    validate(EMBEDDINGS, instance)


def _decode_embedding(i: int, item: Any) -> Any:
    if not (isinstance(item, dict) and isinstance(item.get("embedding"), str)):
        return item
    try:
        packed = base64.b64decode(item["embedding"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AssertionError(f"{EMBEDDINGS} invalid at $.data[{i}].embedding: not valid base64 ({exc})") from None
    if not packed or len(packed) % 4:
        raise AssertionError(
            f"{EMBEDDINGS} invalid at $.data[{i}].embedding: {len(packed)} decoded bytes is not a non-empty "
            "multiple of 4 (expected little-endian float32 values)"
        )
    return dict(item, embedding=list(struct.unpack(f"<{len(packed) // 4}f", packed)))
