"""A protocol-faithful Google Gemini API (and Vertex AI generateContent) upstream simulator, as a raw ASGI app.

Routes, under `/{version}/` with version `v1`, `v1beta` or `v1beta1`:

- `POST {model}:generateContent`, `:streamGenerateContent` (`?alt=sse`: SSE `data: {...}\\r\\n\\r\\n` events and no
  `[DONE]`; otherwise one streamed JSON array), `:countTokens`, `:embedContent`, `:batchEmbedContents` and Vertex's
  `:predict` (legacy text-embedding models), where `{model}` is `models/{m}`, `tunedModels/{m}`,
  `publishers/google/models/{m}` or `projects/{p}/locations/{l}/publishers/google/models/{m}`;
- `GET models` (`pageSize`/`pageToken`), `GET models/{m}`, and Vertex's `GET publishers/google/models[/{m}]`;
- `GET /health` (no version, no auth).

Any model id is answered. With `SimulatorSettings.api_key` set, the key is accepted from `x-goog-api-key`, `?key=`
or `Authorization: Bearer`; a wrong key gets the Gemini API's 400 `API_KEY_INVALID`, a wrong bearer token Vertex's
401 `UNAUTHENTICATED`, and no credential at all the 403 `PERMISSION_DENIED` Google gives unregistered callers.

Faults work as in the OpenAI simulator (see `openai.py`): `fail_rate`/`fail_status`, the `/_sim/faults` and
`/_sim/requests` control endpoints (request log entries also carry the raw `query` string), and `[sim:...]`
directives in the text of the last content when it is a user turn (or in the texts to embed). They apply to
generate, stream and embedding requests, not to countTokens or model listing. Errors use the google.rpc envelope
`{"error": {"code", "message", "status"}}`; a mid-stream error is a `{"error": {"code": 503, ...}}` event.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from ._asgi import JSON_CONTENT_TYPE, SSE_CONTENT_TYPE, Headers, Scope, Send, send_json, serve
from ._base import Exchange, Fault, SimulatorApp, SimulatorSettings, control_answer, parse_json
from ._gemini_reply import (
    directive_text,
    embed_text,
    model_entry,
    plan_reply,
    prompt_tokens,
    render_chunks,
    render_embedding,
    render_response,
)
from ._gemini_validation import (
    GoogleError,
    validate_batch_embed,
    validate_count_tokens,
    validate_embed,
    validate_generate,
    validate_predict,
)
from ._openai_chat import Directives, estimate_tokens, parse_directives
from ._openai_validation import RequestError
from .openai import DEFAULT_MODELS as OPENAI_DEFAULT_MODELS

__all__ = ["DEFAULT_MODELS", "GeminiSimulator", "SimulatorSettings", "create_app", "run"]

DEFAULT_MODELS = (
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-2.5-flash-lite",
    "gemini-3-pro-preview",
    "gemini-embedding-001",
    "text-embedding-004",
)
VERSIONS = ("v1", "v1beta", "v1beta1")
GENERATE_METHODS = ("generateContent", "streamGenerateContent")
FAULTABLE_METHODS = (*GENERATE_METHODS, "embedContent", "batchEmbedContents", "predict")
POST_METHODS = (*FAULTABLE_METHODS, "countTokens")
PAGE_SIZE = 50

_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_BAD_KEY = "API key not valid. Please pass a valid API key."
_STATUS_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: (
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid "
        "authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
    ),
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: (
        "You exceeded your current quota, please check your plan and billing details. For more information on this "
        "error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
    ),
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}


@dataclass(frozen=True)
class Target:
    """What a request path names: the API version, the model (if any) and the `:method` (if any)."""

    version: str
    model: str | None
    method: str | None
    vertex: bool  # a `publishers/google/...` path (Vertex AI, with or without the project prefix)

    @property
    def service(self) -> str:
        return "aiplatform.googleapis.com" if self.vertex else "generativelanguage.googleapis.com"


def parse_target(path: str) -> Target | None:
    """Parse `/{version}/{model path}[:method]`; None when the path is not one the simulator serves."""
    segments = path.strip("/").split("/")
    if len(segments) < 2 or segments[0] not in VERSIONS:
        return None
    version, rest = segments[0], segments[1:]
    method: str | None = None
    if ":" in rest[-1]:
        rest[-1], method = rest[-1].split(":", 1)
    if rest[:1] == ["projects"] and len(rest) >= 4 and rest[2] == "locations" and rest[1] and rest[3]:
        rest = rest[4:]
        if rest[:3] != ["publishers", "google", "models"] or len(rest) != 4:
            return None
    vertex = rest[:2] == ["publishers", "google"]
    collection = rest[2:] if vertex else rest
    if collection == ["models"] and (vertex or method is None):
        return Target(version, None, method, vertex)
    if (
        len(collection) == 2
        and collection[1]
        and collection[0] in (("models",) if vertex else ("models", "tunedModels"))
    ):
        return Target(version, collection[1], method, vertex)
    return None


def _json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    value, ok = parse_json(raw)
    if not ok:
        raise GoogleError("Invalid JSON payload received. Unexpected token.")
    if not isinstance(value, dict):
        raise GoogleError('Invalid JSON payload received. Unknown name "": Root element must be a message.')
    return value


def status_error(status: int, retry_after: float | None = None) -> GoogleError:
    """The error an injected `status` fault answers with."""
    message = _STATUS_MESSAGES.get(status, f"Simulated error {status}.")
    details: list[dict[str, Any]] = []
    headers: Headers = []
    if status == 429:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                        "quotaValue": "10",
                    }
                ],
            }
        )
    if retry_after is not None:
        headers.append((b"retry-after", f"{retry_after:g}".encode()))
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"})
    return GoogleError(message, code=status, details=details, headers=headers)


def _frame_sse(payload: object, position: int) -> bytes:
    # Google frames with CRLF; clients accept both
    return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"


def _frame_array(payload: object, position: int) -> bytes:
    return (b"[" if position == 0 else b",\r\n") + orjson.dumps(payload)


class GeminiSimulator(SimulatorApp[GoogleError]):
    """The ASGI application. `state` is exposed for in-process use (queueing faults, reading the request log)."""

    errors = (GoogleError,)
    midstream_status = 503

    def __init__(self, settings: SimulatorSettings) -> None:
        super().__init__(settings)
        # SimulatorSettings is shared with the OpenAI simulator: its default catalogue means "use Gemini's".
        custom = list(settings.models) != list(OPENAI_DEFAULT_MODELS)
        self.models = list(settings.models) if custom else list(DEFAULT_MODELS)

    def request_path(self, scope: Scope) -> str:
        return unquote(scope["path"])

    async def send_error(self, error: GoogleError, ex: Exchange) -> None:
        await send_json(ex.send, error.code, error.envelope(), self._timed(error.headers, ex))

    async def handle(self, ex: Exchange) -> None:
        method, path = ex.request.method, ex.request.path
        if path == "/health" and method == "GET":
            await send_json(ex.send, 200, {"status": "ok"})
            return
        query = {key: values[-1] for key, values in parse_qs(ex.request.query_string).items()}
        target = parse_target(path)
        expected = "POST" if target is not None and target.method is not None else "GET"
        if target is None or method != expected or (target.method is not None and target.method not in POST_METHODS):
            raise GoogleError(f"Method not found: {method} {path}", code=404)
        if target.method is not None and target.model is None:
            raise GoogleError(f"Method not found: {method} {path}", code=404)
        self._authenticate(ex.request.headers, query, target)
        if target.method is None:
            await self._models(target, query, ex)
        elif target.method == "countTokens":
            body = _json_object(ex.request.body)
            assert target.model is not None
            counted = validate_count_tokens(body, target.model, vertex=target.vertex)
            if not await ex.watch.pause(self.settings.latency_ms / 1000):
                return
            await send_json(ex.send, 200, {"totalTokens": prompt_tokens(counted)}, self._timed([], ex))
        else:
            await self._generate(target, query, ex)

    def _authenticate(self, request_headers: dict[str, str], query: dict[str, str], target: Target) -> None:
        expected = self.settings.api_key
        if expected is None:
            return
        keys = [key for key in (request_headers.get("x-goog-api-key"), query.get("key")) if key]
        authorization = request_headers.get("authorization", "")
        bearer = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
        if expected in keys or bearer == expected:
            return
        if bearer is not None:
            details = [
                {
                    "@type": _ERROR_INFO,
                    "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                    "domain": "googleapis.com",
                    "metadata": {"service": target.service},
                }
            ]
            challenge = (b"www-authenticate", b'Bearer realm="https://accounts.google.com/", error="invalid_token"')
            raise GoogleError(_STATUS_MESSAGES[401], code=401, details=details, headers=[challenge])
        if keys:
            details = [
                {
                    "@type": _ERROR_INFO,
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": target.service},
                },
                {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": _BAD_KEY},
            ]
            raise GoogleError(_BAD_KEY, code=400, details=details)
        raise GoogleError(
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or "
            "other form of API consumer identity to call this API.",
            code=403,
        )

    async def _models(self, target: Target, query: dict[str, str], ex: Exchange) -> None:
        prefix = "publishers/google/models/" if target.vertex else "models/"
        if target.model is not None:
            if target.model not in self.models:
                raise GoogleError(f"{prefix}{target.model} is not found for API version {target.version}.", code=404)
            await send_json(ex.send, 200, model_entry(target.model, prefix), self._timed([], ex))
            return
        size = int(query["pageSize"]) if query.get("pageSize", "").isdigit() else PAGE_SIZE
        size = min(max(size, 1) if size else PAGE_SIZE, 1000)
        offset = int(query["pageToken"]) if query.get("pageToken", "").isdigit() else 0
        page = [model_entry(model_id, prefix) for model_id in self.models[offset : offset + size]]
        payload: dict[str, Any] = {"publisherModels" if target.vertex else "models": page}
        if offset + size < len(self.models):
            payload["nextPageToken"] = str(offset + size)
        await send_json(ex.send, 200, payload, self._timed([], ex))

    async def _generate(self, target: Target, query: dict[str, str], ex: Exchange) -> None:
        """Generation and embeddings: faults, validation, latency, then the answer (JSON, SSE or JSON array)."""
        if not await self.apply_faults(ex, self.queued_faults()):
            return
        body = _json_object(ex.request.body)
        model = target.model
        assert model is not None
        payload: object = None
        request: dict[str, Any] = {}
        if target.method in GENERATE_METHODS:
            request = validate_generate(body, model, vertex=target.vertex)
            directives = parse_directives(directive_text(request))
        elif target.method == "predict":
            texts, dims = validate_predict(body)
            directives = parse_directives(" ".join(texts))
            payload = self._predict(texts, dims)
        else:
            single = target.method == "embedContent"
            items = [validate_embed(body, model)] if single else validate_batch_embed(body, model, not target.vertex)
            directives = parse_directives(" ".join(embed_text(item) for item in items))
            payload = self._embeddings(items, single, target.vertex)
        if not await self.settle(ex, directives):
            return
        if payload is None:
            payload = self._reply(request, model, directives, target, stream=target.method != "generateContent")
        if target.method != "streamGenerateContent":
            await self.send_body(payload, ex, self._timed([], ex))
            return
        assert isinstance(payload, list)
        sse = query.get("alt") == "sse"
        frame = _frame_sse if sse else _frame_array
        content_type = SSE_CONTENT_TYPE if sse else JSON_CONTENT_TYPE
        await self.send_stream(ex, [frame(chunk, i) for i, chunk in enumerate(payload)],
                               [content_type, (b"cache-control", b"no-cache"), *self._timed([], ex)],
                               lambda position: frame(status_error(503).envelope(), position), b"" if sse else b"]")

    def _reply(
        self, request: dict[str, Any], model: str, directives: Directives, target: Target, *, stream: bool
    ) -> object:
        create_time = None
        if target.vertex:
            create_time = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        reply = plan_reply(request, model, directives, self.state.rng, create_time=create_time)
        return render_chunks(reply) if stream else render_response(reply)

    def _embeddings(self, items: list[dict[str, Any]], single: bool, vertex: bool) -> dict[str, Any]:
        default = self.settings.embedding_dimensions
        embeddings = [
            render_embedding([embed_text(item)], item.get("outputDimensionality") or default)[0] for item in items
        ]
        if not single:
            return {"embeddings": embeddings}
        payload: dict[str, Any] = {"embedding": embeddings[0]}
        if vertex:
            tokens = estimate_tokens(embed_text(items[0]))
            payload["usageMetadata"] = {"promptTokenCount": tokens, "totalTokenCount": tokens}
            payload["truncated"] = False
        return payload

    def _predict(self, texts: list[str], dims: int | None) -> dict[str, Any]:
        vectors = render_embedding(texts, dims or self.settings.embedding_dimensions)
        predictions = [
            {"embeddings": {**vector, "statistics": {"truncated": False, "token_count": estimate_tokens(text)}}}
            for vector, text in zip(vectors, texts, strict=True)
        ]
        return {"predictions": predictions, "metadata": {"billableCharacterCount": sum(len(t) for t in texts)}}

    async def send_fault(self, fault: Fault, ex: Exchange, headers: Headers) -> None:
        error = status_error(fault.status, fault.retry_after)
        await send_json(ex.send, error.code, error.envelope(), self._timed(error.headers, ex))

    def _timed(self, headers: Headers, ex: Exchange) -> Headers:
        elapsed = int((time.monotonic() - ex.request.started) * 1000)
        return [*headers, (b"server-timing", f"gfet4t7; dur={elapsed}".encode())]

    async def control(self, method: str, path: str, raw: bytes, send: Send) -> None:
        """The `/_sim/*` endpoints, as in the OpenAI simulator but with Google's errors; never behind auth and never
        recorded."""
        try:
            try:
                answer = control_answer(self.state, method, path, lambda: _json_object(raw))
            except RequestError as error:
                raise GoogleError(error.message) from None
            if answer is None:
                raise GoogleError(f"Method not found: {method} {path}", code=404)
            await send_json(send, 200, answer)
        except GoogleError as error:
            await send_json(send, error.code, error.envelope())


def create_app(settings: SimulatorSettings) -> GeminiSimulator:
    """Build the simulator ASGI app (an `async (scope, receive, send)` callable that also handles lifespan)."""
    return GeminiSimulator(settings)


def run(settings: SimulatorSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the simulator with uvicorn until interrupted."""
    serve(create_app(settings), host, port)
