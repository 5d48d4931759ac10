"""The OpenAI dialect: request checks, usage extraction, stream usage handling, and its error envelope.

Passthrough (OpenAI client -> OpenAI-protocol upstream) touches bodies as little as possible: requests are parsed
once to read `model`/`stream` and re-encoded only when usage reporting must be switched on; responses are read
only for `usage`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from yourouter.codecs.common import parse_object
from yourouter.codecs.sse import data_of
from yourouter.ir.errors import ErrorKind, GatewayError, bad_request
from yourouter.ir.usage import Usage

DIALECT = "openai"

_ERROR_TYPES = {
    ErrorKind.INVALID_REQUEST: "invalid_request_error",
    ErrorKind.AUTHENTICATION: "invalid_request_error",
    ErrorKind.PERMISSION: "invalid_request_error",
    ErrorKind.NOT_FOUND: "invalid_request_error",
    ErrorKind.PAYLOAD_TOO_LARGE: "invalid_request_error",
    ErrorKind.RATE_LIMIT: "requests",
    ErrorKind.QUOTA: "insufficient_quota",
    ErrorKind.UPSTREAM: "server_error",
    ErrorKind.TIMEOUT: "server_error",
    ErrorKind.GATEWAY: "server_error",
}


def error_body(error: GatewayError) -> bytes:
    return orjson.dumps({"error": {"message": error.message, "type": _ERROR_TYPES[error.kind],
                                   "param": error.param, "code": error.code}})


def stream_error_event(error: GatewayError) -> bytes:
    """An error inside an SSE stream, as OpenAI sends one (the SDK raises on it)."""
    return b"data: " + error_body(error) + b"\n\n"


# Requests -----------------------------------------------------------------------------------------------------

def _model(payload: dict[str, Any]) -> str:
    model = payload.get("model")
    if model is None:
        raise bad_request("you must provide a model parameter", param="model", code="missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise bad_request("`model` must be a non-empty string.", param="model", code="invalid_type")
    return model


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    stream: bool
    include_usage: bool
    payload: dict[str, Any]


def parse_chat(body: bytes) -> ChatRequest:
    payload = parse_object(body)
    model = _model(payload)
    messages = payload.get("messages")
    if messages is None:
        raise bad_request("Missing required parameter: 'messages'.", param="messages",
                          code="missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise bad_request("`messages` must be a non-empty array.", param="messages", code="invalid_value")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad_request(f"messages[{index}] must be an object with a `role`.", param=f"messages[{index}]",
                              code="invalid_value")
    stream = payload.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise bad_request("`stream` must be a boolean.", param="stream", code="invalid_type")
    options = payload.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_request("`stream_options` must be an object.", param="stream_options", code="invalid_type")
    include_usage = bool(options and options.get("include_usage") is True)
    return ChatRequest(model=model, stream=stream, include_usage=include_usage, payload=payload)


def upstream_chat_body(request: ChatRequest, raw: bytes) -> bytes:
    """The body for an OpenAI-protocol upstream: the client's bytes, unless usage must be switched on."""
    if not request.stream or request.include_usage:
        return raw
    payload = dict(request.payload)
    options = dict(payload.get("stream_options") or {})
    options["include_usage"] = True
    payload["stream_options"] = options
    return orjson.dumps(payload)


@dataclass(frozen=True, slots=True)
class EmbeddingsRequest:
    model: str
    payload: dict[str, Any]


def parse_embeddings(body: bytes) -> EmbeddingsRequest:
    payload = parse_object(body)
    model = _model(payload)
    data = payload.get("input")
    if data is None:
        raise bad_request("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    if data == "" or data == []:
        raise bad_request("'input' cannot be an empty string or array.", param="input", code="invalid_value")
    if not isinstance(data, str | list):
        raise bad_request("'input' must be a string or an array of strings or tokens.", param="input",
                          code="invalid_type")
    encoding = payload.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        raise bad_request("'encoding_format' must be 'float' or 'base64'.", param="encoding_format",
                          code="invalid_value")
    return EmbeddingsRequest(model=model, payload=payload)


# Responses ----------------------------------------------------------------------------------------------------

def usage_from(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    return Usage(prompt_tokens=int(usage.get("prompt_tokens") or 0),
                 completion_tokens=int(usage.get("completion_tokens") or 0), cached_tokens=int(cached or 0))


def usage_of_response(body: bytes) -> Usage | None:
    """Usage of a non-streamed chat or embeddings response (None when absent or unreadable)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return usage_from(payload.get("usage")) if isinstance(payload, dict) else None


_USAGE_NULL = (b',"usage":null', b', "usage": null', b',"usage": null')


class StreamUsageTap:
    """Watches a chat stream's events for the usage chunk and, when the client did not ask for usage, removes it
    (and the `"usage": null` fields the upstream adds to every chunk in that mode)."""

    __slots__ = ("strip", "usage")

    def __init__(self, strip: bool) -> None:
        self.strip = strip
        self.usage: Usage | None = None

    def event(self, raw: bytes) -> bytes | None:
        """The event to forward (maybe rewritten), or None to drop it."""
        if raw.find(b'"usage"') < 0:  # bytes.find, not `in`: see codecs/sse.py
            return raw
        if raw.find(b'"usage":null') >= 0 or raw.find(b'"usage": null') >= 0:
            if not self.strip:
                return raw
            for pattern in _USAGE_NULL:
                raw = raw.replace(pattern, b"")
            return raw
        data = data_of(raw)
        if data is None:
            return raw
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return raw
        if not isinstance(chunk, dict):
            return raw
        usage = usage_from(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        if not self.strip:
            return raw
        if not chunk.get("choices"):
            return None
        chunk.pop("usage", None)
        return b"data: " + orjson.dumps(chunk) + b"\n\n"


def stream_tap(strip_usage: bool) -> StreamUsageTap:
    return StreamUsageTap(strip_usage)
