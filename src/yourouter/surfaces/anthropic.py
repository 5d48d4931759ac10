"""The Anthropic API family: Messages (and count_tokens), also under the `/anthropic` prefix."""

from __future__ import annotations

import datetime as dt

import orjson

from yourouter.asgi import PathRouter, Request, Send, send_json
from yourouter.auth.credentials import bearer_token, first_of, header_token
from yourouter.codecs import anthropic as codec
from yourouter.codecs.common import parse_object
from yourouter.ir.errors import bad_request
from yourouter.pipeline.core import Call, Pipeline, new_request_id
from yourouter.pipeline.tokens import estimate_input_tokens
from yourouter.providers.base import CHAT, COUNT_TOKENS
from yourouter.routing.catalog import Catalog
from yourouter.surfaces.base import CodecSurface

PREFIXES = ("", "/anthropic")


SURFACE = CodecSurface(codec, first_of(header_token(b"x-api-key"), bearer_token))


def _checked(body: bytes) -> tuple[dict[str, object], str]:
    payload = parse_object(body)
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model: Field required", param="model")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages: at least one message is required", param="messages")
    return payload, model


def _passthrough_headers(request: Request) -> dict[str, str]:
    beta = request.header(b"anthropic-beta")
    return {"anthropic-beta": beta.decode("latin-1")} if beta else {}


def parse_messages_call(body: bytes, request: Request) -> Call:
    payload, model = _checked(body)
    max_tokens = payload.get("max_tokens")
    if max_tokens is None:  # the real API requires it; clients of this gateway may leave it to us
        max_tokens = payload["max_tokens"] = codec.default_max_tokens(model)
        body = orjson.dumps(payload)
    elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise bad_request("max_tokens: must be a positive integer", param="max_tokens")
    stream = payload.get("stream") is True
    return Call(endpoint="messages", operation=CHAT, model=model, body=body, stream=stream,
                passthrough_headers=_passthrough_headers(request), decode=lambda: codec.decode_request(payload),
                max_output=max_tokens)


def parse_count_tokens_call(body: bytes, request: Request) -> Call:
    payload, model = _checked(body)
    payload.pop("max_tokens", None)

    def estimate() -> bytes:
        return orjson.dumps({"input_tokens": estimate_input_tokens(codec.decode_request(payload))})

    return Call(endpoint="messages.count_tokens", operation=COUNT_TOKENS, model=model, body=orjson.dumps(payload),
                passthrough_headers=_passthrough_headers(request), decode=lambda: codec.decode_request(payload),
                local_answer=estimate)


class AnthropicRoutes:
    def __init__(self, pipeline: Pipeline, catalog: Catalog) -> None:
        self._pipeline = pipeline
        self._catalog = catalog
        self._created = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")

    def mount(self, router: PathRouter) -> None:
        for prefix in PREFIXES:
            router.add("POST", f"{prefix}/v1/messages", self.messages)
            router.add("POST", f"{prefix}/v1/messages/count_tokens", self.count_tokens)
        router.add("GET", "/anthropic/v1/models", self.list_models)

    async def messages(self, request: Request, send: Send) -> None:
        await self._pipeline.handle(request, send, SURFACE, "messages", parse_messages_call)

    async def count_tokens(self, request: Request, send: Send) -> None:
        await self._pipeline.handle(request, send, SURFACE, "messages.count_tokens", parse_count_tokens_call)

    async def list_models(self, request: Request, send: Send) -> None:
        """Anthropic's `GET /v1/models` shape (also served at `/v1/models` when `anthropic-version` is sent)."""
        key = await self._pipeline.key_or_error(request, send, SURFACE)
        if key is None:
            return
        headers = [(b"x-request-id", new_request_id().encode())]
        data = [{"type": "model", "id": model, "display_name": model, "created_at": self._created}
                for model, vendors in self._catalog.models() if key.may_use(model, vendors)]
        await send_json(send, 200, {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                                    "last_id": data[-1]["id"] if data else None}, headers)
