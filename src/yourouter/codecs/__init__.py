"""Wire dialects: one package per dialect (pure, no I/O), plus `sse`, the only SSE framer.

`UpstreamCodec` is what the pipeline needs of a provider's dialect; `DialectCodec` adds what a client's dialect
needs (clients speak OpenAI, Anthropic or Gemini; Bedrock is upstream-only). `codec(name)` finds one. A new dialect
adds its package and one line to `_MODULES`.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any, Protocol

from yourouter.ir.chat import ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, StreamEvent
from yourouter.ir.errors import GatewayError
from yourouter.ir.usage import Usage

_MODULES = {"openai": "yourouter.codecs.openai", "anthropic": "yourouter.codecs.anthropic",
            "gemini": "yourouter.codecs.gemini", "bedrock": "yourouter.codecs.bedrock"}
SSE_CONTENT_TYPE = "text/event-stream"


class StreamTap(Protocol):
    """Watches a passthrough stream for usage; may rewrite or drop events."""

    usage: Usage | None

    def event(self, raw: bytes) -> bytes | None: ...


class StreamSplitter(Protocol):
    """Cuts an upstream byte stream into whole events (SSE by default; Bedrock's binary event stream)."""

    def feed(self, chunk: bytes) -> list[bytes]: ...

    def last_event(self) -> bytes:
        """At the end of the stream: what is left as one complete event (b"" when nothing is)."""
        ...


class StreamDecoder(Protocol):
    def feed(self, event: bytes) -> list[StreamEvent]: ...

    def close(self) -> list[StreamEvent]: ...


class StreamEncoder(Protocol):
    def encode(self, event: StreamEvent) -> bytes: ...

    def close(self) -> bytes: ...


class UpstreamCodec(Protocol):
    """What a provider's dialect must offer: requests out, answers and errors back."""

    DIALECT: str

    def encode_request(self, request: ChatRequest, model: str) -> dict[str, Any]: ...

    def decode_response(self, payload: dict[str, Any]) -> ChatResponse: ...

    def stream_decoder(self) -> StreamDecoder: ...

    def usage_of_response(self, body: bytes) -> Usage | None: ...

    def upstream_error_message(self, body: bytes) -> str | None: ...


class DialectCodec(UpstreamCodec, Protocol):
    """A dialect clients speak: also renders answers, streams and errors for them."""

    def error_body(self, error: GatewayError) -> bytes: ...

    def stream_error_event(self, error: GatewayError) -> bytes: ...

    def stream_tap(self, strip_usage: bool) -> StreamTap: ...

    def encode_response(self, response: ChatResponse, request: ChatRequest) -> dict[str, Any]: ...

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


@cache
def stream_content_type(name: str) -> str:
    """The content type of the dialect's streamed responses."""
    return str(getattr(codec(name), "STREAM_CONTENT_TYPE", SSE_CONTENT_TYPE))


def stream_splitter(name: str) -> StreamSplitter:
    """A fresh splitter for one of the dialect's streams (SSE unless the dialect says otherwise)."""
    make = getattr(codec(name), "stream_splitter", None)
    if make is None:
        from yourouter.codecs.sse import SseSplitter

        return SseSplitter()
    splitter: StreamSplitter = make()
    return splitter
