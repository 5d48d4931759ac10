"""The OpenAI Chat Completions / Embeddings dialect."""

from yourouter.codecs.openai.chat import decode_request, decode_response, encode_request, encode_response
from yourouter.codecs.openai.embeddings import (
    decode_embeddings_request,
    decode_embeddings_response,
    encode_embeddings_request,
    encode_embeddings_response,
)
from yourouter.codecs.openai.passthrough import (
    DIALECT,
    ChatRequest,
    EmbeddingsRequest,
    StreamUsageTap,
    error_body,
    parse_chat,
    parse_embeddings,
    stream_error_event,
    stream_tap,
    upstream_chat_body,
    usage_of_response,
)
from yourouter.codecs.openai.stream import OpenAIStreamDecoder, OpenAIStreamEncoder
from yourouter.ir.chat import ChatRequest as IRChatRequest


def stream_decoder() -> OpenAIStreamDecoder:
    return OpenAIStreamDecoder()


def stream_encoder(request: IRChatRequest) -> OpenAIStreamEncoder:
    return OpenAIStreamEncoder(request)


def upstream_error_message(body: bytes) -> str | None:
    """The `error.message` of an upstream OpenAI error body, if readable."""
    import orjson

    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else None


__all__ = [
    "DIALECT", "ChatRequest", "EmbeddingsRequest", "OpenAIStreamDecoder", "OpenAIStreamEncoder", "StreamUsageTap",
    "decode_embeddings_request", "decode_embeddings_response", "decode_request", "decode_response",
    "encode_embeddings_request", "encode_embeddings_response", "encode_request", "encode_response", "error_body",
    "parse_chat", "parse_embeddings", "stream_decoder", "stream_encoder", "stream_error_event",
    "stream_tap", "upstream_chat_body", "upstream_error_message", "usage_of_response",
]
