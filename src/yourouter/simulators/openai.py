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

import time
from typing import Any

from ._asgi import SSE_CONTENT_TYPE, SSE_DONE, Headers, send_json, serve, sse_event
from ._base import DEFAULT_MODELS as DEFAULT_MODELS
from ._base import FAULT_KINDS as FAULT_KINDS
from ._base import REQUEST_LOG_SIZE as REQUEST_LOG_SIZE
from ._base import Exchange, Request, SimulatorApp, directive_faults, json_object, parse_json
from ._base import Fault as Fault
from ._base import SimulatorSettings as SimulatorSettings
from ._base import SimulatorState as SimulatorState
from ._base import error_envelope as error_envelope
from ._base import serve_control as serve_control
from ._openai_azure import PREFIX as AZURE_PREFIX
from ._openai_azure import AzureCall, AzureError, annotate_chunks, annotate_completion, response_headers
from ._openai_azure import authenticate as authenticate_azure
from ._openai_chat import content_text, parse_directives, plan_reply, random_id, render_chunks, render_completion
from ._openai_embeddings import render_embeddings
from ._openai_validation import RequestError, validate_chat, validate_embeddings

MODEL_CREATED = 1_700_000_000
# the shared pieces' old names here, for code that imported them from this module
_directive_faults = directive_faults
_parse_json = parse_json

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


class OpenAISimulator(SimulatorApp[RequestError | AzureError]):
    """The ASGI application. `state` is exposed for in-process use (queueing faults, reading the request log)."""

    errors = (RequestError, AzureError)

    def response_headers(self, request: Request) -> Headers:
        if request.path.startswith(AZURE_PREFIX):
            return response_headers(self.state.rng)
        return [(b"x-request-id", random_id(self.state.rng, "req_", 32).encode()), (b"openai-version", b"2020-10-01")]

    async def handle(self, ex: Exchange) -> None:
        if ex.request.path.startswith(AZURE_PREFIX):
            await self._azure(ex)
        else:
            await self._route(ex)

    async def send_error(self, error: RequestError | AzureError, ex: Exchange) -> None:
        if isinstance(error, AzureError):
            await send_json(ex.send, error.status, error.envelope(), self._timed(ex))
            return
        envelope = error_envelope(error.message, error_type="invalid_request_error", param=error.param, code=error.code)
        await send_json(ex.send, error.status, envelope, self._timed(ex))

    def finish(self, entry: dict[str, Any], ex: Exchange) -> None:
        # What a gateway test checks: did the caller go away, and how long was this request held?
        entry["client_gone"] = ex.watch.gone.is_set()
        entry["held_s"] = round(time.monotonic() - ex.request.started, 3)

    async def _route(self, ex: Exchange) -> None:
        method, path = ex.request.method, ex.request.path
        route = path[3:] if path.startswith("/v1/") else path
        targets = {"/chat/completions": "POST", "/embeddings": "POST", "/models": "GET", "/health": "GET"}
        expected = "GET" if route.startswith("/models/") else targets.get(route)
        if expected is None:
            raise RequestError(f"Invalid URL ({method} {path})", status=404)
        if method != expected:
            raise RequestError(f"Invalid method for URL ({method} {path})", status=405)
        if route == "/health":
            await send_json(ex.send, 200, {"status": "ok"}, ex.headers)
            return
        self._authenticate(ex.request.headers)
        if route == "/models":
            models = [self._model(model_id) for model_id in self.settings.models]
            await send_json(ex.send, 200, {"object": "list", "data": models}, self._timed(ex))
        elif route.startswith("/models/"):
            model_id = route[len("/models/") :]
            if model_id not in self.settings.models:
                message = f"The model '{model_id}' does not exist or you do not have access to it."
                raise RequestError(message, code="model_not_found", status=404)
            await send_json(ex.send, 200, self._model(model_id), self._timed(ex))
        else:
            await self._generate(route, ex)

    async def _azure(self, ex: Exchange) -> None:
        """Azure OpenAI's deployment paths: Azure's routing and auth, then the same handlers as OpenAI's paths."""
        call = self._azure_call(ex.request)
        authenticate_azure(ex.request.headers, self.settings.api_key)
        await self._generate(call.route, ex, call)

    @staticmethod
    def _azure_call(request: Request) -> AzureCall:
        return AzureCall.parse(request.method, request.path, request.query_string.encode("latin-1"))

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

    async def _generate(self, route: str, ex: Exchange, azure: AzureCall | None = None) -> None:
        """Chat completions and embeddings: faults, validation, latency, then the answer (JSON or SSE).

        With `azure`, the deployment is the model (Azure ignores the body's `model`) and replies are Azure's."""
        if not await self.apply_faults(ex, self.queued_faults()):
            return
        body = json_object(ex.request.body)
        if azure is not None:
            body["model"] = azure.deployment
        if route == "/embeddings":
            validate_embeddings(body)
            directives = parse_directives(" ".join(i for i in _as_list(body["input"]) if isinstance(i, str)))
        else:
            validate_chat(body)
            last = body["messages"][-1]
            directives = parse_directives(content_text(last.get("content"))[0] if last["role"] == "user" else "")
        if not await self.settle(ex, directives):
            return
        if route == "/embeddings":
            await self.send_body(render_embeddings(body, self.settings.embedding_dimensions), ex, self._timed(ex))
            return
        reply = plan_reply(body, directives, self.state.rng, int(time.time()))
        if body.get("stream") is not True:
            completion = render_completion(reply)
            completion = annotate_completion(completion) if azure is not None else completion
            await self.send_body(completion, ex, self._timed(ex))
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = render_chunks(reply, include_usage)
        chunks = annotate_chunks(chunks) if azure is not None else chunks
        error = sse_event(error_envelope(_STATUS_ERRORS[500][2], error_type="server_error"))
        await self.send_stream(ex, [sse_event(chunk) for chunk in chunks] + [SSE_DONE],
                               [SSE_CONTENT_TYPE, (b"cache-control", b"no-cache"), *self._timed(ex)], lambda _: error)

    async def send_fault(self, fault: Fault, ex: Exchange, headers: Headers) -> None:
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
        if fault.status == 429 and ex.request.path.startswith(AZURE_PREFIX):
            envelope = self._azure_call(ex.request).rate_limited(fault.retry_after).envelope()
        await send_json(ex.send, fault.status, envelope, extra)

    def _timed(self, ex: Exchange) -> Headers:
        elapsed = int((time.monotonic() - ex.request.started) * 1000)
        return [*ex.headers, (b"openai-processing-ms", str(elapsed).encode())]


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else [value]


def create_app(settings: SimulatorSettings) -> OpenAISimulator:
    """Build the simulator ASGI app (an `async (scope, receive, send)` callable that also handles lifespan)."""
    return OpenAISimulator(settings)


def run(settings: SimulatorSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the simulator with uvicorn until interrupted."""
    serve(create_app(settings), host, port)
