"""Tests for tests/support/oaschema.py (validation against OpenAI's OpenAPI component schemas)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import struct
import sys
from pathlib import Path

import jsonschema
import pytest

try:
    from tests.support import oaschema as oa
except ModuleNotFoundError:  # tests/unit/ has no __init__.py, so pytest put tests/unit/ (not the repo) on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.support import oaschema as oa

# ---------------------------------------------------------------------------------------------- fixtures / samples

# Hand-written after the examples in shared/specs/openai-chat.md and openai-embeddings-models.md.
CHAT_TOOL_CALLS = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1730000000,
    "model": "gpt-4o-2024-08-06",
    "system_fingerprint": "fp_x",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 52,
        "completion_tokens": 17,
        "total_tokens": 69,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
}

CHAT_TEXT = {
    "id": "chatcmpl-def456",
    "object": "chat.completion",
    "created": 1730000001,
    "model": "gpt-4o",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello!", "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    "service_tier": "default",
}


def _chunk(choices: list, **extra: object) -> dict:
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion.chunk",
        "created": 1730000000,
        "model": "gpt-4o",
        "system_fingerprint": "fp_x",
        "choices": choices,
        **extra,
    }


STREAM_CHUNKS = [
    _chunk(
        [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": "", "refusal": None},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
        usage=None,
    ),
    _chunk([{"index": 0, "delta": {"content": "Hel"}, "logprobs": None, "finish_reason": None}], usage=None),
    _chunk(
        [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ]
                },
                "finish_reason": None,
            }
        ]
    ),
    _chunk(
        [
            {
                "index": 0,
                "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]},
                "finish_reason": None,
            }
        ]
    ),
    _chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}], usage=None),
]

USAGE_ONLY_CHUNK = _chunk([], usage={"prompt_tokens": 52, "completion_tokens": 17, "total_tokens": 69})

ERROR_ENVELOPE = {"error": {"message": "x", "type": "invalid_request_error", "param": None, "code": None}}

EMBEDDINGS_FLOAT = {
    "object": "list",
    "data": [
        {"object": "embedding", "index": 0, "embedding": [0.0023, -0.0091, 0.0154]},
        {"object": "embedding", "index": 1, "embedding": [0.5, -1, 0]},
    ],
    "model": "text-embedding-3-small",
    "usage": {"prompt_tokens": 5, "total_tokens": 5},
}

MODELS_LIST = {
    "object": "list",
    "data": [
        {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"},
        {"id": "claude-sonnet-4-20250514", "object": "model", "created": 1747267200, "owned_by": "anthropic"},
    ],
}


@pytest.fixture
def spec() -> None:
    oa.require_spec()


def _b64_floats(*values: float) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


# ---------------------------------------------------------------------------------------------- the real document


def test_component_names_exist(spec: None) -> None:
    names = oa.components()
    assert len(names) > 1000
    for name in oa.COMPONENTS:
        assert name in names, name
    assert {"Error", "Embedding", "CompletionUsage"} <= names


def test_relevant_schemas_are_valid_2020_12(spec: None) -> None:
    """Our components and everything they $ref pass the 2020-12 metaschema once the quirks are fixed."""
    schemas = oa._registry(oa.spec_path()).contents(oa.DOCUMENT_URI)["components"]["schemas"]
    seen: set[str] = set()
    todo = list(oa.COMPONENTS)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        jsonschema.Draft202012Validator.check_schema(schemas[name])
        todo += [ref.rsplit("/", 1)[1] for ref in _refs(schemas[name])]
    assert {"ChatCompletionResponseMessage", "ChatCompletionStreamResponseDelta", "Error", "Embedding"} <= seen
    assert "nullable" not in json.dumps(schemas[oa.CHAT_COMPLETION_CHUNK])


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.mark.parametrize("body", [CHAT_TOOL_CALLS, CHAT_TEXT], ids=["tool_calls", "text"])
def test_valid_chat_completion(spec: None, body: dict) -> None:
    oa.validate(oa.CHAT_COMPLETION, body)
    assert oa.errors(oa.CHAT_COMPLETION, body) == []


def test_chat_completion_missing_choices_fails(spec: None) -> None:
    body = {k: v for k, v in CHAT_TEXT.items() if k != "choices"}
    with pytest.raises(AssertionError, match=r"CreateChatCompletionResponse invalid at \$: 'choices' is a required"):
        oa.validate(oa.CHAT_COMPLETION, body)
    assert oa.errors(oa.CHAT_COMPLETION, body) == ["$: 'choices' is a required property"]


def test_chat_completion_wrong_object_fails(spec: None) -> None:
    body = dict(CHAT_TEXT, object="foo")
    with pytest.raises(AssertionError) as exc:
        oa.validate(oa.CHAT_COMPLETION, body)
    assert "$.object: 'foo' is not one of ['chat.completion']" in str(exc.value)


def test_chat_completion_nested_failure_names_path(spec: None) -> None:
    body = copy.deepcopy(CHAT_TEXT)
    body["choices"][0]["finish_reason"] = None  # only stream chunks may carry a null finish_reason
    with pytest.raises(AssertionError, match=r"\$\.choices\[0\]\.finish_reason: None is not of type 'string'"):
        oa.validate(oa.CHAT_COMPLETION, body)


def test_chat_completion_requires_refusal_and_logprobs_keys(spec: None) -> None:
    body = copy.deepcopy(CHAT_TEXT)
    del body["choices"][0]["logprobs"]
    del body["choices"][0]["message"]["refusal"]
    assert oa.errors(oa.CHAT_COMPLETION, body) == [
        "$.choices[0].message: 'refusal' is a required property",
        "$.choices[0]: 'logprobs' is a required property",
    ]


@pytest.mark.parametrize("chunk", STREAM_CHUNKS, ids=["role", "content", "tool_call_start", "tool_call_args", "stop"])
def test_valid_stream_chunks(spec: None, chunk: dict) -> None:
    oa.validate(oa.CHAT_COMPLETION_CHUNK, chunk)


def test_usage_only_final_chunk(spec: None) -> None:
    oa.validate(oa.CHAT_COMPLETION_CHUNK, USAGE_ONLY_CHUNK)


def test_stream_chunk_bad_finish_reason_fails(spec: None) -> None:
    chunk = _chunk([{"index": 0, "delta": {}, "finish_reason": "done"}], usage=None)
    with pytest.raises(AssertionError, match=r"\$\.choices\[0\]\.finish_reason: 'done' is not one of"):
        oa.validate(oa.CHAT_COMPLETION_CHUNK, chunk)
    assert oa.errors(oa.CHAT_COMPLETION_CHUNK, _chunk([], usage="lots"))  # nullable is not "anything goes"


def test_error_envelope(spec: None) -> None:
    oa.validate(oa.ERROR, ERROR_ENVELOPE)
    oa.validate(oa.ERROR, {"error": {"message": "m", "type": "t", "param": "model", "code": "model_not_found"}})


def test_error_envelope_requires_param_and_code(spec: None) -> None:
    assert oa.errors(oa.ERROR, {"error": {"message": "x", "type": "invalid_request_error"}}) == [
        "$.error: 'code' is a required property",
        "$.error: 'param' is a required property",
    ]


def test_float_embeddings(spec: None) -> None:
    oa.validate(oa.EMBEDDINGS, EMBEDDINGS_FLOAT)
    oa.validate_embeddings(EMBEDDINGS_FLOAT)


def test_base64_embeddings_rejected_by_schema_but_checked_by_helper(spec: None) -> None:
    body = copy.deepcopy(EMBEDDINGS_FLOAT)
    body["data"][0]["embedding"] = _b64_floats(0.0023, -0.0091, 0.0154)
    with pytest.raises(AssertionError, match=r"\$\.data\[0\]\.embedding: '.*' is not of type 'array'"):
        oa.validate(oa.EMBEDDINGS, body)
    oa.validate_embeddings(body)
    assert body["data"][0]["embedding"] == _b64_floats(0.0023, -0.0091, 0.0154)  # input not mutated

    body["data"][1]["embedding"] = base64.b64encode(b"\x00\x01\x02").decode()
    with pytest.raises(AssertionError, match=r"\$\.data\[1\]\.embedding: 3 decoded bytes"):
        oa.validate_embeddings(body)
    body["data"][1]["embedding"] = "not base64!"
    with pytest.raises(AssertionError, match=r"\$\.data\[1\]\.embedding: not valid base64"):
        oa.validate_embeddings(body)


def test_models(spec: None) -> None:
    oa.validate(oa.MODELS_LIST, MODELS_LIST)
    oa.validate(oa.MODEL, MODELS_LIST["data"][0])
    oa.validate(oa.MODEL, dict(MODELS_LIST["data"][0], shutdown_date=None))
    assert oa.errors(oa.MODEL, {"id": "x", "object": "model", "created": 1}) == ["$: 'owned_by' is a required property"]
    assert oa.errors(oa.MODELS_LIST, {"object": "list", "data": ["gpt-4o"]}) == []  # documented: Model lacks a type


def test_unknown_component(spec: None) -> None:
    with pytest.raises(ValueError, match="did you mean"):
        oa.validate("CreateChatCompletionResponses", {})


def test_long_messages_are_truncated(spec: None) -> None:
    body = dict(EMBEDDINGS_FLOAT, object=["x" * 5000])
    with pytest.raises(AssertionError) as exc:
        oa.validate(oa.EMBEDDINGS, body)
    assert len(str(exc.value)) < 1500


# ---------------------------------------------------------------------------------------------- locating the spec


def test_default_spec_path_is_beside_the_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(oa.SPEC_ENV, raising=False)
    repo = Path(oa.__file__).resolve().parents[2]
    assert (repo / "pyproject.toml").is_file()
    assert oa.spec_path() == repo.parent / "shared" / "specs" / "openai-openapi.yaml"


def test_missing_spec_skips(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(oa.SPEC_ENV, str(tmp_path / "absent.yaml"))
    monkeypatch.delenv(oa.SERVICES_ENV, raising=False)
    assert oa.spec_path() == tmp_path / "absent.yaml"
    assert not oa.spec_available()
    with pytest.raises(pytest.skip.Exception, match="absent.yaml"):
        oa.require_spec()
    with pytest.raises(FileNotFoundError, match="absent.yaml"):
        oa.validate(oa.ERROR, ERROR_ENVELOPE)


def test_missing_spec_fails_when_services_required(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(oa.SPEC_ENV, str(tmp_path / "absent.yaml"))
    monkeypatch.setenv(oa.SERVICES_ENV, "required")
    with pytest.raises(pytest.fail.Exception, match="absent.yaml.*YOUROUTER_TEST_SERVICES=required"):
        oa.require_spec()


# ---------------------------------------------------------------------------------------------- quirk fixes + cache

MINI_SPEC = """\
openapi: 3.1.0
info: {title: mini, version: "1", x-date: 2024-10-01}
paths: {}
components:
  schemas:
    Thing:
      type: object
      required: [id, id, kind]
      properties:
        id: {type: string}
        kind: {type: string, enum: [a, b], nullable: true}
        usage: {$ref: "#/components/schemas/Usage", nullable: true}
        rate: {type: number, minimum: 0, exclusiveMinimum: true}
        nullable: {type: integer, nullable: false}
    Usage:
      type: object
      required: [n]
      properties: {n: {type: integer, maximum: 9223372036854776000}}
    Tree:
      type: object
      $recursiveAnchor: true
      properties:
        children:
          type: array
          items:
            oneOf:
              - {type: string}
              - $recursiveRef: "#"
