"""Anthropic's error envelope, and metering of passthrough Anthropic responses and streams."""

from __future__ import annotations

from typing import Any

import orjson

from yourouter.codecs.sse import data_of
from yourouter.ir.errors import ErrorKind, GatewayError
from yourouter.ir.usage import Usage

_ERROR_TYPES = {
    ErrorKind.INVALID_REQUEST: "invalid_request_error",
    ErrorKind.AUTHENTICATION: "authentication_error",
    ErrorKind.PERMISSION: "permission_error",
    ErrorKind.NOT_FOUND: "not_found_error",
    ErrorKind.PAYLOAD_TOO_LARGE: "request_too_large",
    ErrorKind.RATE_LIMIT: "rate_limit_error",
    ErrorKind.QUOTA: "billing_error",
    ErrorKind.UPSTREAM: "api_error",
    ErrorKind.TIMEOUT: "timeout_error",
    ErrorKind.GATEWAY: "api_error",
}


def error_object(error: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": _ERROR_TYPES[error.kind], "message": error.message}}


def error_body(error: GatewayError) -> bytes:
    return orjson.dumps(error_object(error))


def stream_error_event(error: GatewayError) -> bytes:
    return b"event: error\ndata: " + error_body(error) + b"\n\n"


def usage_in(raw: Any) -> Usage | None:
    """Anthropic usage -> IR (`input_tokens` excludes cached input; IR prompt tokens include it)."""
    if not isinstance(raw, dict):
        return None
    cache_read = int(raw.get("cache_read_input_tokens") or 0)
    cache_write = int(raw.get("cache_creation_input_tokens") or 0)
    return Usage(prompt_tokens=int(raw.get("input_tokens") or 0) + cache_read + cache_write,
                 completion_tokens=int(raw.get("output_tokens") or 0), cached_tokens=cache_read)


def usage_out(usage: Usage) -> dict[str, Any]:
    return {"input_tokens": max(usage.prompt_tokens - usage.cached_tokens, 0),
            "output_tokens": usage.completion_tokens, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": usage.cached_tokens}


def usage_of_response(body: bytes) -> Usage | None:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return usage_in(payload.get("usage")) if isinstance(payload, dict) else None


def upstream_error_message(body: bytes) -> str | None:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else None


class AnthropicUsageTap:
    """Reads usage from `message_start` and `message_delta` of a passthrough stream; forwards every event."""

    __slots__ = ("_input", "usage")

    def __init__(self) -> None:
        self._input: dict[str, Any] = {}
        self.usage: Usage | None = None

    def event(self, raw: bytes) -> bytes | None:
        if raw.find(b"message_start") < 0 and raw.find(b"message_delta") < 0:  # see codecs/sse.py
            return raw
        data = data_of(raw)
        try:
            payload = orjson.loads(data) if data else None
        except orjson.JSONDecodeError:
            return raw
        if not isinstance(payload, dict):
            return raw
        if payload.get("type") == "message_start":
            message = payload.get("message") or {}
            self._input = dict(message.get("usage") or {})
            self.usage = usage_in(self._input)
        elif payload.get("type") == "message_delta":
            merged = {**self._input, **{k: v for k, v in (payload.get("usage") or {}).items() if v is not None}}
            self.usage = usage_in(merged)
        return raw


def stream_tap(strip_usage: bool) -> AnthropicUsageTap:
    return AnthropicUsageTap()
