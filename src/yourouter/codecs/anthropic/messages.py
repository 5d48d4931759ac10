"""Anthropic Messages <-> IR: requests and responses."""

from __future__ import annotations

import re
import time
from typing import Any

from yourouter.codecs.anthropic.errors import usage_in, usage_out
from yourouter.codecs.common import (
    UNTRANSLATABLE,
    arguments_object,
    arguments_text,
    as_dict,
    as_list,
    json_instruction,
    optional_int,
    optional_number,
    refuse,
)
from yourouter.ir.chat import (
    ChatRequest,
    ChatResponse,
    Choice,
    Document,
    FinishReason,
    Image,
    Message,
    Part,
    Reasoning,
    Text,
    Thinking,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    Unknown,
)
from yourouter.ir.errors import bad_request
from yourouter.ir.usage import Usage

DIALECT = "anthropic"
TARGET = "Anthropic"
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_MODELED = frozenset({"model", "messages", "system", "max_tokens", "stream", "stop_sequences", "temperature",
                      "top_p", "top_k", "tools", "tool_choice", "metadata", "thinking"})
_EFFORT_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384}


def default_max_tokens(model: str) -> int:
    """Anthropic requires `max_tokens`; this is what the gateway sends when the client gave none."""
    return 4096 if model.startswith("claude-3-") and "3-5" not in model and "3-7" not in model else 8192


# Requests: decode -----------------------------------------------------------------------------------------------

def _source(block: dict[str, Any], where: str) -> dict[str, Any]:
    return as_dict(block.get("source"), f"{where}.source")


def _block(block: Any, where: str, untranslatable: list[str]) -> Part:
    block = as_dict(block, where)
    kind = block.get("type")
    if kind == "text":
        return Text(str(block.get("text", "")))
    if kind == "image":
        source = _source(block, where)
        if source.get("type") == "base64":
            return Image(data=str(source.get("data", "")), media_type=source.get("media_type"))
        if source.get("type") == "url":
            return Image(url=str(source.get("url", "")))
    elif kind == "document":
        source = _source(block, where)
        if source.get("type") == "base64":
            return Document(media_type=str(source.get("media_type", "application/pdf")), data=source.get("data"))
        if source.get("type") == "url":
            return Document(media_type="application/pdf", url=source.get("url"))
        if source.get("type") == "text":
            return Text(str(source.get("data", "")))
    elif kind == "tool_use":
        return ToolCall(id=str(block.get("id", "")), name=str(block.get("name", "")),
                        arguments=arguments_text(block.get("input", {})))
    elif kind == "tool_result":
        raw = block.get("content")
        content: list[Text | Image] = []
        if isinstance(raw, str):
            content.append(Text(raw))
        else:
            for index, item in enumerate(raw or []):
                part = _block(item, f"{where}.content[{index}]", untranslatable)
                if isinstance(part, Text | Image):
                    content.append(part)
        return ToolResult(call_id=str(block.get("tool_use_id", "")), content=tuple(content),
                          is_error=bool(block.get("is_error")))
    elif kind == "thinking":
        return Thinking(text=str(block.get("thinking", "")), signature=block.get("signature"))
    elif kind == "redacted_thinking":
        return Thinking(text=str(block.get("data", "")), redacted=True)
    untranslatable.append(f"{where} ({kind})")
    return Unknown(DIALECT, str(kind), block)


def _content(content: Any, where: str, untranslatable: list[str]) -> tuple[Part, ...]:
    if isinstance(content, str):
        return (Text(content),)
    return tuple(_block(item, f"{where}[{i}]", untranslatable) for i, item in enumerate(as_list(content, where)))


