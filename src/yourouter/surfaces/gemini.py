"""The Gemini API family: generateContent, streamGenerateContent, countTokens, embedContent, batchEmbedContents.

Served on the Vertex-style path YouRouter documents (`/v1/projects/{p}/locations/{l}/publishers/google/models/
{model}:method`) and on the paths the google-genai SDK uses (`/v1beta/models/{model}:method`, `/v1/models/...`,
`/v1beta1/...`, `publishers/google/models/...`).
"""

from __future__ import annotations

import dataclasses

import orjson

from yourouter.asgi import Headers, PathRouter, Request, Send, send_bytes, send_json
from yourouter.auth.credentials import bearer_token, first_of, header_token, query_token
from yourouter.codecs import StreamEncoder
from yourouter.codecs import gemini as codec
from yourouter.codecs.common import parse_object
from yourouter.ir.chat import ChatRequest
from yourouter.ir.errors import ErrorKind, GatewayError
from yourouter.pipeline.core import Call, Pipeline, new_request_id
from yourouter.pipeline.tokens import estimate_input_tokens
from yourouter.providers.base import CHAT, COUNT_TOKENS, EMBEDDINGS
from yourouter.routing.catalog import Catalog
from yourouter.surfaces.base import CodecSurface

_SSE_FLAG = "_gemini_sse"
_VERSIONS = ("v1", "v1beta", "v1beta1")
_MODEL_PATHS = ("models/{model_method}", "tunedModels/{model_method}", "publishers/google/models/{model_method}",
                "projects/{project}/locations/{location}/publishers/google/models/{model_method}")
_METHODS = ("generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents",
            "predict")


class GeminiSurface(CodecSurface):
    def stream_encoder(self, request: ChatRequest) -> StreamEncoder:
        sse = bool(request.extra.get(_SSE_FLAG, True))
        encoder = codec.GeminiStreamEncoder(request, sse=sse)
        encoder.headers = None if sse else JsonArrayFraming.headers  # type: ignore[attr-defined]
        return encoder


SURFACE = GeminiSurface(codec, first_of(header_token(b"x-goog-api-key"), bearer_token, query_token("key")))


class JsonArrayFraming:
    """Re-frames a Gemini SSE stream as the streamed JSON array google clients get without `alt=sse`."""

    headers: Headers = [(b"content-type", b"application/json; charset=utf-8")]

    def __init__(self) -> None:
        self._first = True

    def frame(self, event: bytes) -> bytes:
        from yourouter.codecs.sse import data_of

        data = data_of(event)
        if data is None:
            return b""
        prefix = b"[" if self._first else b",\r\n"
        self._first = False
        return prefix + data

    def close(self) -> bytes:
        return b"[]" if self._first else b"]"


def _split(model_method: str) -> tuple[str, str]:
    model, _, method = model_method.rpartition(":")
    if not model or method not in _METHODS:
        raise GatewayError(404, ErrorKind.NOT_FOUND, f"Unknown method `{model_method}`; expected "
                           f"{{model}}:{' | '.join(_METHODS)}.", code="not_found")
    return model, method


def _generate_call(body: bytes, request: Request, model: str, method: str) -> Call:
    payload = parse_object(body)
    stream = method == "streamGenerateContent"
    sse = request.query.get("alt") == "sse"

    def decode() -> ChatRequest:
        decoded = codec.decode_request(payload, model, stream)
        return dataclasses.replace(decoded, extra={**decoded.extra, _SSE_FLAG: sse})

    if method == "countTokens":
        inner = payload.get("generateContentRequest") or payload

        def estimate() -> bytes:
            return orjson.dumps({"totalTokens": estimate_input_tokens(codec.decode_request(inner, model, False))})

        return Call(endpoint="gemini.countTokens", operation=COUNT_TOKENS, model=model, body=body, decode=decode,
                    local_answer=estimate, model_in_body=False)
    config = payload.get("generationConfig")
    limit = config.get("maxOutputTokens") if isinstance(config, dict) else None
    return Call(endpoint=f"gemini.{method}", operation=CHAT, model=model, body=body, stream=stream, decode=decode,
                stream_framing=JsonArrayFraming if stream and not sse else None, model_in_body=False,
                max_output=limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None)


def _embed_call(body: bytes, model: str, method: str) -> Call:
    payload = parse_object(body)
    form = {"embedContent": "single", "batchEmbedContents": "batch", "predict": "predict"}[method]
    # Upstreams are always asked for the batch form, so the other forms are translated even to Google.
    return Call(endpoint=f"gemini.{method}", operation=EMBEDDINGS, model=model, body=body, max_output=0,
                decode_embeddings=lambda: codec.decode_embeddings_request(payload, model, form=form),
                translate_always=form != "batch", model_in_body=False)


class GeminiRoutes:
    def __init__(self, pipeline: Pipeline, catalog: Catalog) -> None:
        self._pipeline = pipeline
        self._catalog = catalog

    def mount(self, router: PathRouter) -> None:
        for version in _VERSIONS:
            for path in _MODEL_PATHS:
                router.add("POST", f"/{version}/{path}", self.dispatch)
        router.add("GET", "/v1beta/models", self.list_models)

    async def list_models(self, request: Request, send: Send) -> None:
        """Gemini's `models.list` shape (also served at `/v1/models` to clients sending `x-goog-api-key`/`?key=`)."""
        key = await self._pipeline.key_or_error(request, send, SURFACE)
        if key is None:
            return
        headers = [(b"x-request-id", new_request_id().encode())]
        methods = ["generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents"]
        models = [{"name": f"models/{model}", "displayName": model, "supportedGenerationMethods": methods}
                  for model, vendors in self._catalog.models() if key.may_use(model, vendors)]
        await send_json(send, 200, {"models": models}, headers)

    async def dispatch(self, request: Request, send: Send) -> None:
        try:
            model, method = _split(request.path_params["model_method"])
        except GatewayError as error:
            await send_bytes(send, error.status, codec.error_body(error),
                             [(b"x-request-id", new_request_id().encode()), (b"content-type", b"application/json")])
            return

        def parse(body: bytes, http_request: Request) -> Call:
            if method in ("embedContent", "batchEmbedContents", "predict"):
                return _embed_call(body, model, method)
            return _generate_call(body, http_request, model, method)

        await self._pipeline.handle(request, send, SURFACE, f"gemini.{method}", parse)
