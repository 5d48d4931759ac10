"""OpenAI Chat Completions <-> IR: requests and responses."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from yourouter.codecs.common import (
    as_dict,
    as_list,
    data_url,
    optional_int,
    optional_number,
    parse_data_url,
    refuse,
    text_of,
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
    ResponseFormat,
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

DIALECT = "openai"
TARGET = "OpenAI-protocol"

#: Request fields the IR models; everything else is kept in `extra` (and dropped when translating).
_MODELED = frozenset({
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "stop", "n", "seed", "presence_penalty", "frequency_penalty", "tools", "tool_choice", "parallel_tool_calls",
    "response_format", "reasoning_effort", "user", "safety_identifier", "functions", "function_call",
})


# Requests: decode -----------------------------------------------------------------------------------------------

def _content_parts(content: Any, where: str) -> tuple[Part, ...]:
    if content is None:
        return ()
    if isinstance(content, str):
        return (Text(content),) if content else ()
    parts: list[Part] = []
    for index, item in enumerate(as_list(content, where)):
        at = f"{where}[{index}]"
        item = as_dict(item, at)
        kind = item.get("type")
        if kind == "text":
            parts.append(Text(str(item.get("text", ""))))
        elif kind == "refusal":
            parts.append(Text(str(item.get("refusal", ""))))
        elif kind == "image_url":
            image = as_dict(item.get("image_url"), f"{at}.image_url")
            url = image.get("url")
            if not isinstance(url, str) or not url:
                raise bad_request(f"`{at}.image_url.url` must be a URL.", param=f"{at}.image_url.url")
            inline = parse_data_url(url)
            detail = image.get("detail")
            if inline:
                parts.append(Image(data=inline[1], media_type=inline[0], detail=detail))
            else:
                parts.append(Image(url=url, detail=detail))
        elif kind == "file":
            file = as_dict(item.get("file"), f"{at}.file")
            inline = parse_data_url(str(file.get("file_data") or ""))
            if inline is None:
                parts.append(Unknown(DIALECT, "file", item))
            else:
                parts.append(Document(media_type=inline[0], data=inline[1], filename=file.get("filename")))
        else:
            parts.append(Unknown(DIALECT, str(kind), item))
    return tuple(parts)


def _tool_calls(message: dict[str, Any], where: str) -> list[ToolCall]:
    calls = []
    for index, call in enumerate(as_list(message.get("tool_calls") or [], f"{where}.tool_calls")):
        call = as_dict(call, f"{where}.tool_calls[{index}]")
        function = as_dict(call.get("function"), f"{where}.tool_calls[{index}].function")
        calls.append(ToolCall(id=str(call.get("id") or f"call_{index}"), name=str(function.get("name", "")),
                              arguments=str(function.get("arguments") or "")))
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        calls.append(ToolCall(id="call_function", name=str(legacy.get("name", "")),
                              arguments=str(legacy.get("arguments") or "")))
    return calls


def _messages(raw: list[Any]) -> tuple[tuple[Text, ...], tuple[Message, ...]]:
    system: list[Text] = []
    messages: list[Message] = []
    for index, item in enumerate(raw):
        where = f"messages[{index}]"
        item = as_dict(item, where)
        role = item.get("role")
        content = item.get("content")
        if role in ("system", "developer"):
            system.extend(p for p in _content_parts(content, f"{where}.content") if isinstance(p, Text))
        elif role == "user":
            messages.append(Message("user", _content_parts(content, f"{where}.content")))
        elif role == "assistant":
            parts = [*_content_parts(content, f"{where}.content"), *_tool_calls(item, where)]
            reasoning = item.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                parts.insert(0, Thinking(reasoning))
            messages.append(Message("assistant", tuple(parts)))
        elif role in ("tool", "function"):
            call_id = item.get("tool_call_id") if role == "tool" else "call_function"
            if not isinstance(call_id, str):
                raise bad_request(f"`{where}.tool_call_id` is required.", param=f"{where}.tool_call_id")
            texts = tuple(p for p in _content_parts(content, f"{where}.content") if isinstance(p, Text))
            result = ToolResult(call_id=call_id, content=texts, name=item.get("name"))
            last = messages[-1] if messages else None
            if last is not None and last.role == "user" and all(isinstance(p, ToolResult) for p in last.parts):
                messages[-1] = Message("user", (*last.parts, result))
            else:
                messages.append(Message("user", (result,)))
        else:
            raise bad_request(f"`{where}.role` must be one of system, developer, user, assistant, tool.",
                              param=f"{where}.role")
    return tuple(system), tuple(messages)


def _tools(payload: dict[str, Any]) -> tuple[Tool, ...]:
    tools: list[Tool] = []
    for index, item in enumerate(as_list(payload.get("tools") or [], "tools")):
        item = as_dict(item, f"tools[{index}]")
        if item.get("type", "function") != "function":
            raise bad_request(f"tools[{index}]: tools of type `{item.get('type')}` cannot be translated to another "
                              "provider's format.", param=f"tools[{index}].type", code="untranslatable_content")
        function = as_dict(item.get("function"), f"tools[{index}].function")
        tools.append(Tool(name=str(function.get("name", "")), description=function.get("description"),
                          parameters=function.get("parameters"), strict=function.get("strict")))
    for function in payload.get("functions") or []:
        if isinstance(function, dict):
            tools.append(Tool(name=str(function.get("name", "")), description=function.get("description"),
                              parameters=function.get("parameters")))
    return tuple(tools)


def _tool_choice(payload: dict[str, Any]) -> ToolChoice | None:
    choice = payload.get("tool_choice", payload.get("function_call"))
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return ToolChoice(choice)
    if isinstance(choice, dict):
        function = choice.get("function") if "function" in choice else choice
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return ToolChoice("tool", function["name"])
    raise bad_request("`tool_choice` must be none, auto, required or a named function.", param="tool_choice")


def _response_format(payload: dict[str, Any]) -> ResponseFormat | None:
    value = payload.get("response_format")
    if value is None:
        return None
    value = as_dict(value, "response_format")
    kind = value.get("type")
    if kind == "json_schema":
        spec = as_dict(value.get("json_schema"), "response_format.json_schema")
        return ResponseFormat("json_schema", schema=spec.get("schema"), name=spec.get("name"),
                              strict=spec.get("strict"))
    if kind in ("json_object", "text"):
        return ResponseFormat(kind)
    raise bad_request("`response_format.type` must be text, json_object or json_schema.", param="response_format")


def decode_request(payload: dict[str, Any]) -> ChatRequest:
    system, messages = _messages(as_list(payload.get("messages"), "messages"))
    stop = payload.get("stop")
    stops = (stop,) if isinstance(stop, str) else tuple(str(s) for s in stop or ())
    options = payload.get("stream_options") or {}
    effort = payload.get("reasoning_effort")
    max_tokens = optional_int(payload, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = optional_int(payload, "max_tokens")
    return ChatRequest(
        model=str(payload.get("model")), messages=messages, system=system, tools=_tools(payload),
        tool_choice=_tool_choice(payload), parallel_tool_calls=payload.get("parallel_tool_calls"),
        max_tokens=max_tokens, temperature=optional_number(payload, "temperature"),
        top_p=optional_number(payload, "top_p"), stop=stops, n=optional_int(payload, "n"),
        seed=optional_int(payload, "seed"), presence_penalty=optional_number(payload, "presence_penalty"),
        frequency_penalty=optional_number(payload, "frequency_penalty"), response_format=_response_format(payload),
        reasoning=Reasoning(effort=effort) if isinstance(effort, str) else None,
        user=payload.get("user") or payload.get("safety_identifier"), stream=bool(payload.get("stream")),
        include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
        extra={k: v for k, v in payload.items() if k not in _MODELED})


# Requests: encode -----------------------------------------------------------------------------------------------

def _user_content(parts: list[Part], where: str) -> str | list[dict[str, Any]]:
    if all(isinstance(p, Text) for p in parts):
        return text_of(parts)
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, Text):
            out.append({"type": "text", "text": part.text})
        elif isinstance(part, Image):
            url = part.url or data_url(part.media_type or "image/png", part.data or "")
            image: dict[str, Any] = {"url": url}
            if part.detail:
                image["detail"] = part.detail
            out.append({"type": "image_url", "image_url": image})
        elif isinstance(part, Document) and part.data:
            file: dict[str, Any] = {"file_data": data_url(part.media_type, part.data)}
            if part.filename:
                file["filename"] = part.filename
            out.append({"type": "file", "file": file})
        elif isinstance(part, Unknown) and part.dialect == DIALECT:
            out.append(part.raw)
        elif not isinstance(part, Thinking):
            refuse(part, TARGET, where)
    return out


def upstream_id(value: str) -> str:
    """OpenAI caps tool-call ids at 40 characters; longer ids (e.g. Gemini's, which carry a signature) are hashed,
    the same way for a call and its result."""
    if len(value) <= 40:
        return value
    return "call_" + hashlib.sha256(value.encode()).hexdigest()[:32]


def _encode_messages(request: ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": "\n\n".join(p.text for p in request.system)})
    for index, message in enumerate(request.messages):
        where = f"messages[{index}]"
        if message.role == "assistant":
            calls = [p for p in message.parts if isinstance(p, ToolCall)]
            for part in message.parts:
                if not isinstance(part, Text | ToolCall | Thinking) and not (
                        isinstance(part, Unknown) and part.dialect == DIALECT):
                    refuse(part, TARGET, where)
            text = text_of(message.parts)
            entry: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                entry["tool_calls"] = [{"id": upstream_id(c.id), "type": "function",
                                        "function": {"name": c.name, "arguments": c.arguments or "{}"}}
                                       for c in calls]
            out.append(entry)
            continue
        rest: list[Part] = []
        for part in message.parts:
            if isinstance(part, ToolResult):
                text = text_of(list(part.content))
                if any(isinstance(c, Image) for c in part.content):
                    refuse(Image(), TARGET, f"{where} tool result")
                out.append({"role": "tool", "tool_call_id": upstream_id(part.call_id),
                            "content": f"Error: {text}" if part.is_error else text})
            else:
                rest.append(part)
        if rest:
            out.append({"role": "user", "content": _user_content(rest, where)})
    return out


_EFFORT_BY_BUDGET = ((2048, "low"), (8192, "medium"))


def _effort(reasoning: Reasoning) -> str | None:
    if reasoning.effort:
        return reasoning.effort
    if not reasoning.enabled:
        return None
    budget = reasoning.budget_tokens or 0
    for limit, effort in _EFFORT_BY_BUDGET:
        if budget <= limit:
            return effort
    return "high"


def encode_request(request: ChatRequest, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": _encode_messages(request)}
    if request.tools:
        body["tools"] = []
        for tool in request.tools:
            function: dict[str, Any] = {"name": tool.name}
            if tool.description:
                function["description"] = tool.description
            if tool.parameters is not None:
                function["parameters"] = tool.parameters
            if tool.strict is not None:
                function["strict"] = tool.strict
            body["tools"].append({"type": "function", "function": function})
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = ({"type": "function", "function": {"name": choice.name}} if choice.mode == "tool"
                               else choice.mode)
    if request.parallel_tool_calls is not None and request.tools:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    optional = {"max_completion_tokens": request.max_tokens, "temperature": request.temperature,
                "top_p": request.top_p, "n": request.n, "seed": request.seed,
                "presence_penalty": request.presence_penalty, "frequency_penalty": request.frequency_penalty,
                "user": request.user}
    body.update({k: v for k, v in optional.items() if v is not None})
    if request.stop:
        body["stop"] = list(request.stop)
    if request.response_format is not None:
        fmt = request.response_format
        if fmt.type == "json_schema":
            spec: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema or {}}
            if fmt.strict is not None:
                spec["strict"] = fmt.strict
            body["response_format"] = {"type": "json_schema", "json_schema": spec}
        else:
            body["response_format"] = {"type": fmt.type}
    if request.reasoning is not None and (effort := _effort(request.reasoning)):
        body["reasoning_effort"] = effort
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


# Responses ------------------------------------------------------------------------------------------------------

_FINISH_IN: dict[str, FinishReason] = {"stop": "stop", "length": "length", "tool_calls": "tool_calls",
                                       "function_call": "tool_calls", "content_filter": "content_filter"}


def finish_reason_in(value: Any) -> FinishReason | None:
    return _FINISH_IN.get(value, "stop") if value else None


def usage_in(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(prompt_tokens=int(raw.get("prompt_tokens") or 0),
                 completion_tokens=int(raw.get("completion_tokens") or 0),
                 cached_tokens=int(prompt_details.get("cached_tokens") or 0),
                 reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0))


def usage_out(usage: Usage) -> dict[str, Any]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def decode_response(payload: dict[str, Any]) -> ChatResponse:
    choices = []
    for index, raw in enumerate(payload.get("choices") or []):
        message = raw.get("message") or {}
        parts: list[Part] = []
        reasoning = message.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            parts.append(Thinking(reasoning))
        content = message.get("content")
        if isinstance(content, str) and content:
            parts.append(Text(content))
        elif isinstance(content, list):
            parts.extend(_content_parts(content, "content"))
        if isinstance(message.get("refusal"), str) and message["refusal"]:
            parts.append(Text(message["refusal"]))
        parts.extend(_tool_calls(message, f"choices[{index}].message"))
        choices.append(Choice(index=int(raw.get("index", index)), parts=tuple(parts),
                              finish_reason=finish_reason_in(raw.get("finish_reason")) or "stop"))
    return ChatResponse(id=str(payload.get("id") or ""), model=str(payload.get("model") or ""),
                        choices=tuple(choices), usage=usage_in(payload.get("usage")),
                        created=payload.get("created"))


def completion_id(source_id: str) -> str:
    return source_id if source_id.startswith("chatcmpl-") else "chatcmpl-" + (source_id or str(time.time_ns()))


def encode_response(response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
    choices = []
    for choice in response.choices:
        calls = [p for p in choice.parts if isinstance(p, ToolCall)]
        text = text_of(choice.parts)
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None,
                                   "refusal": None}
        thoughts = "".join(p.text for p in choice.parts if isinstance(p, Thinking) and not p.redacted)
        if thoughts:  # the field DeepSeek-style OpenAI-compatible APIs use; the stream encoder emits the same
            message["reasoning_content"] = thoughts
        if calls:
            message["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": c.arguments or "{}"}}
                                     for c in calls]
        finish = choice.finish_reason if choice.finish_reason not in (None, "error") else "stop"
        choices.append({"index": choice.index, "message": message, "logprobs": None, "finish_reason": finish})
    body: dict[str, Any] = {"id": completion_id(response.id), "object": "chat.completion",
                            "created": response.created or int(time.time()), "model": response.model or request.model,
                            "choices": choices}
    if response.usage is not None:
        body["usage"] = usage_out(response.usage)
    return body
