"""The Google Gemini generateContent dialect."""

from yourouter.codecs.gemini.content import (
    DIALECT,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from yourouter.codecs.gemini.embeddings import (
    decode_embeddings_request,
    decode_embeddings_response,
    encode_embeddings_request,
    encode_embeddings_response,
)
from yourouter.codecs.gemini.errors import (
    error_body,
    error_object,
    stream_error_event,
    stream_tap,
    upstream_error_message,
    usage_of_response,
)
from yourouter.codecs.gemini.parts import call_id, needs_inline, parse_call_id
from yourouter.codecs.gemini.stream import GeminiStreamDecoder, GeminiStreamEncoder
from yourouter.ir.chat import ChatRequest


def stream_decoder() -> GeminiStreamDecoder:
    return GeminiStreamDecoder()


def stream_encoder(request: ChatRequest, sse: bool = True) -> GeminiStreamEncoder:
    return GeminiStreamEncoder(request, sse=sse)


__all__ = ["DIALECT", "GeminiStreamDecoder", "GeminiStreamEncoder", "call_id", "decode_embeddings_request",
           "decode_embeddings_response", "encode_embeddings_request", "encode_embeddings_response",
           "decode_request", "decode_response",
           "encode_request", "encode_response", "error_body", "error_object", "needs_inline", "parse_call_id",
           "stream_decoder", "stream_encoder", "stream_error_event", "stream_tap", "upstream_error_message",
           "usage_of_response"]