"""


@pytest.fixture
def mini_spec(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "mini.yaml"
    path.write_text(MINI_SPEC)
    monkeypatch.setenv(oa.SPEC_ENV, str(path))
    monkeypatch.setattr(oa, "_CACHE_DIR", tmp_path / "cache")
    return path


def test_quirk_fixes(mini_spec: Path) -> None:
    oa.validate("Thing", {"id": "1", "kind": None, "usage": None, "rate": 0.5, "nullable": 3})
    oa.validate("Thing", {"id": "1", "kind": "a", "usage": {"n": 1}})
    assert oa.errors("Thing", {"id": "1", "kind": "c"})  # enum still enforced
    assert oa.errors("Thing", {"id": "1", "kind": "a", "usage": {}})  # $ref still enforced
    assert oa.errors("Thing", {"id": "1", "kind": "a", "rate": 0})  # exclusive minimum 0, not "> 1"
    assert oa.errors("Thing", {"id": "1", "kind": "a", "nullable": None})  # a property named "nullable" is untouched
    oa.validate("Thing", {"id": "1", "kind": "a", "rate": 0.5})
    oa.validate("Tree", {"children": ["a", {"children": ["b"]}]})
    assert oa.errors("Tree", {"children": [{"children": [1]}]})  # $recursiveRef -> $ref to the component
    schemas = oa._registry(mini_spec).contents(oa.DOCUMENT_URI)["components"]["schemas"]
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_cache_file_written_and_used(mini_spec: Path, tmp_path: Path) -> None:
    digest = hashlib.sha256(mini_spec.read_bytes()).hexdigest()[:16]
    cache = tmp_path / "cache" / f"oaschema-{digest}.json"
    oa.validate("Usage", {"n": 1})
    assert cache.is_file()
    assert (tmp_path / "cache" / ".gitignore").is_file()
    doc = json.loads(cache.read_text())
    assert doc["info"]["x-date"] == "2024-10-01"
    assert doc["components"]["schemas"]["Usage"]["properties"]["n"]["maximum"] == 9223372036854776000
    assert "nullable" in doc["components"]["schemas"]["Thing"]["properties"]["kind"]  # cache holds the raw document

    # A later process (simulated by clearing the per-process caches) reads the cache, not the YAML.
    doc["components"]["schemas"]["Usage"]["required"] = ["m"]
    cache.write_text(json.dumps(doc))
    oa._registry.cache_clear()
    oa._validator.cache_clear()
    assert oa.errors("Usage", {"n": 1}) == ["$: 'm' is a required property"]

    # A corrupt cache is ignored and rewritten.
    cache.write_text("{not json")
    oa._registry.cache_clear()
    oa._validator.cache_clear()
    oa.validate("Usage", {"n": 1})
    assert json.loads(cache.read_text())["components"]["schemas"]["Usage"]["required"] == ["n"]
