"""A protocol-faithful Anthropic Messages API upstream simulator, as a raw ASGI app.

Serves `POST /v1/messages` (JSON and named-event SSE), `POST /v1/messages/count_tokens`, `GET /v1/models[/{id}]`
and `GET /health` (every path also without the `/v1` prefix), with Anthropic's validation, error envelopes
(`{"type": "error", "error": {...}, "request_id": ...}`) and a `request-id` header on every API response.
Requests must carry `anthropic-version` (any value); when `SimulatorSettings.api_key` is set they must also carry
the key as `x-api-key: <key>` or `Authorization: Bearer <key>` (the SDK 2.x sends the latter).

The design, settings, control endpoints and fault kinds are the OpenAI simulator's (see `simulators.openai`):
`POST/GET/DELETE /_sim/faults`, `GET/DELETE /_sim/requests`, `fail_rate`/`fail_status`, and the `[sim:...]`
directives in the text of the last user turn. Faults apply to `POST /v1/messages` only. Differences that follow
from the protocol: injected errors use Anthropic's error types (529 `overloaded_error`, 429 `rate_limit_error`
with `retry-after` and `anthropic-ratelimit-*` headers, ...); `midstream_error` sends
`event: error` with an `overloaded_error` (a non-streaming request gets a 529 instead).
Any model name is answered; the model list is `settings.models`, or Claude models when that is left at the
OpenAI simulator's default.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qs

from ._anthropic_messages import (
    count_input_tokens,
    last_user_directives,
    named_sse_event,
    plan_message,
    render_events,
    render_message,
)
from ._anthropic_validation import validate_messages_request
from ._asgi import SSE_CONTENT_TYPE, Headers, send_json, serve
from ._base import DEFAULT_MODELS, Exchange, Fault, Request, SimulatorApp, SimulatorSettings, header_value, parse_json
from ._openai_chat import random_id
from ._openai_validation import RequestError
from .openai import MODEL_CREATED

__all__ = ["AnthropicSimulator", "SimulatorSettings", "create_app", "run"]

CLAUDE_MODELS = (
    "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5-20251001",
    "claude-opus-4-1-20250805",
    "claude-opus-4-20250514",
    "claude-sonnet-4-20250514",
    "claude-3-7-sonnet-20250219",
    "claude-3-5-haiku-20241022",
)
# status -> (error type, message) of the envelope used for injected errors and client errors
ERROR_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Simulated bad request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found"),
    409: ("conflict_error", "Conflict"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed the rate limit for your organization. Try again later."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}
_DATED_MODEL = re.compile(r"^(.*)-(\d{4})(\d{2})(\d{2})$")
_MODEL_PAGE_LIMIT = 1000


def error_type_for(status: int) -> str:
    if status in ERROR_TYPES:
        return ERROR_TYPES[status][0]
    return "api_error" if status >= 500 else "invalid_request_error"


def error_envelope(status: int, message: str, request_id: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type_for(status), "message": message}, "request_id": request_id}


def describe_model(model_id: str) -> dict[str, Any]:
    """An Anthropic `model` object; the display name and creation date are derived from the id."""
    dated = _DATED_MODEL.match(model_id)
    stem = dated.group(1) if dated else model_id
    created = (
        f"{dated.group(2)}-{dated.group(3)}-{dated.group(4)}T00:00:00Z"
        if dated
        else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(MODEL_CREATED))
    )
    parts = stem.split("-")
    words = [part.capitalize() for part in parts if not part.isdigit()]
    version = ".".join(part for part in parts if part.isdigit())
    display = " ".join(words + ([version] if version else []))
    return {"type": "model", "id": model_id, "display_name": display, "created_at": created}


class AnthropicSimulator(SimulatorApp[RequestError]):
    """The ASGI application. `state` is exposed for in-process use (queueing faults, reading the request log)."""

    errors = (RequestError,)
    midstream_status = 529
    logs_query = False

    def __init__(self, settings: SimulatorSettings) -> None:
        super().__init__(settings)
        self.models = list(CLAUDE_MODELS) if settings.models == list(DEFAULT_MODELS) else list(settings.models)

    def response_headers(self, request: Request) -> Headers:
        return [(b"request-id", random_id(self.state.rng, "req_011", 21).encode())]

    async def send_error(self, error: RequestError, ex: Exchange) -> None:
        envelope = error_envelope(error.status, error.message, header_value(ex.headers, b"request-id"))
        await send_json(ex.send, error.status, envelope, ex.headers)

    async def handle(self, ex: Exchange) -> None:
        method, path = ex.request.method, ex.request.path
        route = path[3:] if path.startswith("/v1/") else path
        targets = {"/messages": "POST", "/messages/count_tokens": "POST", "/models": "GET", "/health": "GET"}
        expected = "GET" if route.startswith("/models/") else targets.get(route)
        if expected is None:
            raise RequestError("Not Found", status=404)
        if method != expected:
            raise RequestError(f"Method Not Allowed ({method} {path})", status=405)
        if route == "/health":
            await send_json(ex.send, 200, {"status": "ok"}, ex.headers)
            return
        self._authenticate(ex.request.headers)
        if not ex.request.headers.get("anthropic-version"):
            raise RequestError("anthropic-version: header is required")
        if route == "/models":
            await send_json(ex.send, 200, self._model_page(ex.request.query_string), ex.headers)
        elif route.startswith("/models/"):
            model_id = route[len("/models/") :]
            if model_id not in self.models:
                raise RequestError(f"model: {model_id}", status=404)
            await send_json(ex.send, 200, describe_model(model_id), ex.headers)
        elif route == "/messages/count_tokens":
            body = _json_object(ex.request.body)
            validate_messages_request(body, count_only=True)
            await send_json(ex.send, 200, {"input_tokens": count_input_tokens(body)}, ex.headers)
        else:
            await self._messages(ex)

    def _authenticate(self, request_headers: dict[str, str]) -> None:
        key = self.settings.api_key
        if key is None:
            return
        api_key = request_headers.get("x-api-key")
        authorization = request_headers.get("authorization", "")
        if api_key == key or authorization == f"Bearer {key}":
            return
        if api_key is None and not authorization:
            raise RequestError("x-api-key header is required", status=401)
        raise RequestError("invalid x-api-key" if api_key is not None else "Invalid bearer token", status=401)

    def _model_page(self, query_string: str) -> dict[str, Any]:
        """`GET /v1/models` with Anthropic's cursor pagination (`limit`, `after_id`, `before_id`)."""
        query = {name: values[-1] for name, values in parse_qs(query_string).items()}
        limit_text = query.get("limit", "20")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= _MODEL_PAGE_LIMIT:
            raise RequestError(f"limit: Input should be between 1 and {_MODEL_PAGE_LIMIT}")
        ids = self.models
        if query.get("after_id") in ids:
            ids = ids[ids.index(query["after_id"]) + 1 :]
        elif query.get("before_id") in ids:
            ids = ids[: ids.index(query["before_id"])]
        limit = int(limit_text)
        page = ids[-limit:] if "before_id" in query and "after_id" not in query else ids[:limit]
        return {
            "data": [describe_model(model_id) for model_id in page],
            "has_more": len(page) < len(ids),
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
        }

    async def _messages(self, ex: Exchange) -> None:
        """Messages: faults, validation, latency, then the answer (JSON or SSE)."""
        if not await self.apply_faults(ex, self.queued_faults()):
            return
        body = _json_object(ex.request.body)
        validate_messages_request(body)
        directives = last_user_directives(body)
        if not await self.settle(ex, directives):
            return
        reply = plan_message(body, directives, self.state.rng)
        if body.get("stream") is not True:
            await self.send_body(render_message(reply), ex)
            return
        events = [named_sse_event(name, payload) for name, payload in render_events(reply)]
        error = named_sse_event("error", {"type": "error", "error": {"type": "overloaded_error",
                                                                      "message": "Overloaded"}})
        await self.send_stream(ex, events, [SSE_CONTENT_TYPE, (b"cache-control", b"no-cache"), *ex.headers],
                               lambda _: error)

    async def send_fault(self, fault: Fault, ex: Exchange, headers: Headers) -> None:
        message = ERROR_TYPES.get(fault.status, ("", f"Simulated error {fault.status}."))[1]
        extra = list(headers)
        if fault.retry_after is not None:
            extra.append((b"retry-after", f"{fault.retry_after:g}".encode()))
        if fault.status == 429:
            extra += [
                (b"anthropic-ratelimit-requests-limit", b"50"),
                (b"anthropic-ratelimit-requests-remaining", b"0"),
                (b"anthropic-ratelimit-requests-reset", _reset_time(fault.retry_after).encode()),
            ]
        envelope = error_envelope(fault.status, message, header_value(headers, b"request-id"))
        await send_json(ex.send, fault.status, envelope, extra)


def _reset_time(retry_after: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + (retry_after or 60)))


def _json_object(raw: bytes) -> dict[str, Any]:
    value, ok = parse_json(raw)
    if not ok:
        raise RequestError("There was an issue with your request body: it is not valid JSON.")
    if not isinstance(value, dict):
        raise RequestError("body: Input should be a valid dictionary")
    return value


def create_app(settings: SimulatorSettings) -> AnthropicSimulator:
    """Build the simulator ASGI app (an `async (scope, receive, send)` callable that also handles lifespan)."""
    return AnthropicSimulator(settings)


def run(settings: SimulatorSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the simulator with uvicorn until interrupted."""
    serve(create_app(settings), host, port)
