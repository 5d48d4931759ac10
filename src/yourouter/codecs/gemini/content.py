"""Gemini generateContent <-> IR: requests and responses. Parts and tool-call ids are in `parts`."""

from __future__ import annotations

import secrets
from typing import Any

from yourouter.codecs.common import UNTRANSLATABLE, as_dict, as_list, optional_int, optional_number
from yourouter.codecs.gemini.errors import usage_in, usage_out
from yourouter.codecs.gemini.parts import (
    DIALECT,
    TARGET,
    CallLinks,
    PartDecoder,
    PartEncoder,
    fields,
    response_tag,
)
from yourouter.ir.chat import (
    ChatRequest,
    ChatResponse,
    Choice,
    FinishReason,
    Message,
    Reasoning,
    ResponseFormat,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
)
from yourouter.ir.errors import bad_request
from yourouter.ir.usage import Usage

MAX_STOP_SEQUENCES = 5
_ROLES = {"user": "user", "model": "assistant", "function": "user"}
_MODELED = frozenset({"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "model"})
_MODELED_CONFIG = frozenset({"temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences",
                             "seed", "presencePenalty", "frequencyPenalty", "responseMimeType", "responseSchema",
                             "responseJsonSchema", "thinkingConfig"})
_MODES: dict[str, str | None] = {"AUTO": "auto", "VALIDATED": "auto", "ANY": "required", "NONE": "none",
                                 "MODE_UNSPECIFIED": None}
_MODES_OUT = {"auto": "AUTO", "required": "ANY", "none": "NONE", "tool": "ANY"}
_EFFORT_BUDGET = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
_FILTERED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
                       "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "LANGUAGE"})
_FINISH_OUT = {"stop": "STOP", "tool_calls": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY",
               "error": "OTHER"}


# Requests: decode ---------------------------------------------------------------------------------------------------

def _whole(config: dict[str, Any], name: str, where: str) -> int | None:
    """An integer field that clients may send as a float (Vertex types some of them `number`)."""
    value = config.get(name)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return optional_int(config, name, where)


def json_schema(schema: Any) -> Any:
    """Google's OpenAPI-subset `Schema` (upper-case `type`, `nullable`) -> the JSON Schema other dialects take."""
    if isinstance(schema, list):
        return [json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: json_schema(item) for name, item in value.items()}
        elif key in ("items", "anyOf", "oneOf", "allOf", "additionalProperties", "prefixItems", "not"):
            out[key] = json_schema(value)
        elif key == "type" and isinstance(value, str):
            out[key] = value.lower()
        elif key not in ("nullable", "propertyOrdering"):
            out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _system(value: Any) -> tuple[Text, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (Text(value),) if value else ()
    content = fields(value, "systemInstruction")
    texts = []
    for index, raw in enumerate(as_list(content.get("parts") or [], "systemInstruction.parts")):
        part = fields(raw, f"systemInstruction.parts[{index}]")
        if not isinstance(part.get("text"), str):
            raise bad_request(f"`systemInstruction.parts[{index}]`: a system instruction can only hold text.",
                              param=f"systemInstruction.parts[{index}]")
        texts.append(Text(part["text"]))
    return tuple(texts)


def _messages(payload: dict[str, Any], untranslatable: list[str]) -> tuple[Message, ...]:
    contents = as_list(payload.get("contents"), "contents")
    if not contents:
        raise bad_request("`contents` must not be empty.", param="contents")
    decoder = PartDecoder(CallLinks(), untranslatable)
    messages: list[Message] = []
    for turn, raw in enumerate(contents):
        where = f"contents[{turn}]"
        content = fields(raw, where)
        role = _ROLES.get(content.get("role") or "user")
        if role is None:
            raise bad_request(f"`{where}.role` must be `user` or `model`.", param=f"{where}.role")
        if role == "assistant":
            decoder.links.model_turn()
        parts = decoder.parts(content.get("parts"), where, str(turn))
        if parts:
            messages.append(Message(role, tuple(parts)))  # type: ignore[arg-type]
    return tuple(messages)


def _tools(payload: dict[str, Any], untranslatable: list[str]) -> tuple[Tool, ...]:
    tools: list[Tool] = []
    for index, raw in enumerate(as_list(payload.get("tools") or [], "tools")):
        tool = fields(raw, f"tools[{index}]")
        for key in tool:
            if key != "functionDeclarations":
                untranslatable.append(f"tools[{index}].{key}")
        declarations = tool.get("functionDeclarations") or []
        for position, item in enumerate(as_list(declarations, f"tools[{index}].functionDeclarations")):
            where = f"tools[{index}].functionDeclarations[{position}]"
            declaration = fields(item, where)
            name = declaration.get("name")
            if not isinstance(name, str) or not name:
                raise bad_request(f"`{where}.name` must be a non-empty string.", param=f"{where}.name")
            if declaration.get("parametersJsonSchema") is not None:
                parameters = as_dict(declaration["parametersJsonSchema"], f"{where}.parametersJsonSchema")
            elif declaration.get("parameters") is not None:
                parameters = json_schema(as_dict(declaration["parameters"], f"{where}.parameters"))
            else:
                parameters = None
            description = declaration.get("description")
            tools.append(Tool(name=name, description=description if isinstance(description, str) else None,
                              parameters=parameters))
    return tuple(tools)


def _tool_choice(payload: dict[str, Any], extra: dict[str, Any]) -> ToolChoice | None:
    config = payload.get("toolConfig")
    if config is None:
        return None
    calling = fields(config, "toolConfig").get("functionCallingConfig")
    if calling is None:
        return None
    calling = fields(calling, "toolConfig.functionCallingConfig")
    where = "toolConfig.functionCallingConfig.mode"
    mode_name = str(calling.get("mode") or "MODE_UNSPECIFIED").upper()
    if mode_name not in _MODES:
        raise bad_request(f"`{where}` must be AUTO, ANY, NONE or VALIDATED.", param=where)
    mode = _MODES[mode_name]
    names = as_list(calling.get("allowedFunctionNames") or [], "toolConfig.functionCallingConfig.allowedFunctionNames")
    if mode == "required" and len(names) == 1 and isinstance(names[0], str):
        return ToolChoice("tool", names[0])
    if names:  # several allowed functions: no other dialect narrows the choice like this
        extra["allowedFunctionNames"] = names
    return ToolChoice(mode) if mode else None  # type: ignore[arg-type]


def _response_format(config: dict[str, Any], untranslatable: list[str]) -> ResponseFormat | None:
    mime = config.get("responseMimeType")
    if mime in (None, "", "text/plain"):
        return None
    if mime != "application/json":
        untranslatable.append(f"generationConfig.responseMimeType ({mime})")
        return None
    if config.get("responseJsonSchema") is not None:
        return ResponseFormat("json_schema", schema=as_dict(config["responseJsonSchema"],
                                                            "generationConfig.responseJsonSchema"))
    if config.get("responseSchema") is not None:
        return ResponseFormat("json_schema", schema=json_schema(as_dict(config["responseSchema"],
                                                                        "generationConfig.responseSchema")))
    return ResponseFormat("json_object")


def _reasoning(config: dict[str, Any]) -> Reasoning | None:
    if config.get("thinkingConfig") is None:
        return None
    thinking = fields(config["thinkingConfig"], "generationConfig.thinkingConfig")
    budget = _whole(thinking, "thinkingBudget", "generationConfig.thinkingConfig.thinkingBudget")
    level = thinking.get("thinkingLevel")
    effort = level.lower() if isinstance(level, str) and level.upper() != "THINKING_LEVEL_UNSPECIFIED" else None
    return Reasoning(effort=effort, budget_tokens=budget if budget is not None and budget > 0 else None,
                     include_thoughts=bool(thinking.get("includeThoughts")), enabled=budget != 0)


def decode_request(payload: dict[str, Any], model: str, stream: bool) -> ChatRequest:
    """A generateContent body -> IR; `model` and `stream` come from the URL (`…/models/{m}:streamGenerateContent`)."""
    payload = fields(payload, "body")
    untranslatable: list[str] = []
    extra: dict[str, Any] = {key: value for key, value in payload.items() if key not in _MODELED}
    if payload.get("cachedContent"):
        untranslatable.append("cachedContent")
    messages = _messages(payload, untranslatable)
    tools = _tools(payload, untranslatable)
    config = fields(payload.get("generationConfig") or {}, "generationConfig")
    leftover = {key: value for key, value in config.items() if key not in _MODELED_CONFIG}
    if leftover:
        extra["generationConfig"] = leftover
        modalities = leftover.get("responseModalities")
        if isinstance(modalities, list) and any(str(m).upper() != "TEXT" for m in modalities):
            untranslatable.append("generationConfig.responseModalities")
    response_format = _response_format(config, untranslatable)
    stops = as_list(config.get("stopSequences") or [], "generationConfig.stopSequences")
    if not all(isinstance(stop, str) for stop in stops):
        raise bad_request("`generationConfig.stopSequences` must be an array of strings.",
                          param="generationConfig.stopSequences")
    if untranslatable:
        extra[UNTRANSLATABLE] = untranslatable
    return ChatRequest(
        model=model, messages=messages, system=_system(payload.get("systemInstruction")), tools=tools,
        tool_choice=_tool_choice(payload, extra),
        max_tokens=_whole(config, "maxOutputTokens", "generationConfig.maxOutputTokens"),
        temperature=optional_number(config, "temperature", "generationConfig.temperature"),
        top_p=optional_number(config, "topP", "generationConfig.topP"),
        top_k=_whole(config, "topK", "generationConfig.topK"), stop=tuple(stops),
        n=_whole(config, "candidateCount", "generationConfig.candidateCount"),
        seed=_whole(config, "seed", "generationConfig.seed"),
        presence_penalty=optional_number(config, "presencePenalty", "generationConfig.presencePenalty"),
        frequency_penalty=optional_number(config, "frequencyPenalty", "generationConfig.frequencyPenalty"),
        response_format=response_format, reasoning=_reasoning(config), stream=stream, include_usage=True,
        extra=extra)


# Requests: encode ---------------------------------------------------------------------------------------------------

def _contents(request: ChatRequest) -> list[dict[str, Any]]:
    encoder = PartEncoder()
    out: list[dict[str, Any]] = []
    for index, message in enumerate(request.messages):
        role = "model" if message.role == "assistant" else "user"
        parts = encoder.parts(message.parts, message.role, f"messages[{index}]")
        if not parts:
            continue  # Gemini rejects a turn without parts
        if out and out[-1]["role"] == role:  # consecutive same-role turns are one Gemini turn
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": role, "parts": parts})
    for content in out:  # function responses open their turn, as the calls they answer closed the last one
        if content["role"] == "user":
            content["parts"].sort(key=lambda part: 0 if "functionResponse" in part else 1)
    return out


def _thinking(reasoning: Reasoning, model: str) -> dict[str, Any]:
    thinking: dict[str, Any] = {}
    effort = (reasoning.effort or "").lower()
    if not reasoning.enabled or effort == "none":
        return {"thinkingBudget": 0}
    if reasoning.budget_tokens:
        thinking["thinkingBudget"] = reasoning.budget_tokens
    elif effort and "gemini-3" in model:
        thinking["thinkingLevel"] = effort.upper()
    elif effort:
        thinking["thinkingBudget"] = _EFFORT_BUDGET.get(effort, 8192)
    if reasoning.include_thoughts:
        thinking["includeThoughts"] = True
    return thinking


def _generation_config(request: ChatRequest, model: str) -> dict[str, Any]:
    if len(request.stop) > MAX_STOP_SEQUENCES:
        raise bad_request(f"stop: Gemini models accept at most {MAX_STOP_SEQUENCES} stop sequences, not "
                          f"{len(request.stop)}.", param="stop", code="untranslatable_parameter")
    optional = {"temperature": request.temperature, "topP": request.top_p, "topK": request.top_k,
                "candidateCount": request.n, "maxOutputTokens": request.max_tokens, "seed": request.seed,
                "presencePenalty": request.presence_penalty, "frequencyPenalty": request.frequency_penalty}
    config: dict[str, Any] = {key: value for key, value in optional.items() if value is not None}
    if request.stop:
        config["stopSequences"] = list(request.stop)
    fmt = request.response_format
    if fmt is not None and fmt.type != "text":
        config["responseMimeType"] = "application/json"
        if fmt.type == "json_schema" and fmt.schema is not None:
            config["responseJsonSchema"] = fmt.schema  # JSON Schema as is; `strict` has no Gemini equivalent
    if request.reasoning is not None and (thinking := _thinking(request.reasoning, model)):
        config["thinkingConfig"] = thinking
    return config


def encode_request(request: ChatRequest, model: str) -> dict[str, Any]:
    """IR -> a generateContent body (the model and `stream` go in the URL).

    Lossy: `parallel_tool_calls=False` has no Gemini equivalent and is dropped; `Tool.strict`, image `detail` and
    `user` are dropped; unsigned thoughts of other dialects are not replayed."""
    body: dict[str, Any] = {"contents": _contents(request)}
    system = [{"text": part.text} for part in request.system if part.text]
    if system:
        body["systemInstruction"] = {"parts": system}
    if request.tools:
        declarations = []
        for tool in request.tools:
            declaration: dict[str, Any] = {"name": tool.name}
            if tool.description:
                declaration["description"] = tool.description
            if tool.parameters is not None:  # JSON Schema verbatim: `parameters` would reject many keywords
                declaration["parametersJsonSchema"] = tool.parameters
            declarations.append(declaration)
        body["tools"] = [{"functionDeclarations": declarations}]
        if request.tool_choice is not None:
            calling: dict[str, Any] = {"mode": _MODES_OUT[request.tool_choice.mode]}
            if request.tool_choice.mode == "tool" and request.tool_choice.name:
                calling["allowedFunctionNames"] = [request.tool_choice.name]
            body["toolConfig"] = {"functionCallingConfig": calling}
    if config := _generation_config(request, model):
        body["generationConfig"] = config
    return body


# Responses ----------------------------------------------------------------------------------------------------------

def finish_reason_in(value: Any, has_calls: bool) -> FinishReason | None:
    """Gemini has no tool-call finish reason: a function-calling turn ends with STOP and functionCall parts."""
    if not value:
        return None
    reason = str(value).upper()
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if has_calls and reason == "STOP" else "stop"


def finish_reason_out(reason: FinishReason | None) -> str:
    return _FINISH_OUT.get(reason or "stop", "STOP")


def _candidates(payload: dict[str, Any]) -> tuple[Choice, ...]:
    candidates = as_list(payload.get("candidates") or [], "candidates")
    if not candidates:  # the prompt was blocked before any candidate
        feedback = payload.get("promptFeedback")
        blocked = isinstance(feedback, dict) and bool(feedback.get("blockReason"))
        return (Choice(0, (), "content_filter" if blocked else "stop"),)
    response_id = str(payload.get("responseId") or "") or secrets.token_hex(6)
    choices = []
    for position, raw in enumerate(candidates):
        where = f"candidates[{position}]"
        candidate = fields(raw, where)
        index = candidate["index"] if isinstance(candidate.get("index"), int) else position
        content = fields(candidate.get("content") or {}, f"{where}.content")
        parts = PartDecoder(CallLinks(), []).parts(content.get("parts"), f"{where}.content",
                                                   response_tag(response_id, index))
        has_calls = any(isinstance(part, ToolCall) for part in parts)
        reason = finish_reason_in(candidate.get("finishReason"), has_calls)
        choices.append(Choice(index, tuple(parts), reason or ("tool_calls" if has_calls else "stop")))
    return tuple(choices)


def decode_response(payload: dict[str, Any]) -> ChatResponse:
    return ChatResponse(id=str(payload.get("responseId") or ""), model=str(payload.get("modelVersion") or ""),
                        choices=_candidates(payload), usage=usage_in(payload.get("usageMetadata")))


def candidate_out(choice: Choice, encoder: PartEncoder) -> dict[str, Any]:
    parts = encoder.parts(choice.parts, "assistant", f"choices[{choice.index}]")
    candidate: dict[str, Any] = {}
    if parts or choice.finish_reason != "content_filter":  # Gemini sends no content on a safety stop
        candidate["content"] = {"role": "model", "parts": parts or [{"text": ""}]}
    candidate["finishReason"] = finish_reason_out(choice.finish_reason)
    candidate["index"] = choice.index
    return candidate


def response_id(source_id: str) -> str:
    return source_id or secrets.token_urlsafe(12)


def shows_thoughts(request: ChatRequest) -> bool:
    """Whether the client asked for thought summaries (Gemini's `includeThoughts`, off by default)."""
    return request.reasoning is not None and request.reasoning.enabled and request.reasoning.include_thoughts


def encode_response(response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
    encoder = PartEncoder(response=True, show_thoughts=shows_thoughts(request))
    choices = response.choices or (Choice(0, (), "stop"),)
    return {"candidates": [candidate_out(choice, encoder) for choice in choices],
            "usageMetadata": usage_out(response.usage or Usage()),
            "modelVersion": response.model or request.model, "responseId": response_id(response.id)}


__all__ = ["DIALECT", "TARGET", "candidate_out", "decode_request", "decode_response", "encode_request",
           "encode_response", "finish_reason_in", "finish_reason_out", "json_schema"]
