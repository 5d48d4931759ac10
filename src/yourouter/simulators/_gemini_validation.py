"""Request validation for the Gemini simulator, with the Gemini API's strictness and google.rpc error wording.

Bodies are normalised first: the API accepts both the JSON (camelCase) and proto (snake_case) spelling of every
field, so `normalise` rewrites keys to camelCase everywhere except inside user-owned maps (function arguments and
responses, schemas, labels), whose keys are data. Every failure raises `GoogleError`, rendered as
`{"error": {"code", "message", "status"[, "details"]}}`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

# google.rpc status for each HTTP code the simulator answers with
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.-]{0,63}$")
CALLING_MODES = ("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED")
SCHEMA_TYPES = ("TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL")
RESPONSE_MIME_TYPES = ("text/plain", "application/json", "application/xml", "application/yaml", "text/x.enum")
DATA_FIELDS = (
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
    "toolCall",
    "toolResponse",
)
# keys whose values are user data (argument objects, schemas, label maps): never renamed
_OPAQUE_KEYS = frozenset(
    {"args", "response", "parameters", "parametersJsonSchema", "responseSchema", "responseJsonSchema", "labels"}
)
_TOP_LEVEL_FIELDS = frozenset(
    {
        "model",
        "contents",
        "systemInstruction",
        "tools",
        "toolConfig",
        "safetySettings",
        "generationConfig",
        "cachedContent",
        "labels",
        "serviceTier",
        "store",
        "continuationToken",
        "modelArmorConfig",
        "outputConfig",
    }
)
_GENERATION_CONFIG_FIELDS = frozenset(
    {
        "temperature",
        "topP",
        "topK",
        "candidateCount",
        "maxOutputTokens",
        "stopSequences",
        "presencePenalty",
        "frequencyPenalty",
        "seed",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "responseModalities",
        "responseLogprobs",
        "logprobs",
        "thinkingConfig",
        "mediaResolution",
        "speechConfig",
        "imageConfig",
        "audioTimestamp",
        "audioTranscriptionConfig",
        "routingConfig",
        "modelConfig",
        "enableEnhancedCivicAnswers",
        "enableAffectiveDialog",
        "responseFormat",
        "translationConfig",
    }
)
_THRESHOLDS = (
    "HARM_BLOCK_THRESHOLD_UNSPECIFIED",
    "BLOCK_LOW_AND_ABOVE",
    "BLOCK_MEDIUM_AND_ABOVE",
    "BLOCK_ONLY_HIGH",
    "BLOCK_NONE",
    "OFF",
)
_FILE_URI_PREFIXES = (
    "gs://",
    "https://generativelanguage.googleapis.com/",
    "https://www.youtube.com/",
    "https://youtube.com/",
    "https://youtu.be/",
)
_MISSING_SIGNATURE = (
    "Function call is missing a thought_signature in functionCall parts. This is required for tools to work "
    "correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call "
    "`default_api:{name}` , position {position}. Please refer to "
    "https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
)
_SNAKE_PART = re.compile(r"_([a-z0-9])")
_CAMEL_HUMP = re.compile(r"(?<!^)([A-Z])")


class GoogleError(Exception):
    """An error answered with a google.rpc.Status envelope; `code` is the HTTP status."""

    def __init__(
        self,
        message: str,
        *,
        code: int = 400,
        status: str | None = None,
        details: Sequence[Mapping[str, Any]] = (),
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status or STATUS_NAMES.get(code, "INTERNAL" if code >= 500 else "FAILED_PRECONDITION")
        self.details = list(details)
        self.headers = list(headers)

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def camel(name: str) -> str:
    return _SNAKE_PART.sub(lambda match: match.group(1).upper(), name)


def snake(name: str) -> str:
    return _CAMEL_HUMP.sub(r"_\1", name).lower()


def normalise(value: Any) -> Any:
    """Rewrite snake_case keys to camelCase, leaving user-owned maps (see `_OPAQUE_KEYS`) untouched."""
    if isinstance(value, list):
        return [normalise(item) for item in value]
    if not isinstance(value, dict):
        return value
    result: dict[str, Any] = {}
    for key, item in value.items():
        name = camel(key) if isinstance(key, str) and not key.startswith(("_", "@")) else key
        result[name] = item if name in _OPAQUE_KEYS else normalise(item)
    return result


class _Checker:
    """Validation helpers that prefix messages with the request type, the way the API reports field violations."""

    def __init__(self, request: str) -> None:
        self.request = request

    def fail(self, path: str, text: str) -> GoogleError:
        return GoogleError(f"* {self.request}.{path}: {text}\n")

    def bad_value(self, path: str, kind: str, value: object) -> GoogleError:
        return GoogleError(f"Invalid value at '{path}' ({kind}), {orjson.dumps(value).decode()}")

    def obj(self, value: object, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.bad_value(path, "object", value)
        return value

    def array(self, value: object, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.bad_value(path, "list", value)
        return value

    def string(self, value: object, path: str) -> str:
        if not isinstance(value, str):
            raise self.bad_value(path, "TYPE_STRING", value)
        return value

    def number(self, value: object, path: str) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.bad_value(path, "TYPE_FLOAT", value)
        return float(value)

    def integer(self, value: object, path: str) -> int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.bad_value(path, "TYPE_INT32", value)
        return value

    def boolean(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.bad_value(path, "TYPE_BOOL", value)
        return value

    def enum(self, value: object, allowed: Sequence[str], path: str, enum_name: str) -> str:
        # enum names are matched case-insensitively (the API takes "object" as well as "OBJECT")
        if not isinstance(value, str) or value.upper() not in allowed:
            raise self.bad_value(path, f"type.googleapis.com/google.ai.generativelanguage.v1beta.{enum_name}", value)
        return value.upper()


def check_unknown_fields(raw: Mapping[str, Any], allowed: frozenset[str], where: str | None = None) -> None:
    for key in raw:
        if camel(key) not in allowed:
            at = f" at '{where}'" if where else ""
            raise GoogleError(f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.')


def validate_generate(raw: Mapping[str, Any], model: str, *, vertex: bool = False) -> dict[str, Any]:
    """Validate a generateContent / streamGenerateContent body; return it normalised to camelCase.

    `vertex` applies Vertex AI's extra rule: in a multi-turn request every content needs a role.
    """
    check_unknown_fields(raw, _TOP_LEVEL_FIELDS)
    generation_raw = raw.get("generationConfig", raw.get("generation_config"))
    if isinstance(generation_raw, dict):
        check_unknown_fields(generation_raw, _GENERATION_CONFIG_FIELDS, "generation_config")
    body: dict[str, Any] = normalise(dict(raw))
    check = _Checker("GenerateContentRequest")
    contents = validate_contents(body.get("contents"), check)
    if vertex and len(contents) > 1 and not all(content.get("role") for content in contents):
        raise GoogleError("Please use a valid role: user, model.")
    if body.get("systemInstruction") is not None:
        system = check.obj(body["systemInstruction"], "system_instruction")
        _validate_parts(system.get("parts"), check, "system_instruction", "system_instruction.parts")
    names = _validate_tools(body.get("tools"), check)
    _validate_tool_config(body.get("toolConfig"), names, check)
    _validate_safety(body.get("safetySettings"), check)
    _validate_generation_config(body.get("generationConfig"), check)
    _validate_turns(contents, model)
    return body


def validate_contents(value: object, check: _Checker) -> list[dict[str, Any]]:
    if value is None or value == []:
        raise check.fail("contents", "contents is not specified")
    contents = check.array(value, "contents")
    for index, content in enumerate(contents):
        path = f"contents[{index}]"
        check.obj(content, path)
        role = content.get("role")
        if role not in (None, "", "user", "model", "function"):
            raise GoogleError("Please use a valid role: user, model.")
        _validate_parts(content.get("parts"), check, path, "contents.parts")
    return contents


def _validate_parts(value: object, check: _Checker, path: str, label: str) -> None:
    if value is None or value == []:
        raise check.fail(f"{path}.parts", f"{label} must not be empty.")
    for index, part in enumerate(check.array(value, f"{path}.parts")):
        _validate_part(check.obj(part, f"{path}.parts[{index}]"), check, f"{path}.parts[{index}]")


def _validate_part(part: dict[str, Any], check: _Checker, path: str) -> None:
    present = [name for name in DATA_FIELDS if part.get(name) is not None]
    if not present:
        raise check.fail(path, "required oneof field 'data' must have one initialized field")
    if len(present) > 1:
        raise check.fail(path, f"oneof field 'data' is already set. Cannot set '{snake(present[1])}'")
    if part.get("thought") is not None:
        check.boolean(part["thought"], f"{path}.thought")
    if part.get("thoughtSignature") is not None:
        _check_base64(check.string(part["thoughtSignature"], f"{path}.thought_signature"), f"{path}.thought_signature")
    kind = present[0]
    if kind == "text":
        check.string(part["text"], f"{path}.text")
    elif kind == "inlineData":
        blob = check.obj(part["inlineData"], f"{path}.inline_data")
        mime = blob.get("mimeType")
        if not isinstance(mime, str) or "/" not in mime:
            raise check.fail(f"{path}.inline_data.mime_type", f"Unsupported MIME type: {mime or ''}")
        data = blob.get("data")
        if not isinstance(data, str) or not data:
            raise check.fail(f"{path}.inline_data.data", "data must not be empty")
        _check_base64(data, f"{path}.inline_data.data")
    elif kind == "fileData":
        file = check.obj(part["fileData"], f"{path}.file_data")
        uri = file.get("fileUri")
        if not isinstance(uri, str) or not uri:
            raise check.fail(f"{path}.file_data.file_uri", "file_uri must not be empty")
        if not uri.startswith(_FILE_URI_PREFIXES):
            raise check.fail(f"{path}.file_data.file_uri", f"Invalid or unsupported file uri: {uri}")
    elif kind == "functionCall":
        call = check.obj(part["functionCall"], f"{path}.function_call")
        if not isinstance(call.get("name"), str) or not call["name"]:
            raise check.fail(f"{path}.function_call.name", "Name cannot be empty.")
        if call.get("args") is not None:
            check.obj(call["args"], f"{path}.function_call.args")
    elif kind == "functionResponse":
        result = check.obj(part["functionResponse"], f"{path}.function_response")
        if not isinstance(result.get("name"), str) or not result["name"]:
            raise check.fail(f"{path}.function_response.name", "Name cannot be empty.")
        if not isinstance(result.get("response"), dict):
            raise check.fail(f"{path}.function_response.response", "response must be a JSON object.")


def _check_base64(data: str, path: str) -> None:
    # Google's JSON mapping for bytes accepts the standard and the URL-safe alphabet, padded or not.
    text = data.strip().replace("-", "+").replace("_", "/")
    try:
        base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        snippet = data if len(data) <= 32 else data[:32] + "..."
        raise GoogleError(f"Invalid value at '{path}' (TYPE_BYTES), Base64 decoding failed for \"{snippet}\"") from None


def _validate_tools(value: object, check: _Checker) -> list[str]:
    """Validate `tools`; return the declared function names."""
    if value is None:
        return []
    names: list[str] = []
    for index, tool in enumerate(check.array(value, "tools")):
        path = f"tools[{index}]"
        check.obj(tool, path)
        declarations = tool.get("functionDeclarations")
        if declarations is None:
            continue
        for position, declaration in enumerate(check.array(declarations, f"{path}.function_declarations")):
            decl_path = f"{path}.function_declarations[{position}]"
            check.obj(declaration, decl_path)
            name = declaration.get("name")
            if not isinstance(name, str) or not FUNCTION_NAME.match(name):
                raise check.fail(
                    f"{decl_path}.name",
                    "Invalid function name. Must start with a letter or an underscore. Must be a-z, A-Z, 0-9, or "
                    "contain underscores, dots and dashes, with a maximum length of 64.",
                )
            if name in names:
                raise check.fail(f"{decl_path}.name", f"Duplicate function declaration found: {name}")
            names.append(name)
            if declaration.get("description") is not None:
                check.string(declaration["description"], f"{decl_path}.description")
            has_schema = declaration.get("parameters") is not None
            has_json_schema = declaration.get("parametersJsonSchema") is not None
            if has_schema and has_json_schema:
                raise check.fail(
                    decl_path, "`parameters` and `parameters_json_schema` are mutually exclusive; set only one."
                )
            if has_schema:
                validate_schema(declaration["parameters"], check, f"{decl_path}.parameters")
            if has_json_schema:
                check.obj(declaration["parametersJsonSchema"], f"{decl_path}.parameters_json_schema")
    return names


def validate_schema(value: object, check: _Checker, path: str, depth: int = 0) -> None:
    """Validate Google's OpenAPI-subset `Schema`: a known `type` (any case) on every node that has one."""
    schema = check.obj(value, path)
    if depth > 32:
        raise check.fail(path, "schema is nested too deeply")
    if schema.get("type") is not None:
        check.enum(schema["type"], SCHEMA_TYPES, f"{path}.type", "Type")
    for key in ("properties",):
        children = schema.get(key)
        if children is not None:
            for name, child in check.obj(children, f"{path}.{key}").items():
                validate_schema(child, check, f"{path}.{key}[{name}]", depth + 1)
    if schema.get("items") is not None:
        validate_schema(schema["items"], check, f"{path}.items", depth + 1)
    for key in ("anyOf", "any_of"):
        if schema.get(key) is not None:
            for index, option in enumerate(check.array(schema[key], f"{path}.any_of")):
                validate_schema(option, check, f"{path}.any_of[{index}]", depth + 1)
    if schema.get("required") is not None:
        required = check.array(schema["required"], f"{path}.required")
        properties = schema.get("properties") or {}
        for name in required:
            if name not in properties:
                raise check.fail(f"{path}.required", f"property is not defined: {name}")


