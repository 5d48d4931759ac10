"""The Anthropic Messages dialect."""

from yourouter.codecs.anthropic.errors import (
    error_body,
    error_object,
    stream_error_event,
    stream_tap,
    upstream_error_message,
    usage_of_response,
)
from yourouter.codecs.anthropic.messages import (
    DIALECT,
    decode_request,
    decode_response,
    default_max_tokens,
    encode_request,
    encode_response,
)
from yourouter.codecs.anthropic.stream import AnthropicStreamDecoder, AnthropicStreamEncoder
from yourouter.ir.chat import ChatRequest


def stream_decoder() -> AnthropicStreamDecoder:
    return AnthropicStreamDecoder()


def stream_encoder(request: ChatRequest) -> AnthropicStreamEncoder:
    return AnthropicStreamEncoder(request)


__all__ = ["DIALECT", "AnthropicStreamDecoder", "AnthropicStreamEncoder", "decode_request",
           "decode_response", "default_max_tokens", "encode_request", "encode_response", "error_body",
           "error_object", "stream_decoder", "stream_encoder", "stream_error_event", "stream_tap",
           "upstream_error_message", "usage_of_response"]
