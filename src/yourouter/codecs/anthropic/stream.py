"""Anthropic named-event streams <-> IR stream events."""

from __future__ import annotations

from typing import Any

import orjson

from yourouter.codecs.anthropic.errors import usage_in, usage_out
from yourouter.codecs.anthropic.messages import message_id, stop_reason_in, stop_reason_out, tool_id
from yourouter.codecs.sse import data_of
from yourouter.ir.chat import (
    ChatRequest,
    FinishReason,
    StreamError,
    StreamEvent,
    StreamFinish,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageUpdate,
)
from yourouter.ir.usage import Usage


class AnthropicStreamDecoder:
    """Upstream Anthropic events -> IR events. Tool-use blocks are numbered 0, 1, ... as OpenAI numbers calls."""

    def __init__(self) -> None:
        self._tool_index: dict[int, int] = {}
        self._input_usage: dict[str, Any] = {}

    def feed(self, event: bytes) -> list[StreamEvent]:
        data = data_of(event)
        if not data:
            return []
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return [StreamError(500, "The upstream sent an unreadable stream event.")]
        kind = payload.get("type") if isinstance(payload, dict) else None
        if kind == "message_start":
            message = payload.get("message") or {}
            self._input_usage = dict(message.get("usage") or {})
            usage = usage_in(self._input_usage)
            return [StreamStart(id=str(message.get("id") or ""), model=str(message.get("model") or ""),
                                usage=usage)]
        if kind == "content_block_start":
            block = payload.get("content_block") or {}
            if block.get("type") == "tool_use":
                position = len(self._tool_index)
                self._tool_index[int(payload.get("index") or 0)] = position
                return [ToolCallStart(index=position, id=str(block.get("id", "")), name=str(block.get("name", "")))]
            if block.get("type") == "text" and block.get("text"):
                return [TextDelta(str(block["text"]))]
            return []
        if kind == "content_block_delta":
            delta = payload.get("delta") or {}
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                return [TextDelta(str(delta.get("text", "")))]
            if delta_type == "input_json_delta":
                position = self._tool_index.get(int(payload.get("index") or 0), 0)
                fragment = str(delta.get("partial_json", ""))
                return [ToolCallDelta(index=position, arguments=fragment)] if fragment else []
            if delta_type == "thinking_delta":
                return [ThinkingDelta(text=str(delta.get("thinking", "")))]
            if delta_type == "signature_delta":
                return [ThinkingDelta(signature=str(delta.get("signature", "")))]
            return []
        if kind == "message_delta":
            delta = payload.get("delta") or {}
            merged = {**self._input_usage, **{k: v for k, v in (payload.get("usage") or {}).items() if v is not None}}
            out: list[StreamEvent] = []
            if delta.get("stop_reason"):
                out.append(StreamFinish(stop_reason_in(delta["stop_reason"]), stop_sequence=delta.get("stop_sequence")))
            usage = usage_in(merged)
            if usage is not None:
                out.append(UsageUpdate(usage))
            return out
        if kind == "error":
            error = payload.get("error") or {}
            return [StreamError(500, str(error.get("message") or "The upstream reported an error mid-stream."))]
        return []

    def close(self) -> list[StreamEvent]:
        return []


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class AnthropicStreamEncoder:
    """IR events -> Anthropic's exact event sequence: message_start, content blocks (start/delta/stop),
    message_delta, message_stop."""

    def __init__(self, request: ChatRequest) -> None:
        self._model = request.model
        self._started = False
        self._block = -1  # index of the open block, -1 = none
        self._block_kind: str | None = None
        self._tool_blocks: dict[int, int] = {}
        self._next_block = 0
        self._finish: FinishReason | None = None
        self._stop_sequence: str | None = None
        self._usage = Usage()
        self._failed = False

    def _start(self, source_id: str = "", model: str = "", usage: Usage | None = None) -> bytes:
        self._started = True
        if usage is not None:
            self._usage = usage
        start_usage = usage_out(self._usage)
        start_usage["output_tokens"] = 0
        message: dict[str, Any] = {"id": message_id(source_id), "type": "message", "role": "assistant",
                   "model": model or self._model, "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": start_usage}
        return _event("message_start", {"type": "message_start", "message": message})

    def _close_block(self) -> bytes:
        if self._block < 0:
            return b""
        index, self._block, self._block_kind = self._block, -1, None
        return _event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close_block()
        self._block, self._block_kind = self._next_block, kind
        self._next_block += 1
        return out + _event("content_block_start", {"type": "content_block_start", "index": self._block,
                                                     "content_block": block})

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def encode(self, event: StreamEvent) -> bytes:
        if self._failed:
            return b""
        if isinstance(event, StreamStart):
            return b"" if self._started else self._start(event.id, event.model, event.usage)
        out = b"" if self._started or isinstance(event, StreamError) else self._start()
        if getattr(event, "choice", 0):
            return out  # Anthropic carries one choice
        if isinstance(event, TextDelta):
            if not event.text:
                return out
            if self._block_kind != "text":
                out += self._open("text", {"type": "text", "text": ""})
            return out + self._delta(self._block, {"type": "text_delta", "text": event.text})
        if isinstance(event, ThinkingDelta):
            if self._block_kind != "thinking":
                out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            if event.text:
                out += self._delta(self._block, {"type": "thinking_delta", "thinking": event.text})
            if event.signature:
                out += self._delta(self._block, {"type": "signature_delta", "signature": event.signature})
            return out
        if isinstance(event, ToolCallStart):
            out += self._open("tool_use", {"type": "tool_use", "id": tool_id(event.id), "name": event.name,
                                           "input": {}})
            self._tool_blocks[event.index] = self._block
            return out
        if isinstance(event, ToolCallDelta):
            block = self._tool_blocks.get(event.index, self._block)
            return out + self._delta(block, {"type": "input_json_delta", "partial_json": event.arguments})
        if isinstance(event, StreamFinish):
            self._finish, self._stop_sequence = event.reason, event.stop_sequence
            return out + self._close_block()
        if isinstance(event, UsageUpdate):
            self._usage = event.usage
            return out
        if isinstance(event, StreamError):
            self._failed = True
            kind = "overloaded_error" if event.status in (503, 529) else "api_error"
            return out + _event("error", {"type": "error", "error": {"type": kind, "message": event.message}})
        return out

    def close(self) -> bytes:
        if self._failed:
            return b""
        out = b"" if self._started else self._start()
        out += self._close_block()
        usage = usage_out(self._usage)
        out += _event("message_delta", {"type": "message_delta",
                                        "delta": {"stop_reason": stop_reason_out(self._finish, self._stop_sequence),
                                                  "stop_sequence": self._stop_sequence},
                                        "usage": usage})
        return out + _event("message_stop", {"type": "message_stop"})

    @property
    def usage(self) -> Usage:
        return self._usage