def _validate_tool_config(value: object, names: list[str], check: _Checker) -> None:
    if value is None:
        return
    config = check.obj(value, "tool_config")
    calling = config.get("functionCallingConfig")
    if calling is None:
        return
    check.obj(calling, "tool_config.function_calling_config")
    mode = "AUTO"
    if calling.get("mode") is not None:
        mode = check.enum(calling["mode"], CALLING_MODES, "tool_config.function_calling_config.mode", "Mode")
    allowed = calling.get("allowedFunctionNames")
    if allowed is None:
        return
    path = "tool_config.function_calling_config.allowed_function_names"
    if mode not in ("ANY", "VALIDATED"):
        raise check.fail(path, "allowed_function_names is only allowed when the mode is ANY or VALIDATED.")
    for name in check.array(allowed, path):
        if name not in names:
            raise check.fail(path, f"function name '{name}' is not declared in tools.function_declarations.")


def _validate_safety(value: object, check: _Checker) -> None:
    if value is None:
        return
    for index, setting in enumerate(check.array(value, "safety_settings")):
        path = f"safety_settings[{index}]"
        check.obj(setting, path)
        category = setting.get("category")
        if not isinstance(category, str) or not category.startswith("HARM_CATEGORY_"):
            raise check.bad_value(
                f"{path}.category", "type.googleapis.com/google.ai.generativelanguage.v1beta.HarmCategory", category
            )
        check.enum(setting.get("threshold"), _THRESHOLDS, f"{path}.threshold", "SafetySetting.HarmBlockThreshold")


