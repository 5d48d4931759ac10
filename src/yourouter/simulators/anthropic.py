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
from ._asgi import (
    SSE_CONTENT_TYPE,
    ClientWatch,
    Headers,
    Receive,
    Scope,
    Send,
    drop_connection,
    header_map,
    read_body,
    run_lifespan,
    send_half_body,
    send_json,
    serve,
    stream_events,
)
from ._openai_chat import random_id
from ._openai_validation import RequestError
from .openai import (
    DEFAULT_MODELS,
    MODEL_CREATED,
    Fault,
    SimulatorSettings,
    SimulatorState,
    _directive_faults,
    _parse_json,
    serve_control,
)

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


class AnthropicSimulator:
    """The ASGI application. `state` is exposed for in-process use (queueing faults, reading the request log)."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.state = SimulatorState(settings.seed)
        self.models = list(CLAUDE_MODELS) if settings.models == list(DEFAULT_MODELS) else list(settings.models)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        path: str = scope["path"]
        raw = await read_body(receive)
        if path.startswith("/_sim/"):
            await serve_control(self.state, method, path, raw, send)
            return
        self.state.record(method, path, header_map(scope), _parse_json(raw)[0])
        request_id = random_id(self.state.rng, "req_011", 21)
        headers: Headers = [(b"request-id", request_id.encode())]
        watch = ClientWatch(receive)
        try:
            await self._route(scope, raw, watch, send, headers)
        except RequestError as error:
            await send_json(send, error.status, error_envelope(error.status, error.message, request_id), headers)
        finally:
            watch.close()

    async def _route(self, scope: Scope, raw: bytes, watch: ClientWatch, send: Send, headers: Headers) -> None:
        method, path = scope["method"], scope["path"]
        route = path[3:] if path.startswith("/v1/") else path
        targets = {"/messages": "POST", "/messages/count_tokens": "POST", "/models": "GET", "/health": "GET"}
        expected = "GET" if route.startswith("/models/") else targets.get(route)
        if expected is None:
            raise RequestError("Not Found", status=404)
        if method != expected:
            raise RequestError(f"Method Not Allowed ({method} {path})", status=405)
        if route == "/health":
            await send_json(send, 200, {"status": "ok"}, headers)
            return
        request_headers = header_map(scope)
        self._authenticate(request_headers)
        if not request_headers.get("anthropic-version"):
            raise RequestError("anthropic-version: header is required")
        if route == "/models":
            await send_json(send, 200, self._model_page(scope.get("query_string", b"")), headers)
        elif route.startswith("/models/"):
            model_id = route[len("/models/") :]
            if model_id not in self.models:
                raise RequestError(f"model: {model_id}", status=404)
            await send_json(send, 200, describe_model(model_id), headers)
        elif route == "/messages/count_tokens":
            body = _json_object(raw)
            validate_messages_request(body, count_only=True)
            await send_json(send, 200, {"input_tokens": count_input_tokens(body)}, headers)
        else:
            await self._messages(raw, watch, send, headers)

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

    def _model_page(self, query_string: bytes) -> dict[str, Any]:
        """`GET /v1/models` with Anthropic's cursor pagination (`limit`, `after_id`, `before_id`)."""
        query = {name: values[-1] for name, values in parse_qs(query_string.decode("latin-1")).items()}
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

    async def _messages(self, raw: bytes, watch: ClientWatch, send: Send, headers: Headers) -> None:
        """Messages: faults, validation, latency, then the answer (JSON or SSE)."""
        queued = self.state.take_fault()
        if queued is None and self.settings.fail_rate and self.state.rng.random() < self.settings.fail_rate:
            queued = Fault("status", status=self.settings.fail_status)
        midstream = [queued] if queued is not None and queued.kind.startswith("midstream") else []
        if queued is not None and not midstream and not await self._apply_fault(queued, watch, send, headers):
            return
        body = _json_object(raw)
        validate_messages_request(body)
        directives = last_user_directives(body)
        for fault in _directive_faults(directives):
            if fault.kind.startswith("midstream"):
                midstream.append(fault)
            elif not await self._apply_fault(fault, watch, send, headers):
                return
        if not await watch.pause(self.settings.latency_ms / 1000):
            return
        cut = midstream[0] if midstream else None
        reply = plan_message(body, directives, self.state.rng)
        if body.get("stream") is not True:
            await self._send_body(render_message(reply), cut, watch, send, headers)
            return
        events = [named_sse_event(name, payload) for name, payload in render_events(reply)]
        await self._stream(events, cut, watch, send, headers)

    async def _apply_fault(self, fault: Fault, watch: ClientWatch, send: Send, headers: Headers) -> bool:
        """Apply a pre-response fault; return True when the request should still be answered normally."""
        if fault.kind == "timeout":
            return await watch.pause(fault.delay_ms / 1000)
        if fault.kind == "disconnect":
            await drop_connection(send, watch)
            return False
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
        await send_json(send, fault.status, error_envelope(fault.status, message, _request_id(headers)), extra)
        return False

    async def _send_body(
        self, payload: object, cut: Fault | None, watch: ClientWatch, send: Send, headers: Headers
    ) -> None:
        if cut is None:
            await send_json(send, 200, payload, headers)
        elif cut.kind == "midstream_error":
            await self._apply_fault(Fault("status", status=529), watch, send, headers)
        else:
            await send_half_body(send, payload, watch, headers)

    async def _stream(
        self, events: list[bytes], cut: Fault | None, watch: ClientWatch, send: Send, headers: Headers
    ) -> None:
        error = named_sse_event("error", {"type": "error", "error": {"type": "overloaded_error",
                                                                      "message": "Overloaded"}})
        await stream_events(send, events, cut, watch, self.settings.chunk_delay_ms / 1000,
                            [SSE_CONTENT_TYPE, (b"cache-control", b"no-cache"), *headers], lambda _: error)


def _request_id(headers: Headers) -> str:
    return next(value.decode() for name, value in headers if name == b"request-id")


def _reset_time(retry_after: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + (retry_after or 60)))


def _json_object(raw: bytes) -> dict[str, Any]:
    value, ok = _parse_json(raw)
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
