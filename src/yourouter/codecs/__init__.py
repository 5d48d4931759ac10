"""Wire dialects: one package per dialect (pure, no I/O), plus `sse`, the only SSE framer.

`DialectCodec` is what the pipeline needs of a dialect; `codec(name)` finds one. A new dialect adds its package
and one line to `_MODULES`.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any, Protocol

from yourouter.ir.chat import ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, StreamEvent
from yourouter.ir.errors import GatewayError
from yourouter.ir.usage import Usage

_MODULES = {"openai": "yourouter.codecs.openai", "anthropic": "yourouter.codecs.anthropic",
            "gemini": "yourouter.codecs.gemini"}


class StreamTap(Protocol):
    """Watches a passthrough stream for usage; may rewrite or drop events."""

    usage: Usage | None

    def event(self, raw: bytes) -> bytes | None: ...


class StreamDecoder(Protocol):
    def feed(self, event: bytes) -> list[StreamEvent]: ...

    def close(self) -> list[StreamEvent]: ...


class StreamEncoder(Protocol):
    def encode(self, event: StreamEvent) -> bytes: ...

    def close(self) -> bytes: ...


class DialectCodec(Protocol):
    DIALECT: str

    def error_body(self, error: GatewayError) -> bytes: ...

    def stream_error_event(self, error: GatewayError) -> bytes: ...

    def usage_of_response(self, body: bytes) -> Usage | None: ...

    def stream_tap(self, strip_usage: bool) -> StreamTap: ...

    def upstream_error_message(self, body: bytes) -> str | None: ...

    def encode_request(self, request: ChatRequest, model: str) -> dict[str, Any]: ...

    def decode_response(self, payload: dict[str, Any]) -> ChatResponse: ...

    def encode_response(self, response: ChatResponse, request: ChatRequest) -> dict[str, Any]: ...

    def stream_decoder(self) -> StreamDecoder: ...

    def stream_encoder(self, request: ChatRequest) -> StreamEncoder: ...


class EmbeddingsCodec(Protocol):
    """A dialect that also has an embeddings API (OpenAI, Gemini; not Anthropic)."""

    def encode_embeddings_request(self, request: EmbeddingRequest, model: str) -> dict[str, Any]: ...

    def decode_embeddings_response(self, payload: dict[str, Any]) -> EmbeddingResponse: ...

    def encode_embeddings_response(self, response: EmbeddingResponse, request: EmbeddingRequest
                                   ) -> dict[str, Any]: ...


@cache
def codec(name: str) -> DialectCodec:
    module: Any = importlib.import_module(_MODULES[name])
    return module  # type: ignore[no-any-return]


def embeddings_codec(name: str) -> EmbeddingsCodec:
    """The embeddings side of a dialect; routing only sends embeddings to providers that have them."""
    module: Any = importlib.import_module(_MODULES[name])
    return module  # type: ignore[no-any-return]