def _validate_generation_config(value: object, check: _Checker) -> None:
    if value is None:
        return
    config = check.obj(value, "generation_config")
    bounds = {
        "temperature": (0.0, 2.0),
        "topP": (0.0, 1.0),
        "presencePenalty": (-2.0, 2.0),
        "frequencyPenalty": (-2.0, 2.0),
    }
    for key, (low, high) in bounds.items():
        if config.get(key) is not None:
            number = check.number(config[key], f"generation_config.{snake(key)}")
            if not low <= number <= high:
                raise check.fail(
                    f"generation_config.{snake(key)}", f"{snake(key)} must be in the range [{low:g}, {high:g}]."
                )
    minimums = {"candidateCount": 1, "maxOutputTokens": 1, "topK": 1}
    for key, minimum in minimums.items():
        if config.get(key) is not None and check.integer(config[key], f"generation_config.{snake(key)}") < minimum:
            raise check.fail(f"generation_config.{snake(key)}", f"{snake(key)} must be at least {minimum}.")
    if config.get("candidateCount") is not None and config["candidateCount"] > 8:
        raise check.fail("generation_config.candidate_count", "candidate_count must be less than or equal to 8.")
    if config.get("seed") is not None:
        check.integer(config["seed"], "generation_config.seed")
    stops = config.get("stopSequences")
    if stops is not None:
        for index, stop in enumerate(check.array(stops, "generation_config.stop_sequences")):
            check.string(stop, f"generation_config.stop_sequences[{index}]")
        if len(stops) > 5:
            raise check.fail("generation_config.stop_sequences", "the number of stop_sequences must not exceed 5.")
    mime = config.get("responseMimeType")
    if mime is not None and check.string(mime, "generation_config.response_mime_type") not in RESPONSE_MIME_TYPES:
        raise check.fail(
            "generation_config.response_mime_type",
            "allowed mimetypes are `text/plain`, `application/json`, `application/xml`, `application/yaml` and "
            "`text/x.enum`.",
        )
    has_schema = config.get("responseSchema") is not None
    has_json_schema = config.get("responseJsonSchema") is not None
    if has_schema and has_json_schema:
        raise check.fail(
            "generation_config", "`response_schema` and `response_json_schema` are mutually exclusive; set only one."
        )
    if (has_schema or has_json_schema) and mime not in ("application/json", "text/x.enum"):
        raise check.fail(
            "generation_config.response_mime_type",
            "response_mime_type must be `application/json` or `text/x.enum` when a response schema is set.",
        )
    if has_schema:
        validate_schema(config["responseSchema"], check, "generation_config.response_schema")
    if has_json_schema:
        check.obj(config["responseJsonSchema"], "generation_config.response_json_schema")
    thinking = config.get("thinkingConfig")
    if thinking is not None:
        check.obj(thinking, "generation_config.thinking_config")
        if thinking.get("includeThoughts") is not None:
            check.boolean(thinking["includeThoughts"], "generation_config.thinking_config.include_thoughts")
        if thinking.get("thinkingBudget") is not None:
            budget = check.integer(thinking["thinkingBudget"], "generation_config.thinking_config.thinking_budget")
            if budget < -1:
                raise check.fail("generation_config.thinking_config.thinking_budget", "thinking_budget must be >= -1.")


