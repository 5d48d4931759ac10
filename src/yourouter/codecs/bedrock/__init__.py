"""The AWS Bedrock Converse dialect (an upstream protocol: requests out, responses and streams back)."""

from yourouter.codecs.bedrock.converse import (
    DIALECT,
    decode_response,
    encode_request,
    needs_inline,
    tool_use_id,
    upstream_error_message,
    usage_of_response,
)
from yourouter.codecs.bedrock.eventstream import CONTENT_TYPE as STREAM_CONTENT_TYPE
from yourouter.codecs.bedrock.eventstream import EventStreamSplitter
from yourouter.codecs.bedrock.stream import BedrockStreamDecoder


def stream_decoder() -> BedrockStreamDecoder:
    return BedrockStreamDecoder()


def stream_splitter() -> EventStreamSplitter:
    return EventStreamSplitter()


__all__ = ["DIALECT", "STREAM_CONTENT_TYPE", "BedrockStreamDecoder", "decode_response", "encode_request",
           "needs_inline", "stream_decoder", "stream_splitter", "tool_use_id", "upstream_error_message",
           "usage_of_response"]