def _system(value: Any) -> tuple[Text, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (Text(value),) if value else ()
    return tuple(Text(str(b.get("text", ""))) for b in as_list(value, "system") if isinstance(b, dict))


def decode_request(payload: dict[str, Any]) -> ChatRequest:
    untranslatable: list[str] = []
    system = list(_system(payload.get("system")))
    messages: list[Message] = []
    for index, item in enumerate(as_list(payload.get("messages"), "messages")):
        where = f"messages[{index}]"
        item = as_dict(item, where)
        role = item.get("role")
        parts = _content(item.get("content"), f"{where}.content", untranslatable)
        if role == "system":
            system.extend(p for p in parts if isinstance(p, Text))
        elif role in ("user", "assistant"):
            messages.append(Message(role, parts))
        else:
            raise bad_request(f"{where}.role: must be `user` or `assistant`.", param=f"{where}.role")
    tools = []
    for index, tool in enumerate(as_list(payload.get("tools") or [], "tools")):
        tool = as_dict(tool, f"tools[{index}]")
        if tool.get("type") not in (None, "custom"):
            untranslatable.append(f"tools[{index}] ({tool.get('type')})")
            continue
        tools.append(Tool(name=str(tool.get("name", "")), description=tool.get("description"),
                          parameters=tool.get("input_schema"), strict=tool.get("strict")))
    choice, parallel = None, None
    raw_choice = payload.get("tool_choice")
    if isinstance(raw_choice, dict):
        kind = raw_choice.get("type")
        mode = {"auto": "auto", "any": "required", "none": "none", "tool": "tool"}.get(str(kind))
        if mode is None:
            raise bad_request("tool_choice.type: must be auto, any, tool or none.", param="tool_choice.type")
        choice = ToolChoice(mode, raw_choice.get("name") if mode == "tool" else None)  # type: ignore[arg-type]
        if raw_choice.get("disable_parallel_tool_use"):
            parallel = False
    reasoning = None
    thinking = payload.get("thinking")
    if isinstance(thinking, dict):
        enabled = thinking.get("type") in ("enabled", "adaptive")
        reasoning = Reasoning(budget_tokens=thinking.get("budget_tokens"), enabled=enabled)
    metadata = payload.get("metadata") if isinstance(payload.get("metadata"), dict) else {}
    extra = {k: v for k, v in payload.items() if k not in _MODELED}
    if untranslatable:
        extra[UNTRANSLATABLE] = untranslatable
    stops = payload.get("stop_sequences") or []
    return ChatRequest(
        model=str(payload.get("model")), messages=tuple(messages), system=tuple(system), tools=tuple(tools),
        tool_choice=choice, parallel_tool_calls=parallel, max_tokens=optional_int(payload, "max_tokens"),
        temperature=optional_number(payload, "temperature"), top_p=optional_number(payload, "top_p"),
        top_k=optional_int(payload, "top_k"), stop=tuple(str(s) for s in as_list(stops, "stop_sequences")),
        reasoning=reasoning, user=(metadata or {}).get("user_id"), stream=bool(payload.get("stream")),
        include_usage=True, extra=extra)


# Requests: encode -----------------------------------------------------------------------------------------------

def tool_id(value: str) -> str:
    """Anthropic ids must match ^[a-zA-Z0-9_-]+$; other dialects' ids are mapped the same way on every turn."""
    cleaned = _ID_CHARS.sub("_", value)
    return cleaned or "toolu_0"


def _image(part: Image, where: str) -> dict[str, Any]:
    if part.url:
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    media = (part.media_type or "").lower()
    if media not in IMAGE_TYPES:
        raise bad_request(f"{where}: Anthropic models accept jpeg, png, gif or webp images, not `{media}`.",
                          param=where, code="untranslatable_content")
    return {"type": "image", "source": {"type": "base64", "media_type": media, "data": part.data}}


def _foreign(signature: str) -> bool:
    """Other codecs tag the signatures they carry with their dialect (`gemini:...`); Anthropic's are untagged."""
    head, sep, _ = signature.partition(":")
    return bool(sep) and head.isalpha() and len(head) < 16


def _encode_part(part: Part, where: str, role: str) -> dict[str, Any] | None:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, Image):
        return _image(part, where)
    if isinstance(part, Document):
        if part.data:
            return {"type": "document", "source": {"type": "base64", "media_type": part.media_type,
                                                   "data": part.data}}
        return {"type": "document", "source": {"type": "url", "url": part.url}}
    if isinstance(part, ToolCall):
        return {"type": "tool_use", "id": tool_id(part.id), "name": part.name,
                "input": arguments_object(part.arguments)}
    if isinstance(part, ToolResult):
        content: list[dict[str, Any]] = []
        for item in part.content:
            if isinstance(item, Text) and item.text:
                content.append({"type": "text", "text": item.text})
            elif isinstance(item, Image):
                content.append(_image(item, where))
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id(part.call_id), "content": content}
        if part.is_error:
            block["is_error"] = True
        return block
    if isinstance(part, Thinking):
        if role != "assistant" or not part.redacted and (not part.signature or _foreign(part.signature)):
            return None  # thoughts from other providers carry no Anthropic signature: they cannot be replayed
        if part.redacted:
            return {"type": "redacted_thinking", "data": part.text}
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    if isinstance(part, Unknown) and part.dialect == DIALECT:
        return dict(part.raw)
    refuse(part, TARGET, where)
    return None