def _validate_turns(contents: list[dict[str, Any]], model: str) -> None:
    """Function-calling turn order, as the API enforces it, plus Gemini 3's thought-signature requirement."""
    previous_calls = 0
    for index, content in enumerate(contents):
        parts = content["parts"]
        calls = sum(1 for part in parts if part.get("functionCall") is not None)
        responses = sum(1 for part in parts if part.get("functionResponse") is not None)
        previous = contents[index - 1] if index else None
        if calls and (previous is None or previous.get("role") == "model"):
            raise GoogleError(
                "Please ensure that function call turn comes immediately after a user turn or after a function "
                "response turn."
            )
        if responses:
            if not previous_calls:
                raise GoogleError(
                    "Please ensure that function response turn comes immediately after a function call turn."
                )
            if responses != previous_calls:
                raise GoogleError(
                    "Please ensure that the number of function response parts is equal to the number of function "
                    "call parts of the function call turn."
                )
        previous_calls = calls
    if model.startswith("gemini-3"):
        _require_thought_signatures(contents)


def _require_thought_signatures(contents: list[dict[str, Any]]) -> None:
    # The current turn starts at the last user content that is not a function response; in each of its model steps
    # the first functionCall part must carry the signature the model returned.
    start = 0
    for index, content in enumerate(contents):
        if content.get("role") in (None, "", "user") and not any(p.get("functionResponse") for p in content["parts"]):
            start = index
    for index in range(start, len(contents)):
        parts = contents[index]["parts"]
        first = next((part for part in parts if part.get("functionCall") is not None), None)
        if first is not None and not first.get("thoughtSignature"):
            name = first["functionCall"]["name"]
            raise GoogleError(_MISSING_SIGNATURE.format(name=name, position=parts.index(first) + 1))


