"""OpenAI chat streams <-> IR stream events."""

from __future__ import annotations

import time
from typing import Any

import orjson

from yourouter.codecs.openai.chat import completion_id, finish_reason_in, usage_in, usage_out
from yourouter.codecs.sse import data_of
from yourouter.ir.chat import (
    ChatRequest,
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


class OpenAIStreamDecoder:
    """Upstream `chat.completion.chunk` events -> IR events."""

    def __init__(self) -> None:
        self._started = False

    def feed(self, event: bytes) -> list[StreamEvent]:
        data = data_of(event)
        if data is None or data == b"[DONE]":
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return [StreamError(500, "The upstream sent an unreadable stream event.")]
        if not isinstance(chunk, dict):
            return []
        if "error" in chunk:
            error = chunk["error"] if isinstance(chunk["error"], dict) else {}
            return [StreamError(500, str(error.get("message") or "The upstream reported an error mid-stream."))]
        out: list[StreamEvent] = []
        if not self._started:
            if not chunk.get("id") and not chunk.get("choices") and chunk.get("usage") is None:
                return []  # Azure's opening chunk carries only prompt filter results: no id, model or choices
            self._started = True
            out.append(StreamStart(id=str(chunk.get("id") or ""), model=str(chunk.get("model") or "")))
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index") or 0)
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                out.append(ThinkingDelta(text=reasoning, choice=index))
            content = delta.get("content")
            if isinstance(content, str) and content:
                out.append(TextDelta(content, choice=index))
            for call in delta.get("tool_calls") or []:
                position = int(call.get("index") or 0)
                function = call.get("function") or {}
                if call.get("id"):
                    out.append(ToolCallStart(index=position, id=str(call["id"]), name=str(function.get("name", "")),
                                             choice=index))
                if function.get("arguments"):
                    out.append(ToolCallDelta(index=position, arguments=str(function["arguments"]), choice=index))
            reason = finish_reason_in(choice.get("finish_reason"))
            if reason is not None:
                out.append(StreamFinish(reason, choice=index))
        usage = usage_in(chunk.get("usage"))
        if usage is not None:
            out.append(UsageUpdate(usage))
        return out

    def close(self) -> list[StreamEvent]:
        return []


class OpenAIStreamEncoder:
    """IR events -> `chat.completion.chunk` SSE events, ending with `data: [DONE]`."""

    def __init__(self, request: ChatRequest) -> None:
        self._include_usage = request.include_usage
        self._model = request.model
        self._id = ""
        self._created = int(time.time())
        self._usage: Usage | None = None
        self._started = False
        self._finished = False
        self._failed = False

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk: dict[str, Any] = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                                 "model": self._model, "choices": choices, **extra}
        if self._include_usage and "usage" not in chunk:
            chunk["usage"] = None
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def _delta(self, delta: dict[str, Any], choice: int = 0, finish: str | None = None) -> bytes:
        return self._chunk([{"index": choice, "delta": delta, "logprobs": None, "finish_reason": finish}])

    def _start(self, source_id: str = "", model: str = "") -> bytes:
        self._started = True
        self._id = completion_id(source_id)
        if model:
            self._model = model
        return self._delta({"role": "assistant", "content": "", "refusal": None})

    def encode(self, event: StreamEvent) -> bytes:
        if self._failed:
            return b""
        prefix = b""
        if isinstance(event, StreamStart):
            return self._start(event.id, event.model) if not self._started else b""
        if not self._started and not isinstance(event, StreamError):
            prefix = self._start()
        if isinstance(event, TextDelta):
            return prefix + self._delta({"content": event.text}, event.choice)
        if isinstance(event, ThinkingDelta):
            return prefix + (self._delta({"reasoning_content": event.text}, event.choice) if event.text else b"")
        if isinstance(event, ToolCallStart):
            call = {"index": event.index, "id": event.id, "type": "function",
                    "function": {"name": event.name, "arguments": ""}}
            return prefix + self._delta({"tool_calls": [call]}, event.choice)
        if isinstance(event, ToolCallDelta):
            call = {"index": event.index, "function": {"arguments": event.arguments}}
            return prefix + self._delta({"tool_calls": [call]}, event.choice)
        if isinstance(event, StreamFinish):
            self._finished = True
            return prefix + self._delta({}, event.choice, event.reason if event.reason != "error" else "stop")
        if isinstance(event, UsageUpdate):
            self._usage = event.usage
            return prefix
        if isinstance(event, StreamError):
            self._failed = True
            body = {"error": {"message": event.message, "type": "server_error", "param": None,
                              "code": "upstream_stream_error"}}
            return b"data: " + orjson.dumps(body) + b"\n\n"
        return prefix

    def close(self) -> bytes:
        """The tail after the last upstream event: usage chunk (if asked) and the terminator."""
        if self._failed:
            return b""  # an error event ends an OpenAI stream; no [DONE] follows it
        out = b"" if self._started else self._start()
        if not self._finished:
            out += self._delta({}, 0, "stop")
        if self._include_usage and self._usage is not None:
            out += self._chunk([], usage=usage_out(self._usage))
        return out + b"data: [DONE]\n\n"

    @property
    def usage(self) -> Usage | None:
        return self._usage
