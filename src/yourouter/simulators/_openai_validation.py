"""Request validation with OpenAI's strictness and error wording (chat completions and embeddings).

Every failure raises `RequestError`, which the app renders as a 400 OpenAI error envelope.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+(;[\w-]+=[^;,]+)*;base64,[A-Za-z0-9+/=\s]+$")
_EMBEDDING_MAX_ITEMS = 2048


class RequestError(Exception):
    """A client error to be answered as `{"error": {...}}` with `status`."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None, status: int = 400):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _invalid_type(param: str, expected: str, value: object) -> RequestError:
    return RequestError(
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _invalid_value(param: str, message: str) -> RequestError:
    return RequestError(message, param=param, code="invalid_value")


def _require_str(obj: Mapping[str, Any], key: str, path: str) -> str:
    if key not in obj or obj[key] is None:
        raise RequestError(f"Missing required parameter: '{path}'.", param=path, code="missing_required_parameter")
    value = obj[key]
    if not isinstance(value, str):
        raise _invalid_type(path, "a string", value)
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_range(body: Mapping[str, Any], key: str, low: float, high: float) -> None:
    value = body.get(key)
    if value is None:
        return
    if not _is_number(value):
        raise _invalid_type(key, "a decimal", value)
    if value < low:
        raise RequestError(
            f"Invalid '{key}': decimal below minimum value. Expected a value >= {low:g}, but got {value} instead.",
            param=key,
            code="decimal_below_min_value",
        )
    if value > high:
        raise RequestError(
            f"Invalid '{key}': decimal above maximum value. Expected a value <= {high:g}, but got {value} instead.",
            param=key,
            code="decimal_above_max_value",
        )


def _check_int_min(body: Mapping[str, Any], key: str, minimum: int) -> None:
    value = body.get(key)
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid_type(key, "an integer", value)
    if value < minimum:
        raise RequestError(
            f"Invalid '{key}': integer below minimum value. Expected a value >= {minimum}, but got {value} instead.",
            param=key,
            code="integer_below_min_value",
        )


def _check_bool(body: Mapping[str, Any], key: str) -> None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise _invalid_type(key, "a boolean", value)


def validate_chat(body: Mapping[str, Any]) -> None:
    """Validate a chat completions request body (already known to be a JSON object)."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        if "model" in body and body["model"] is not None:
            raise _invalid_type("model", "a string", body["model"])
        raise RequestError("you must provide a model parameter", param=None, code=None)
    _validate_messages(body.get("messages"))
    _check_bool(body, "stream")
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if body.get("stream") is not True:
            raise _invalid_value(
                "stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled."
            )
        if not isinstance(stream_options, dict):
            raise _invalid_type("stream_options", "an object", stream_options)
        _check_bool(stream_options, "include_usage")
    _check_int_min(body, "n", 1)
    _check_int_min(body, "max_tokens", 1)
    _check_int_min(body, "max_completion_tokens", 1)
    _check_range(body, "temperature", 0, 2)
    _check_range(body, "top_p", 0, 1)
    _check_range(body, "presence_penalty", -2, 2)
    _check_range(body, "frequency_penalty", -2, 2)
    _check_bool(body, "logprobs")
    _validate_stop(body.get("stop"))
    _validate_tools(body)
    _validate_response_format(body.get("response_format"))


def _validate_messages(messages: object) -> None:
    if messages is None:
        raise RequestError(
            "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter"
        )
    if not isinstance(messages, list):
        raise _invalid_type("messages", "an array", messages)
    if not messages:
        raise RequestError(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    pending_ids: list[str] = []  # tool_call ids of the latest assistant message still awaiting a tool response
    for index, message in enumerate(messages):
        path = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _invalid_type(path, "an object", message)
        role = message.get("role")
        if role not in ROLES:
            raise _invalid_value(
                f"{path}.role",
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', "
                "and 'developer'.",
            )
        if role != "tool" and pending_ids:
            raise RequestError(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(pending_ids)}",
                param="messages",
                code=None,
            )
        _validate_content(message, role, path)
        if message.get("name") is not None and not isinstance(message["name"], str):
            raise _invalid_type(f"{path}.name", "a string", message["name"])
        if role == "assistant":
            pending_ids = _validate_tool_calls(message.get("tool_calls"), f"{path}.tool_calls")
        elif role == "tool":
            call_id = _require_str(message, "tool_call_id", f"{path}.tool_call_id")
            if call_id not in pending_ids:
                raise RequestError(
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
                    "'tool_calls'.",
                    param=f"{path}.role",
                    code=None,
                )
            pending_ids.remove(call_id)
        elif role == "function":
            _require_str(message, "name", f"{path}.name")


def _validate_content(message: Mapping[str, Any], role: str, path: str) -> None:
    content = message.get("content")
    content_path = f"{path}.content"
    if content is None:
        may_be_null = role == "function" or (
            role == "assistant" and (message.get("tool_calls") or message.get("function_call"))
        )
        if not may_be_null:
            raise RequestError(
                "Invalid value for 'content': expected a string, got null.", param=content_path, code=None
            )
        return
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _invalid_type(content_path, "one of a string or array of objects", content)
    if not content and role == "user":
        raise RequestError(
            f"Invalid '{content_path}': empty array. Expected an array with minimum length 1, but got an empty array "
            "instead.",
            param=content_path,
            code="empty_array",
        )
    allowed = {"user": ("text", "image_url", "input_audio", "file"), "assistant": ("text", "refusal")}
    for index, part in enumerate(content):
        _validate_part(part, allowed.get(role, ("text",)), f"{content_path}[{index}]")


def _validate_part(part: object, allowed: tuple[str, ...], path: str) -> None:
    if not isinstance(part, dict):
        raise _invalid_type(path, "an object", part)
    kind = part.get("type")
    if kind not in allowed:
        supported = ", ".join(f"'{name}'" for name in allowed)
        raise _invalid_value(f"{path}.type", f"Invalid value: '{kind}'. Supported values are: {supported}.")
    if kind in ("text", "refusal"):
        _require_str(part, kind, f"{path}.{kind}")
    elif kind == "image_url":
        image = part.get("image_url")
        if not isinstance(image, dict):
            raise _invalid_type(f"{path}.image_url", "an object", image)
        url = _require_str(image, "url", f"{path}.image_url.url")
        if not (url.startswith(("http://", "https://")) or _DATA_URL.match(url)):
            raise _invalid_value(
                f"{path}.image_url.url",
                "Invalid image URL: expected an http(s) URL or a base64-encoded data URL.",
            )
        if image.get("detail") not in (None, "auto", "low", "high"):
            raise _invalid_value(f"{path}.image_url.detail", f"Invalid value: '{image['detail']}'.")
    elif kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict):
            raise _invalid_type(f"{path}.input_audio", "an object", audio)
        _require_str(audio, "data", f"{path}.input_audio.data")
        if audio.get("format") not in ("wav", "mp3"):
            raise _invalid_value(
                f"{path}.input_audio.format",
                f"Invalid value: '{audio.get('format')}'. Supported values are: 'wav' and 'mp3'.",
            )
    else:
        file = part.get("file")
        if not isinstance(file, dict):
            raise _invalid_type(f"{path}.file", "an object", file)
        if not isinstance(file.get("file_data"), str) and not isinstance(file.get("file_id"), str):
            raise RequestError(
                "Missing required parameter: one of 'file_data' or 'file_id'.",
                param=f"{path}.file",
                code="missing_required_parameter",
            )


def _validate_tool_calls(tool_calls: object, path: str) -> list[str]:
    if tool_calls is None:
        return []
    if not isinstance(tool_calls, list):
        raise _invalid_type(path, "an array", tool_calls)
    ids: list[str] = []
    for index, call in enumerate(tool_calls):
        call_path = f"{path}[{index}]"
        if not isinstance(call, dict):
            raise _invalid_type(call_path, "an object", call)
        ids.append(_require_str(call, "id", f"{call_path}.id"))
        if call.get("type") != "function":
            raise _invalid_value(f"{call_path}.type", f"Invalid value: '{call.get('type')}'. Value must be 'function'.")
        function = call.get("function")
        if not isinstance(function, dict):
            raise _invalid_type(f"{call_path}.function", "an object", function)
        _require_str(function, "name", f"{call_path}.function.name")
        _require_str(function, "arguments", f"{call_path}.function.arguments")
    return ids


def _validate_stop(stop: object) -> None:
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
        raise _invalid_type("stop", "one of a string or array of strings", stop)
    if len(stop) > 4:
        raise RequestError(
            f"Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length "
            f"{len(stop)} instead.",
            param="stop",
            code="array_above_max_length",
        )


def tool_names(body: Mapping[str, Any]) -> list[str]:
    """Function names declared in a (validated) request's `tools`."""
    return [tool["function"]["name"] for tool in body.get("tools") or []]


def _validate_tools(body: Mapping[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _invalid_type("tools", "an array", tools)
        for index, tool in enumerate(tools):
            path = f"tools[{index}]"
            if not isinstance(tool, dict):
                raise _invalid_type(path, "an object", tool)
            if tool.get("type") != "function":
                raise _invalid_value(f"{path}.type", f"Invalid value: '{tool.get('type')}'. Value must be 'function'.")
            function = tool.get("function")
            if not isinstance(function, dict):
                raise _invalid_type(f"{path}.function", "an object", function)
            name = _require_str(function, "name", f"{path}.function.name")
            if not FUNCTION_NAME.match(name):
                raise _invalid_value(
                    f"{path}.function.name",
                    f"Invalid '{path}.function.name': string does not match pattern. Expected a string that matches "
                    f"the pattern '^[a-zA-Z0-9_-]+$' (at most 64 characters), but got '{name}'.",
                )
            if function.get("parameters") is not None and not isinstance(function["parameters"], dict):
                raise _invalid_type(f"{path}.function.parameters", "an object", function["parameters"])
    has_tools = bool(tools)
    for key in ("tool_choice", "parallel_tool_calls"):
        if body.get(key) is not None and not has_tools:
            raise _invalid_value(key, f"Invalid value for '{key}': '{key}' is only allowed when 'tools' are specified.")
    _check_bool(body, "parallel_tool_calls")
    _validate_tool_choice(body.get("tool_choice"), tool_names(body))


def _validate_tool_choice(choice: object, names: list[str]) -> None:
    if choice is None or choice in ("none", "auto", "required"):
        return
    if isinstance(choice, str):
        raise _invalid_value(
            "tool_choice",
            f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and 'required'.",
        )
    if not isinstance(choice, dict) or choice.get("type") != "function" or not isinstance(choice.get("function"), dict):
        raise _invalid_value("tool_choice", "Invalid value for 'tool_choice': expected a function tool choice.")
    name = _require_str(choice["function"], "name", "tool_choice.function.name")
    if name not in names:
        raise _invalid_value(
            "tool_choice",
            f"Invalid value for 'tool_choice': tool choice function '{name}' not found in 'tools' parameter.",
        )


def _validate_response_format(response_format: object) -> None:
    if response_format is None:
        return
    if not isinstance(response_format, dict):
        raise _invalid_type("response_format", "an object", response_format)
    kind = response_format.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise _invalid_value(
            "response_format.type",
            f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object', and 'json_schema'.",
        )
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict):
            raise RequestError(
                "Missing required parameter: 'response_format.json_schema'.",
                param="response_format.json_schema",
                code="missing_required_parameter",
            )
        _require_str(spec, "name", "response_format.json_schema.name")


def validate_embeddings(body: Mapping[str, Any]) -> None:
    """Validate an embeddings request body (already known to be a JSON object)."""
    _require_str(body, "model", "model")
    items = embedding_inputs(body.get("input"))
    if len(items) > _EMBEDDING_MAX_ITEMS:
        raise RequestError(
            f"Invalid 'input': maximum {_EMBEDDING_MAX_ITEMS} items, but got {len(items)}.",
            param="input",
            code="array_above_max_length",
        )
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise _invalid_value(
            "encoding_format",
            f"Invalid value: '{body['encoding_format']}'. Supported values are: 'float' and 'base64'.",
        )
    _check_int_min(body, "dimensions", 1)
    if body.get("dimensions") is not None and body["model"].startswith("text-embedding-ada"):
        raise RequestError("This model does not support specifying dimensions.", param=None, code=None)


def embedding_inputs(value: object) -> list[str | list[int]]:
    """Normalise `input` to a list of items (text or token arrays), raising `RequestError` when malformed."""
    invalid = RequestError(
        "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
    )
    if value is None:
        raise RequestError("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    if isinstance(value, str):
        if not value:
            raise invalid
        return [value]
    if not isinstance(value, list) or not value:
        raise invalid
    if all(isinstance(item, str) and item for item in value):
        return list(value)
    if all(_is_token(item) for item in value):
        return [list(value)]
    if all(isinstance(item, list) and item and all(_is_token(tok) for tok in item) for item in value):
        return [list(item) for item in value]
    raise invalid


def _is_token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