def validate_count_tokens(raw: Mapping[str, Any], model: str, *, vertex: bool = False) -> dict[str, Any]:
    """Validate a countTokens body (`contents`, or a whole `generateContentRequest`); return the request to count."""
    check = _Checker("CountTokensRequest")
    inner = raw.get("generateContentRequest", raw.get("generate_content_request"))
    if inner is not None:
        return validate_generate(check.obj(inner, "generate_content_request"), model, vertex=vertex)
    body: dict[str, Any] = normalise(dict(raw))
    return {**body, "contents": validate_contents(body.get("contents"), check)}


def validate_embed_request(
    raw: object, check: _Checker, path: str, url_model: str | None, require_model: bool
) -> dict[str, Any]:
    """One EmbedContentRequest (top level of embedContent, or an item of batchEmbedContents.requests)."""
    request: dict[str, Any] = normalise(check.obj(raw, path or "request"))
    prefix = f"{path}." if path else ""
    model = request.get("model")
    if model is None and require_model:
        raise check.fail(f"{prefix}model", "unexpected model name format")
    if model is not None:
        name = check.string(model, f"{prefix}model")
        if not name.startswith(("models/", "tunedModels/", "publishers/", "projects/")):
            raise check.fail(f"{prefix}model", "unexpected model name format")
        if url_model is not None and name.rsplit("/", 1)[-1] != url_model:
            raise check.fail(
                f"{prefix}model",
                f"Model name in the request ({name}) does not match the model name in the URL (models/{url_model}).",
            )
    if request.get("content") is None:
        raise check.fail(f"{prefix}content", "content is not specified")
    content = check.obj(request["content"], f"{prefix}content")
    _validate_parts(content.get("parts"), check, f"{prefix}content", "content.parts")
    if request.get("embedContentConfig") is not None:
        # Vertex carries the options (outputDimensionality, taskType, title, ...) in a nested config
        request = {**request, **check.obj(request["embedContentConfig"], f"{prefix}embed_content_config")}
    dims = request.get("outputDimensionality")
    if dims is not None and not 1 <= check.integer(dims, f"{prefix}output_dimensionality") <= 3072:
        raise check.fail(f"{prefix}output_dimensionality", "output_dimensionality must be between 1 and 3072.")
    return request


