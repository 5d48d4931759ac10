"""Wire dialects: one pure module per dialect (no I/O), plus `sse`, the only SSE framer.

`DialectCodec` is what the pipeline needs of a dialect; `codec(name)` finds one.
"""

from __future__ import annotations

from types import ModuleType
from typing import Protocol

from yourouter.ir.errors import GatewayError
from yourouter.ir.usage import Usage


class StreamTap(Protocol):
    usage: Usage | None

    def event(self, raw: bytes) -> bytes | None: ...


class DialectCodec(Protocol):
    DIALECT: str

    def error_body(self, error: GatewayError) -> bytes: ...

    def stream_error_event(self, error: GatewayError) -> bytes: ...

    def usage_of_response(self, body: bytes) -> Usage | None: ...

    def stream_tap(self, strip_usage: bool) -> StreamTap: ...


def codec(name: str) -> DialectCodec:
    from yourouter.codecs import openai

    modules: dict[str, ModuleType] = {"openai": openai}
    return modules[name]