def _encode_messages(request: ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for index, message in enumerate(request.messages):
        where = f"messages[{index}]"
        blocks = [b for p in message.parts if (b := _encode_part(p, where, message.role)) is not None]
        # tool results must open their user message
        blocks.sort(key=lambda b: 0 if b["type"] == "tool_result" else 1)
        if not blocks:
            continue
        if out and out[-1]["role"] == message.role:  # Anthropic wants alternating turns
            previous = out[-1]["content"]
            merged = previous + blocks
            merged.sort(key=lambda b: 0 if b["type"] == "tool_result" else 1)
            out[-1]["content"] = merged
        else:
            out.append({"role": message.role, "content": blocks})
    return out


def encode_request(request: ChatRequest, model: str) -> dict[str, Any]:
    if request.n is not None and request.n > 1:
        raise bad_request("n: Anthropic models return a single choice; n > 1 cannot be translated.", param="n",
                          code="untranslatable_parameter")
    body: dict[str, Any] = {"model": model, "messages": _encode_messages(request)}
    system = [p.text for p in request.system if p.text]
    if request.response_format is not None and (instruction := json_instruction(request.response_format)):
        system.append(instruction)
    if system:
        body["system"] = "\n\n".join(system)
    max_tokens = request.max_tokens or default_max_tokens(model)
    if request.reasoning is not None and request.reasoning.enabled and (
            request.reasoning.budget_tokens or request.reasoning.effort):
        budget = max(1024, request.reasoning.budget_tokens or _EFFORT_BUDGET.get(request.reasoning.effort or "", 8192))
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        max_tokens = max(max_tokens, budget + 1024)
    body["max_tokens"] = max_tokens
    if request.temperature is not None:
        body["temperature"] = min(max(request.temperature, 0.0), 1.0)
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.top_k is not None:
        body["top_k"] = request.top_k
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.tools:
        body["tools"] = [{"name": t.name, **({"description": t.description} if t.description else {}),
                          "input_schema": t.parameters or {"type": "object", "properties": {}}}
                         for t in request.tools]
    choice = request.tool_choice
    if choice is not None or request.parallel_tool_calls is False:
        mode = choice.mode if choice is not None else "auto"
        tool_choice: dict[str, Any] = {"type": {"auto": "auto", "required": "any", "none": "none",
                                                "tool": "tool"}[mode]}
        if mode == "tool" and choice is not None:
            tool_choice["name"] = choice.name
        if request.parallel_tool_calls is False and mode != "none":
            tool_choice["disable_parallel_tool_use"] = True
        if request.tools or mode == "none":
            body["tool_choice"] = tool_choice
    if request.user:
        body["metadata"] = {"user_id": request.user}
    if request.stream:
        body["stream"] = True
    return body


# Responses ------------------------------------------------------------------------------------------------------

_STOP_IN: dict[str, FinishReason] = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
                                     "max_tokens": "length", "model_context_window_exceeded": "length",
                                     "tool_use": "tool_calls", "refusal": "content_filter"}
_STOP_OUT = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal",
             "error": "end_turn"}


def stop_reason_in(value: Any) -> FinishReason:
    return _STOP_IN.get(str(value), "stop")


def stop_reason_out(reason: FinishReason | None, stop_sequence: str | None) -> str:
    if reason == "stop" and stop_sequence:
        return "stop_sequence"
    return _STOP_OUT.get(reason or "stop", "end_turn")


def decode_response(payload: dict[str, Any]) -> ChatResponse:
    parts = _content(payload.get("content") or [], "content", [])
    choice = Choice(index=0, parts=parts, finish_reason=stop_reason_in(payload.get("stop_reason")),
                    stop_sequence=payload.get("stop_sequence"))
    return ChatResponse(id=str(payload.get("id") or ""), model=str(payload.get("model") or ""), choices=(choice,),
                        usage=usage_in(payload.get("usage")))


def message_id(source_id: str) -> str:
    return source_id if source_id.startswith("msg_") else "msg_" + (source_id or str(time.time_ns()))


def encode_response(response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
    choice = response.choices[0] if response.choices else Choice(0, (), "stop")
    content: list[dict[str, Any]] = []
    for part in choice.parts:
        if isinstance(part, Thinking) and not part.redacted:
            # a response's thoughts are shown even without an Anthropic signature (they are not replayed)
            content.append({"type": "thinking", "thinking": part.text, "signature": part.signature or ""})
        elif (block := _encode_part(part, "content", "assistant")) is not None:
            content.append(block)
    return {"id": message_id(response.id), "type": "message", "role": "assistant",
            "model": response.model or request.model, "content": content,
            "stop_reason": stop_reason_out(choice.finish_reason, choice.stop_sequence),
            "stop_sequence": choice.stop_sequence, "usage": usage_out(response.usage or Usage())}