def validate_batch_embed(raw: Mapping[str, Any], url_model: str, require_model: bool) -> list[dict[str, Any]]:
    check = _Checker("BatchEmbedContentsRequest")
    requests = raw.get("requests")
    if requests is None or requests == []:
        raise check.fail("requests", "requests is not specified")
    items = check.array(requests, "requests")
    if len(items) > 100:
        raise check.fail("requests", "at most 100 requests can be in one batch.")
    return [
        validate_embed_request(item, check, f"requests[{index}]", url_model, require_model)
        for index, item in enumerate(items)
    ]


def validate_embed(raw: Mapping[str, Any], url_model: str) -> dict[str, Any]:
    return validate_embed_request(dict(raw), _Checker("EmbedContentRequest"), "", url_model, False)


def validate_predict(raw: Mapping[str, Any]) -> tuple[list[str], int | None]:
    """Vertex's legacy text-embedding `:predict`: `{"instances": [{"content"}], "parameters"?}` -> texts, dims."""
    check = _Checker("PredictRequest")
    instances = raw.get("instances")
    if instances is None or instances == []:
        raise check.fail("instances", "instances is not specified")
    texts = []
    for index, instance in enumerate(check.array(instances, "instances")):
        item = check.obj(instance, f"instances[{index}]")
        texts.append(check.string(item.get("content"), f"instances[{index}].content"))
    parameters = normalise(check.obj(raw.get("parameters") or {}, "parameters"))
    dims = parameters.get("outputDimensionality")
    if dims is not None and check.integer(dims, "parameters.outputDimensionality") < 1:
        raise check.fail("parameters.outputDimensionality", "outputDimensionality must be at least 1.")
    return texts, dims
