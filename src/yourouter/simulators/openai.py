"""A protocol-faithful OpenAI-compatible upstream simulator, as a raw ASGI app.

Serves `POST /v1/chat/completions` (JSON and SSE), `POST /v1/embeddings`, `GET /v1/models[/{id}]` and
`GET /health` (every path also without the `/v1` prefix), with OpenAI's validation and error envelopes.
Azure OpenAI's data plane is served too: `POST /openai/deployments/{deployment-id}/chat/completions` and
`/embeddings` with `?api-version=...`, the key in `api-key`, Azure's errors and content filter annotations
(`_openai_azure.py`); faults and directives work there the same way.
Replies are deterministic; ids come from a `random.Random` seeded by `SimulatorSettings.seed`.

Faults can be injected three ways:

- settings: `fail_rate` / `fail_status` answer a random share of chat/embeddings requests with an error;
- control endpoints (never behind auth): `POST /_sim/faults` queues a fault for the next `count` chat/embeddings
  requests, `GET`/`DELETE /_sim/faults` list/clear the queue, `GET`/`DELETE /_sim/requests` read/clear a log of
  the last 100 requests (method, path, query string, lowercased headers, parsed JSON body or null);
- directives in the last message when it is a user message (or in embeddings input text), which pass through a
  gateway unchanged: `[sim:status=429]`, `[sim:retry_after=2]`, `[sim:delay_ms=300]`, `[sim:disconnect]`,
  `[sim:midstream_disconnect=3]`, `[sim:midstream_error=3]`, `[sim:reply=some text]`, `[sim:tool_calls=2]`.

Fault kinds: `status` (error envelope for that status, `Retry-After` when `retry_after` is given), `timeout`
(wait `delay_ms`, default 30 s, then answer normally), `disconnect` (close the connection before any response;
see `drop_connection`), `midstream_disconnect` (send `after_events` SSE events, or half of a JSON body, then close
without `[DONE]`), `midstream_error` (send `after_events` events, then a `data: {"error": ...}` event and end).
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from ._asgi import (
    SSE_CONTENT_TYPE,
    SSE_DONE,
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
    sse_event,
    stream_events,
)
from ._openai_azure import PREFIX as AZURE_PREFIX
from ._openai_azure import AzureCall, AzureError, annotate_chunks, annotate_completion, response_headers
from ._openai_azure import authenticate as authenticate_azure
from ._openai_chat import (
    Directives,
    content_text,
    parse_directives,
    plan_reply,
    random_id,
    render_chunks,
    render_completion,
)
from ._openai_embeddings import render_embeddings
from ._openai_validation import RequestError, validate_chat, validate_embeddings

DEFAULT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini", "text-embedding-3-small", "text-embedding-3-large")
FAULT_KINDS = ("status", "timeout", "disconnect", "midstream_disconnect", "midstream_error")
MODEL_CREATED = 1_700_000_000
REQUEST_LOG_SIZE = 100

_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library "
    "correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
)
# status -> (type, code, message) of the envelope used for injected errors
_STATUS_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Simulated bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("request_forbidden", "unsupported_country_region_territory", "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
}


@dataclass
class SimulatorSettings:
    """How the simulator behaves; all delays in milliseconds."""

    api_key: str | None = None
    latency_ms: float = 0
    chunk_delay_ms: float = 0
    fail_rate: float = 0.0
    fail_status: int = 500
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    embedding_dimensions: int = 16
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        if not 400 <= self.fail_status <= 599:
            raise ValueError("fail_status must be an HTTP error status (400-599)")
        if self.latency_ms < 0 or self.chunk_delay_ms < 0:
            raise ValueError("latency_ms and chunk_delay_ms must not be negative")
        if self.embedding_dimensions < 1:
            raise ValueError("embedding_dimensions must be at least 1")


@dataclass(frozen=True)
class Fault:
    """One injected failure; see the module docstring for the kinds."""

    kind: str
    status: int = 500
    retry_after: float | None = None
    after_events: int = 3
    delay_ms: float = 30_000

    @classmethod
    def from_json(cls, payload: object) -> tuple[Fault, int]:
        """Parse a `POST /_sim/faults` body into a fault and how many requests it applies to."""
        if not isinstance(payload, dict):
            raise RequestError("Fault must be a JSON object.")
        if payload.get("kind") not in FAULT_KINDS:
            raise RequestError(f"'kind' must be one of {', '.join(FAULT_KINDS)}.", param="kind", code="invalid_value")
        fields = ("status", "count", "retry_after", "after_events", "delay_ms")
        numbers = {key: payload[key] for key in fields if payload.get(key) is not None}
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in numbers.values()):
            raise RequestError("Numeric fault fields must be non-negative numbers.", code="invalid_value")
        status = int(numbers.get("status", 500))
        if not 400 <= status <= 599:
            raise RequestError("'status' must be between 400 and 599.", param="status", code="invalid_value")
        fault = cls(
            kind=payload["kind"],
            status=status,
            retry_after=numbers.get("retry_after"),
            after_events=int(numbers.get("after_events", 3)),
            delay_ms=float(numbers.get("delay_ms", 30_000)),
        )
        return fault, max(1, int(numbers.get("count", 1)))


def _directive_faults(directives: Directives) -> list[Fault]:
    faults: list[Fault] = []
    if directives.delay_ms:
        faults.append(Fault("timeout", delay_ms=directives.delay_ms))
    if directives.status is not None and 400 <= directives.status <= 599:
        faults.append(Fault("status", status=directives.status, retry_after=directives.retry_after))
    if directives.disconnect:
        faults.append(Fault("disconnect"))
    if directives.midstream_disconnect is not None:
        faults.append(Fault("midstream_disconnect", after_events=directives.midstream_disconnect))
    if directives.midstream_error is not None:
        faults.append(Fault("midstream_error", after_events=directives.midstream_error))
    return faults


class SimulatorState:
    """Everything mutable about one simulator app: the fault queue, the request log and the id generator."""

    def __init__(self, seed: int | None) -> None:
        self.rng = random.Random(seed)
        self._faults: deque[list[Any]] = deque()  # [fault, remaining uses]
        self._requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)

    def queue_fault(self, fault: Fault, count: int = 1) -> None:
        self._faults.append([fault, count])

    def take_fault(self) -> Fault | None:
        if not self._faults:
            return None
        entry = self._faults[0]
        entry[1] -= 1
        if entry[1] <= 0:
            self._faults.popleft()
        fault: Fault = entry[0]
        return fault

    def pending_faults(self) -> list[dict[str, Any]]:
        return [{**asdict(fault), "remaining": remaining} for fault, remaining in self._faults]

    def clear_faults(self) -> None:
        self._faults.clear()

    def record(
        self, method: str, path: str, headers: dict[str, str], body: object, query: str = ""
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {"method": method, "path": path, "query": query, "headers": headers, "body": body}
        self._requests.append(entry)
        return entry

    def requests(self) -> list[dict[str, Any]]:
        return list(self._requests)

    def clear_requests(self) -> None:
        self._requests.clear()


def error_envelope(message: str, *, error_type: str, param: str | None = None, code: str | None = None) -> object:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _parse_json(raw: bytes) -> tuple[object, bool]:
    try:
        return orjson.loads(raw), True
    except orjson.JSONDecodeError:
        return None, False


def _json_object(raw: bytes) -> dict[str, Any]:
    value, ok = _parse_json(raw)
    if not ok:
        raise RequestError(_BAD_JSON)
    if not isinstance(value, dict):
        raise RequestError("Invalid request body: expected a JSON object.", code="invalid_type")
    return value


class OpenAISimulator:
    """The ASGI application. `state` is exposed for in-process use (queueing faults, reading the request log)."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.state = SimulatorState(settings.seed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.monotonic()
        method: str = scope["method"]
        path: str = scope["path"]
        raw = await read_body(receive)
        if path.startswith("/_sim/"):
            await serve_control(self.state, method, path, raw, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        entry = self.state.record(method, path, header_map(scope), _parse_json(raw)[0], query)
        azure = path.startswith(AZURE_PREFIX)
        headers = response_headers(self.state.rng) if azure else [
            (b"x-request-id", random_id(self.state.rng, "req_", 32).encode()),
            (b"openai-version", b"2020-10-01"),
        ]
        watch = ClientWatch(receive)
        try:
            if azure:
                await self._azure(scope, raw, watch, send, headers, started)
            else:
                await self._route(scope, raw, watch, send, headers, started)
        except RequestError as error:
            envelope = error_envelope(
                error.message, error_type="invalid_request_error", param=error.param, code=error.code
            )
            await send_json(send, error.status, envelope, self._timed(headers, started))
        except AzureError as error:
            await send_json(send, error.status, error.envelope(), self._timed(headers, started))
        finally:
            # What a gateway test checks: did the caller go away, and how long was this request held?
            entry["client_gone"] = watch.gone.is_set()
            entry["held_s"] = round(time.monotonic() - started, 3)
            watch.close()

    async def _route(
        self, scope: Scope, raw: bytes, watch: ClientWatch, send: Send, headers: Headers, started: float
    ) -> None:
        method, path = scope["method"], scope["path"]
        route = path[3:] if path.startswith("/v1/") else path
        targets = {"/chat/completions": "POST", "/embeddings": "POST", "/models": "GET", "/health": "GET"}
        expected = "GET" if route.startswith("/models/") else targets.get(route)
        if expected is None:
            raise RequestError(f"Invalid URL ({method} {path})", status=404)
        if method != expected:
            raise RequestError(f"Invalid method for URL ({method} {path})", status=405)
        if route == "/health":
            await send_json(send, 200, {"status": "ok"}, headers)
            return
        self._authenticate(header_map(scope))
        if route == "/models":
            models = [self._model(model_id) for model_id in self.settings.models]
            await send_json(send, 200, {"object": "list", "data": models}, self._timed(headers, started))
        elif route.startswith("/models/"):
            model_id = route[len("/models/") :]
            if model_id not in self.settings.models:
                message = f"The model '{model_id}' does not exist or you do not have access to it."
                raise RequestError(message, code="model_not_found", status=404)
            await send_json(send, 200, self._model(model_id), self._timed(headers, started))
        else:
            await self._generate(route, raw, watch, send, headers, started)

    async def _azure(
        self, scope: Scope, raw: bytes, watch: ClientWatch, send: Send, headers: Headers, started: float
    ) -> None:
        """Azure OpenAI's deployment paths: Azure's routing and auth, then the same handlers as OpenAI's paths."""
        call = AzureCall.parse(scope["method"], scope["path"], scope.get("query_string", b""))
        authenticate_azure(header_map(scope), self.settings.api_key)
        await self._generate(call.route, raw, watch, send, headers, started, call)

    def _authenticate(self, request_headers: dict[str, str]) -> None:
        if self.settings.api_key is None:
            return
        authorization = request_headers.get("authorization", "")
        if authorization == f"Bearer {self.settings.api_key}":
            return
        if not authorization.startswith("Bearer ") or not authorization[7:].strip():
            message = (
                "You didn't provide an API key. You need to provide your API key in an Authorization header using "
                "Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        else:
            key = authorization[7:].strip()
            message = f"Incorrect API key provided: {key[:3]}***{key[-4:] if len(key) > 8 else ''}."
        raise RequestError(message, code="invalid_api_key", status=401)

    def _model(self, model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": "simulator"}

    async def _generate(
        self,
        route: str,
        raw: bytes,
        watch: ClientWatch,
        send: Send,
        headers: Headers,
        started: float,
        azure: AzureCall | None = None,
    ) -> None:
        """Chat completions and embeddings: faults, validation, latency, then the answer (JSON or SSE).

        With `azure`, the deployment is the model (Azure ignores the body's `model`) and replies are Azure's."""
        queued = self.state.take_fault()
        if queued is None and self.settings.fail_rate and self.state.rng.random() < self.settings.fail_rate:
            queued = Fault("status", status=self.settings.fail_status)
        midstream = [queued] if queued is not None and queued.kind.startswith("midstream") else []
        if queued is not None and not midstream and not await self._apply_fault(queued, watch, send, headers, azure):
            return
        body = _json_object(raw)
        if azure is not None:
            body["model"] = azure.deployment
        if route == "/embeddings":
            validate_embeddings(body)
            directives = parse_directives(" ".join(i for i in _as_list(body["input"]) if isinstance(i, str)))
        else:
            validate_chat(body)
            last = body["messages"][-1]
            directives = parse_directives(content_text(last.get("content"))[0] if last["role"] == "user" else "")
        for fault in _directive_faults(directives):
            if fault.kind.startswith("midstream"):
                midstream.append(fault)
            elif not await self._apply_fault(fault, watch, send, headers, azure):
                return
        if not await watch.pause(self.settings.latency_ms / 1000):
            return
        cut = midstream[0] if midstream else None
        if route == "/embeddings":
            payload = render_embeddings(body, self.settings.embedding_dimensions)
            await self._send_body(payload, cut, watch, send, self._timed(headers, started))
            return
        reply = plan_reply(body, directives, self.state.rng, int(time.time()))
        if body.get("stream") is not True:
            completion = render_completion(reply)
            completion = annotate_completion(completion) if azure is not None else completion
            await self._send_body(completion, cut, watch, send, self._timed(headers, started))
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = render_chunks(reply, include_usage)
        chunks = annotate_chunks(chunks) if azure is not None else chunks
        events = [sse_event(chunk) for chunk in chunks] + [SSE_DONE]
        await self._stream(events, cut, watch, send, self._timed(headers, started))

    async def _apply_fault(
        self, fault: Fault, watch: ClientWatch, send: Send, headers: Headers, azure: AzureCall | None = None
    ) -> bool:
        """Apply a pre-response fault; return True when the request should still be answered normally."""
        if fault.kind == "timeout":
            return await watch.pause(fault.delay_ms / 1000)
        if fault.kind == "disconnect":
            await drop_connection(send, watch)
            return False
        error_type, code, message = _STATUS_ERRORS.get(
            fault.status,
            (
                "server_error" if fault.status >= 500 else "invalid_request_error",
                None,
                f"Simulated error {fault.status}.",
            ),
        )
        extra = list(headers)
        if fault.retry_after is not None:
            extra.append((b"retry-after", f"{fault.retry_after:g}".encode()))
        if fault.status == 429:
            extra += [(b"x-ratelimit-limit-requests", b"10000"), (b"x-ratelimit-remaining-requests", b"0")]
        envelope = error_envelope(message, error_type=error_type, code=code)
        if azure is not None and fault.status == 429:
            envelope = azure.rate_limited(fault.retry_after).envelope()
        await send_json(send, fault.status, envelope, extra)
        return False

    async def _send_body(
        self, payload: object, cut: Fault | None, watch: ClientWatch, send: Send, headers: Headers
    ) -> None:
        if cut is None:
            await send_json(send, 200, payload, headers)
        elif cut.kind == "midstream_error":
            await self._apply_fault(Fault("status", status=500), watch, send, headers)
        else:
            await send_half_body(send, payload, watch, headers)

    async def _stream(
        self, events: list[bytes], cut: Fault | None, watch: ClientWatch, send: Send, headers: Headers
    ) -> None:
        error = sse_event(error_envelope(_STATUS_ERRORS[500][2], error_type="server_error"))
        await stream_events(send, events, cut, watch, self.settings.chunk_delay_ms / 1000,
                            [SSE_CONTENT_TYPE, (b"cache-control", b"no-cache"), *headers], lambda _: error)

    def _timed(self, headers: Headers, started: float) -> Headers:
        elapsed = int((time.monotonic() - started) * 1000)
        return [*headers, (b"openai-processing-ms", str(elapsed).encode())]


async def serve_control(state: SimulatorState, method: str, path: str, raw: bytes, send: Send) -> None:
    """The `/_sim/*` control endpoints shared by every simulator; never behind auth, never in the request log.

    Errors here use the OpenAI envelope whatever the simulated provider, so test harnesses see one shape.
    """
    try:
        if (method, path) == ("POST", "/_sim/faults"):
            fault, count = Fault.from_json(_json_object(raw))
            state.queue_fault(fault, count)
            await send_json(send, 200, {"queued": count, "fault": asdict(fault)})
        elif (method, path) == ("GET", "/_sim/faults"):
            await send_json(send, 200, state.pending_faults())
        elif (method, path) == ("DELETE", "/_sim/faults"):
            state.clear_faults()
            await send_json(send, 200, {"cleared": True})
        elif (method, path) == ("GET", "/_sim/requests"):
            await send_json(send, 200, state.requests())
        elif (method, path) == ("DELETE", "/_sim/requests"):
            state.clear_requests()
            await send_json(send, 200, {"cleared": True})
        else:
            raise RequestError(f"Invalid URL ({method} {path})", status=404)
    except RequestError as error:
        envelope = error_envelope(error.message, error_type="invalid_request_error", param=error.param, code=error.code)
        await send_json(send, error.status, envelope)


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else [value]


def create_app(settings: SimulatorSettings) -> OpenAISimulator:
    """Build the simulator ASGI app (an `async (scope, receive, send)` callable that also handles lifespan)."""
    return OpenAISimulator(settings)


def run(settings: SimulatorSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the simulator with uvicorn until interrupted."""
    serve(create_app(settings), host, port)
