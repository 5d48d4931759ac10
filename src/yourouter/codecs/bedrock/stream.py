"""Bedrock ConverseStream events (as `EventStreamSplitter` presents them, one JSON document each) -> IR events."""

from __future__ import annotations

from typing import Any

import orjson

from yourouter.codecs.bedrock.converse import SIGNATURE_TAG, response_id, stop_reason_in, usage_in
from yourouter.ir.chat import (
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

#: Stream exceptions -> the HTTP status the same error has as a response.
_EXCEPTION_STATUS = {"throttlingException": 429, "serviceUnavailableException": 503, "validationException": 400,
                     "modelStreamErrorException": 500, "internalServerException": 500}


class BedrockStreamDecoder:
    """`messageStart`, `contentBlockStart/Delta/Stop`, `messageStop`, `metadata` -> IR events. Tool-use blocks are
    numbered 0, 1, ... as OpenAI numbers calls; usage arrives last, in `metadata`."""

    def __init__(self) -> None:
        self._tool_index: dict[int, int] = {}
        self._started = False

    def feed(self, event: bytes) -> list[StreamEvent]:
        try:
            document = orjson.loads(event)
        except orjson.JSONDecodeError:
            return [StreamError(500, "The upstream sent an unreadable stream event.")]
        if not isinstance(document, dict) or not document:
            return []
        name, payload = next(iter(document.items()))
        if not isinstance(payload, dict):
            payload = {}
        out: list[StreamEvent] = []
        if not self._started and name not in ("error",) and not name.endswith("Exception"):
            self._started = True
            out.append(StreamStart(id=response_id(), model=""))
        out.extend(self._event(name, payload))
        return out

    def _event(self, name: str, payload: dict[str, Any]) -> list[StreamEvent]:
        if name == "contentBlockStart":
            use = (payload.get("start") or {}).get("toolUse")
            if isinstance(use, dict):
                position = len(self._tool_index)
                self._tool_index[int(payload.get("contentBlockIndex") or 0)] = position
                return [ToolCallStart(index=position, id=str(use.get("toolUseId", "")), name=str(use.get("name", "")))]
            return []
        if name == "contentBlockDelta":
            return self._delta(payload)
        if name == "messageStop":
            return [StreamFinish(stop_reason_in(payload.get("stopReason")))]
        if name == "metadata":
            usage = usage_in(payload.get("usage"))
            return [UsageUpdate(usage)] if usage is not None else []
        if name == "error" or name.endswith("Exception"):
            message = str(payload.get("message") or payload.get("Message") or name)
            return [StreamError(_EXCEPTION_STATUS.get(name, 500), f"Upstream stream error ({name}): {message}")]
        return []  # messageStart, contentBlockStop, and events added to the API later

    def _delta(self, payload: dict[str, Any]) -> list[StreamEvent]:
        delta = payload.get("delta") or {}
        if "text" in delta:
            return [TextDelta(str(delta["text"]))] if delta["text"] else []
        if "toolUse" in delta:
            position = self._tool_index.get(int(payload.get("contentBlockIndex") or 0), 0)
            fragment = str((delta["toolUse"] or {}).get("input", ""))
            return [ToolCallDelta(index=position, arguments=fragment)] if fragment else []
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict):
            if reasoning.get("text"):
                return [ThinkingDelta(text=str(reasoning["text"]))]
            if reasoning.get("signature"):
                return [ThinkingDelta(signature=SIGNATURE_TAG + str(reasoning["signature"]))]
        return []

    def close(self) -> list[StreamEvent]:
        return []
