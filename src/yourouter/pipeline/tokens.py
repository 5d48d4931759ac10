"""Estimating input tokens locally, for token-count endpoints whose provider cannot count in the client's dialect."""

from __future__ import annotations

import orjson

from yourouter.ir.chat import ChatRequest, Document, Image, Part, Text, Thinking, ToolCall, ToolResult

_IMAGE_TOKENS = 85  # a low-detail image, as OpenAI and Anthropic price the smallest tile
_DOCUMENT_TOKENS = 1500


def _chars(part: Part) -> int:
    if isinstance(part, Text | Thinking):
        return len(part.text)
    if isinstance(part, ToolCall):
        return len(part.name) + len(part.arguments)
    if isinstance(part, ToolResult):
        return sum(_chars(inner) for inner in part.content)
    return 0


def estimate_input_tokens(request: ChatRequest) -> int:
    """About four characters a token, plus fixed costs for images, documents, turns and tool definitions."""
    chars = sum(len(p.text) for p in request.system)
    fixed = 0
    for message in request.messages:
        fixed += 4
        for part in message.parts:
            chars += _chars(part)
            if isinstance(part, Image):
                fixed += _IMAGE_TOKENS
            elif isinstance(part, Document):
                fixed += _DOCUMENT_TOKENS
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description or "") + len(orjson.dumps(tool.parameters or {}))
    return max(1, fixed + (chars + 3) // 4)
