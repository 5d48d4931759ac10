"""Gemini streams (`:streamGenerateContent`) <-> IR stream events.

Each chunk is a whole GenerateContentResponse holding only what is new. Function calls arrive whole, so the
decoder emits `ToolCallStart` plus one `ToolCallDelta` with all the arguments, and the encoder buffers argument
fragments until the call is complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from yourouter.codecs.gemini.content import finish_reason_in, finish_reason_out, response_id, shows_thoughts
from yourouter.codecs.gemini.errors import stream_error_chunk, usage_in, usage_out
from yourouter.codecs.gemini.parts import (
    SIGNATURE_PREFIX,
    call_id,
    fields,
    function_call,
    own_signature,
    response_tag,
)
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


class GeminiStreamDecoder:
    """Upstream Gemini SSE events (LF or CRLF framed, as split by `SseSplitter`) -> IR events."""

    def __init__(self) -> None:
        self._started = False
        self._tag = ""
        self._calls: dict[int, int] = {}  # candidate index -> function calls seen

    def feed(self, event: bytes) -> list[StreamEvent]:
        data = data_of(event)
        if data is None:  # a raw JSON error object, as Google sometimes sends mid-stream
            data = event.strip().lstrip(b"[,").rstrip(b"],")
            if not data.startswith(b"{"):
                return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return [StreamError(500, "The upstream sent an unreadable stream event.")]
        if not isinstance(chunk, dict):
            return []
        if "error" in chunk:
            error = chunk["error"] if isinstance(chunk["error"], dict) else {}
            code = error.get("code")
            status = code if isinstance(code, int) and 400 <= code < 600 else 500
            return [StreamError(status, str(error.get("message") or "The upstream reported an error mid-stream."))]
        out: list[StreamEvent] = []
        usage = usage_in(chunk.get("usageMetadata"))
        if not self._started:
            self._started = True
            source_id = str(chunk.get("responseId") or "")
            self._tag = response_tag(source_id)
            out.append(StreamStart(id=source_id, model=str(chunk.get("modelVersion") or ""), usage=usage))
        candidates = chunk.get("candidates")
        if isinstance(candidates, list):
            for position, candidate in enumerate(candidates):
                if isinstance(candidate, dict):
                    out.extend(self._candidate(candidate, position))
        if not candidates and isinstance(chunk.get("promptFeedback"), dict) and chunk["promptFeedback"].get(
                "blockReason"):
            out.append(StreamFinish("content_filter"))
        if usage is not None:
            out.append(UsageUpdate(usage))
        return out

    def _candidate(self, raw: dict[str, Any], position: int) -> list[StreamEvent]:
        candidate = fields(raw, "candidate")
        index = candidate["index"] if isinstance(candidate.get("index"), int) else position
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        out: list[StreamEvent] = []
        for raw_part in parts if isinstance(parts, list) else []:
            if not isinstance(raw_part, dict):
                continue
            part = fields(raw_part, "part")
            signature = part.get("thoughtSignature") if isinstance(part.get("thoughtSignature"), str) else None
            marked = SIGNATURE_PREFIX + signature if signature else None
            call = part.get("functionCall")
            if isinstance(call, dict):
                call = fields(call, "functionCall")
                name = str(call.get("name") or "")
                gemini_id = call.get("id") if isinstance(call.get("id"), str) else None
                n = self._calls.get(index, 0)
                self._calls[index] = n + 1
                tag = f"{self._tag}c{index}" if index else self._tag
                out.append(ToolCallStart(index=n, id=call_id(tag, n, gemini_id, signature), name=name,
                                         signature=signature, choice=index))
                args = call.get("args")
                out.append(ToolCallDelta(index=n, arguments=orjson.dumps(args if isinstance(args, dict) else {})
                                         .decode(), choice=index))
            elif isinstance(part.get("text"), str) or part.get("thought"):
                text = str(part.get("text") or "")
                if part.get("thought"):
                    if text or marked:
                        out.append(ThinkingDelta(text=text, signature=marked, choice=index))
                    continue
                if marked:
                    out.append(ThinkingDelta(signature=marked, choice=index))
                if text:
                    out.append(TextDelta(text, choice=index))
            # inline media and other parts have no stream event; they are not translated
        reason = finish_reason_in(candidate.get("finishReason"), self._calls.get(index, 0) > 0)
        if reason is not None:
            out.append(StreamFinish(reason, choice=index))
        return out

    def close(self) -> list[StreamEvent]:
        return []


@dataclass(slots=True)
class _Call:
    id: str
    name: str
    signature: str | None
    fragments: list[str] = field(default_factory=list)


class GeminiStreamEncoder:
    """IR events -> GenerateContentResponse chunks: SSE (`data: <json>` + CRLF CRLF, as Google frames them) or,
    with `sse=False`, the streamed JSON array google clients get without `alt=sse`. The last chunk carries the
    finish reasons and the usage. Thought text is sent only to clients that asked for it (`includeThoughts`)."""

    def __init__(self, request: ChatRequest, sse: bool = True) -> None:
        self._sse = sse
        self._thoughts = shows_thoughts(request)
        self._model = request.model
        self._id = ""
        self._emitted = False
        self._calls: dict[int, dict[int, _Call]] = {}
        self._signatures: dict[int, str] = {}  # choice -> a signature waiting for its visible text
        self._choices: set[int] = set()
        self._finish: dict[int, FinishReason] = {}
        self._usage: Usage | None = None
        self._failed = False
        self._closed = False
        self._idle = True  # no event yet: closing gives an empty stream

    def _frame(self, chunk: dict[str, Any]) -> bytes:
        data = orjson.dumps(chunk)
        if self._sse:
            return b"data: " + data + b"\r\n\r\n"
        prefix = b",\r\n" if self._emitted else b"["
        self._emitted = True
        return prefix + data

    def _response(self, candidates: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        if not self._id:
            self._id = response_id("")
        return {"candidates": candidates, **extra, "modelVersion": self._model, "responseId": self._id}

    def _parts(self, choice: int, parts: list[dict[str, Any]]) -> bytes:
        self._choices.add(choice)
        content = {"role": "model", "parts": parts}
        return self._frame(self._response([{"content": content, "index": choice}]))

    def _flush(self, choice: int) -> bytes:
        """Completed calls and an unattached signature of one choice, as parts."""
        parts: list[dict[str, Any]] = []
        signature = self._signatures.pop(choice, None)
        if signature is not None:
            parts.append({"text": "", "thought": True, "thoughtSignature": signature})
        for call in self._calls.pop(choice, {}).values():
            parts.append(function_call(call.id, call.name, "".join(call.fragments), call.signature))
        return self._parts(choice, parts) if parts else b""

    def encode(self, event: StreamEvent) -> bytes:
        if self._failed or self._closed:
            return b""
        self._idle = False
        if isinstance(event, StreamStart):
            self._id = self._id or event.id
            self._model = event.model or self._model
            if event.usage is not None:
                self._usage = event.usage
            return b""
        if isinstance(event, UsageUpdate):
            self._usage = event.usage
            return b""
        if isinstance(event, StreamError):
            self._failed = True
            return self._frame(stream_error_chunk(event.status, event.message, event.kind))
        choice = event.choice
        if isinstance(event, ToolCallDelta):
            calls = self._calls.setdefault(choice, {})
            calls.setdefault(event.index, _Call("", "", None)).fragments.append(event.arguments)
            return b""
        if isinstance(event, TextDelta):
            out = b""
            if self._calls.get(choice):
                out = self._flush(choice)
            if not event.text:
                return out
            part: dict[str, Any] = {"text": event.text}
            if signature := self._signatures.pop(choice, None):
                part["thoughtSignature"] = signature
            return out + self._parts(choice, [part])
        out = self._flush(choice)
        if isinstance(event, ThinkingDelta):
            signature = own_signature(event.signature)
            if event.text and self._thoughts:
                part = {"text": event.text, "thought": True}
                if signature:
                    part["thoughtSignature"] = signature
                out += self._parts(choice, [part])
            elif signature:
                self._signatures[choice] = signature
            return out
        if isinstance(event, ToolCallStart):
            self._calls.setdefault(choice, {})[event.index] = _Call(event.id, event.name, event.signature)
            return out
        if isinstance(event, StreamFinish):
            self._choices.add(choice)
            self._finish[choice] = event.reason
            return out
        return out

    def close(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        if self._failed or self._idle:
            return b"" if self._sse else b"]" if self._emitted else b"[]"
        out = b"".join(self._flush(choice) for choice in sorted({*self._calls, *self._signatures}))
        candidates = []
        for choice in sorted(self._choices or {0}):
            reason = self._finish.get(choice, "stop")
            candidate: dict[str, Any] = {"finishReason": finish_reason_out(reason), "index": choice}
            if reason != "content_filter":  # Gemini sends no content on a safety stop
                candidate = {"content": {"role": "model", "parts": [{"text": ""}]}, **candidate}
            candidates.append(candidate)
        out += self._frame(self._response(candidates, usageMetadata=usage_out(self._usage or Usage())))
        return out if self._sse else out + b"]"

    @property
    def usage(self) -> Usage | None:
        return self._usage

