"""The OpenAI API family: Chat Completions, Embeddings, Models."""

from __future__ import annotations

import time

from yourouter.asgi import Handler, PathRouter, Request, Send, send_bytes, send_json
from yourouter.auth.credentials import bearer_token
from yourouter.codecs import openai as codec
from yourouter.ir.errors import ErrorKind, GatewayError
from yourouter.pipeline.core import Call, Pipeline, new_request_id
from yourouter.providers.base import CHAT, EMBEDDINGS
from yourouter.routing.catalog import Catalog
from yourouter.surfaces.base import CodecSurface

SURFACE = CodecSurface(codec, bearer_token)


def parse_chat_call(body: bytes, http_request: Request) -> Call:
    request = codec.parse_chat(body)
    return Call(endpoint="chat.completions", operation=CHAT, model=request.model,
                body=codec.upstream_chat_body(request, body), stream=request.stream,
                strip_usage=request.stream and not request.include_usage,
                decode=lambda: codec.decode_request(request.payload), max_output=_max_output(request.payload))


def _max_output(payload: dict[str, object]) -> int | None:
    value = payload.get("max_completion_tokens", payload.get("max_tokens"))
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def parse_embeddings_call(body: bytes, http_request: Request) -> Call:
    request = codec.parse_embeddings(body)
    return Call(endpoint="embeddings", operation=EMBEDDINGS, model=request.model, body=body, max_output=0,
                decode_embeddings=lambda: codec.decode_embeddings_request(request.payload))


class OpenAIRoutes:
    def __init__(self, pipeline: Pipeline, catalog: Catalog, anthropic_models: Handler | None = None,
                 gemini_models: Handler | None = None) -> None:
        self._pipeline = pipeline
        self._catalog = catalog
        self._anthropic_models = anthropic_models
        self._gemini_models = gemini_models
        self._created = int(time.time())

    def mount(self, router: PathRouter) -> None:
        router.add("POST", "/v1/chat/completions", self.chat_completions)
        router.add("POST", "/v1/embeddings", self.embeddings)
        router.add("GET", "/v1/models", self.list_models)
        router.add("GET", "/v1/models/{model}", self.get_model)
        router.add("GET", "/v1/key", self.get_key)

    async def chat_completions(self, request: Request, send: Send) -> None:
        await self._pipeline.handle(request, send, SURFACE, "chat.completions", parse_chat_call)

    async def embeddings(self, request: Request, send: Send) -> None:
        await self._pipeline.handle(request, send, SURFACE, "embeddings", parse_embeddings_call)

    def _model(self, model: str, vendors: tuple[str, ...]) -> dict[str, object]:
        return {"id": model, "object": "model", "created": self._created, "owned_by": vendors[0]}

    async def list_models(self, request: Request, send: Send) -> None:
        if self._anthropic_models is not None and request.header(b"anthropic-version") is not None:
            return await self._anthropic_models(request, send)  # the Anthropic SDK shares this path
        if self._gemini_models is not None and (request.header(b"x-goog-api-key") is not None
                                                or "key" in request.query):
            return await self._gemini_models(request, send)  # and so does google-genai in Gemini API mode
        key = await self._pipeline.key_or_error(request, send, SURFACE)
        if key is None:
            return
        headers = [(b"x-request-id", new_request_id().encode())]
        data = [self._model(model, vendors) for model, vendors in self._catalog.models() if key.may_use(model, vendors)]
        await send_json(send, 200, {"object": "list", "data": data}, headers)

    async def get_key(self, request: Request, send: Send) -> None:
        key = await self._pipeline.key_or_error(request, send, SURFACE)
        if key is not None:
            await send_json(send, 200, await self._pipeline.key_report(key),
                            [(b"x-request-id", new_request_id().encode())])

    async def get_model(self, request: Request, send: Send) -> None:
        headers = [(b"x-request-id", new_request_id().encode()), (b"content-type", b"application/json")]
        wanted = request.path_params["model"]
        try:
            key = await self._pipeline.authenticate(request, SURFACE)
            for model, vendors in self._catalog.models():
                if model == wanted and key.may_use(model, vendors):
                    return await send_json(send, 200, self._model(model, vendors), headers[:1])
            raise GatewayError(404, ErrorKind.NOT_FOUND, f"The model `{wanted}` does not exist or you do not "
                               "have access to it.", param="model", code="model_not_found")
        except GatewayError as error:
            await send_bytes(send, error.status, codec.error_body(error), headers)
