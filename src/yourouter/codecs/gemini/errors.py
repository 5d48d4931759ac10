"""Gemini's google.rpc error envelope, `usageMetadata` <-> IR usage, and metering of passthrough Gemini bodies
and streams."""

from __future__ import annotations

from typing import Any

import orjson

from yourouter.codecs.sse import data_of
from yourouter.ir.errors import ErrorKind, GatewayError
from yourouter.ir.usage import Usage

#: google.rpc status names by HTTP status (the table in the Gemini spec; 529 is Anthropic's overload).
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}
#: Kinds whose status name does not depend on the HTTP status.
_KIND_NAMES = {
    ErrorKind.INVALID_REQUEST: "INVALID_ARGUMENT",
    ErrorKind.PAYLOAD_TOO_LARGE: "INVALID_ARGUMENT",
    ErrorKind.AUTHENTICATION: "UNAUTHENTICATED",
    ErrorKind.PERMISSION: "PERMISSION_DENIED",
    ErrorKind.NOT_FOUND: "NOT_FOUND",
    ErrorKind.RATE_LIMIT: "RESOURCE_EXHAUSTED",
    ErrorKind.QUOTA: "RESOURCE_EXHAUSTED",
    ErrorKind.TIMEOUT: "DEADLINE_EXCEEDED",
}


def status_name(kind: ErrorKind | None, status: int) -> str:
    """The google.rpc `status` for an error: by kind where the kind decides, else by HTTP status."""
    if kind is not None and kind in _KIND_NAMES:
        return _KIND_NAMES[kind]
    if status in _STATUS_NAMES:
        return _STATUS_NAMES[status]
    if 400 <= status < 500:
        return "FAILED_PRECONDITION"
    return "INTERNAL"


def _code(status: int) -> int:
    return 503 if status == 529 else status  # Google clients know no 529


def error_object(error: GatewayError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": _code(error.status), "message": error.message,
                            "status": status_name(error.kind, error.status)}
    if error.code:
        body["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": error.code.upper(),
                            "domain": "yourouter"}]
    return {"error": body}


def error_body(error: GatewayError) -> bytes:
    return orjson.dumps(error_object(error))


def stream_error_event(error: GatewayError) -> bytes:
    """An error inside an SSE stream, as a `data:` event (Gemini has no event names)."""
    return b"data: " + error_body(error) + b"\r\n\r\n"


def stream_error_chunk(status: int, message: str, kind: str | None = None) -> dict[str, Any]:
    try:
        error_kind: ErrorKind | None = ErrorKind(kind) if kind else None
    except ValueError:
        error_kind = None
    if error_kind is ErrorKind.UPSTREAM:
        error_kind = None  # an upstream failure is named by its status
    return {"error": {"code": _code(status), "message": message, "status": status_name(error_kind, status)}}


# Usage ------------------------------------------------------------------------------------------------------------

def _count(raw: dict[str, Any], name: str) -> int:
    value = raw.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_in(raw: Any) -> Usage | None:
    """`usageMetadata` -> IR. Output = visible candidates + thoughts (Gemini counts them apart); prompt includes
    cached input and the prompt of built-in tool use, so that prompt + completion = totalTokenCount."""
    if not isinstance(raw, dict):
        return None
    thoughts = _count(raw, "thoughtsTokenCount")
    return Usage(prompt_tokens=_count(raw, "promptTokenCount") + _count(raw, "toolUsePromptTokenCount"),
                 completion_tokens=_count(raw, "candidatesTokenCount") + thoughts,
                 cached_tokens=_count(raw, "cachedContentTokenCount"), reasoning_tokens=thoughts)


def usage_out(usage: Usage) -> dict[str, Any]:
    reasoning = min(usage.reasoning_tokens, usage.completion_tokens)
    out: dict[str, Any] = {"promptTokenCount": usage.prompt_tokens,
                           "candidatesTokenCount": usage.completion_tokens - reasoning,
                           "totalTokenCount": usage.total_tokens}
    if reasoning:
        out["thoughtsTokenCount"] = reasoning
    if usage.cached_tokens:
        out["cachedContentTokenCount"] = usage.cached_tokens
    return out


# Passthrough metering ---------------------------------------------------------------------------------------------

def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def usage_of_response(body: bytes) -> Usage | None:
    """Usage of a generateContent body, or of a whole streamed JSON array (its last `usageMetadata`)."""
    payload = _json(body)
    if isinstance(payload, list):
        found = [item["usageMetadata"] for item in payload if isinstance(item, dict) and "usageMetadata" in item]
        return usage_in(found[-1]) if found else None
    return usage_in(payload.get("usageMetadata")) if isinstance(payload, dict) else None


def upstream_error_message(body: bytes) -> str | None:
    payload = _json(body)
    if isinstance(payload, list) and payload:  # errors of a streamed JSON array come as `[{"error": ...}]`
        payload = payload[0]
    error = payload.get("error") if isinstance(payload, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else None


class GeminiUsageTap:
    """Forwards every event of a passthrough stream unchanged and keeps the last `usageMetadata` (Gemini puts
    running counts on chunks; the last is authoritative). Only events that mention usage are parsed."""

    __slots__ = ("usage",)

    def __init__(self) -> None:
        self.usage: Usage | None = None

    def event(self, raw: bytes) -> bytes | None:
        if raw.find(b"usageMetadata") < 0:  # bytes.find: see codecs/sse.py
            return raw
        data = data_of(raw)
        payload = _json(data) if data else None
        if isinstance(payload, dict):
            usage = usage_in(payload.get("usageMetadata"))
            if usage is not None:
                self.usage = usage
        return raw


def stream_tap(strip_usage: bool) -> GeminiUsageTap:
    """Gemini clients always get usage (the dialect has no opt-in), so `strip_usage` changes nothing."""
    return GeminiUsageTap()
