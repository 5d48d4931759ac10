"""What every surface hands the pipeline: its credentials reader and its codec's error and stream rendering."""

from __future__ import annotations

from collections.abc import Callable

from yourouter.asgi import Request
from yourouter.codecs import DialectCodec, StreamEncoder
from yourouter.ir.chat import ChatRequest
from yourouter.ir.errors import GatewayError


class CodecSurface:
    def __init__(self, codec: DialectCodec, credentials: Callable[[Request], str | None]) -> None:
        self.dialect = codec.DIALECT
        self._codec = codec
        self._credentials = credentials

    def credentials(self, request: Request) -> str | None:
        return self._credentials(request)

    def error_body(self, error: GatewayError) -> bytes:
        return self._codec.error_body(error)

    def stream_error_event(self, error: GatewayError) -> bytes:
        return self._codec.stream_error_event(error)

    def stream_encoder(self, request: ChatRequest) -> StreamEncoder:
        return self._codec.stream_encoder(request)
