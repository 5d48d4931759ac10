"""Property tests for the three dialect codecs (openai, anthropic, gemini).

For IR generated within what a dialect can carry, `decode(encode(ir))` keeps the meaning. The comparison is on a
normal form that forgets only what the dialect documents as lossy: consecutive same-role turns are merged, tool
results open their user turn, adjacent texts are joined, system texts are joined, arguments are compared as parsed
JSON, and tool-call ids are compared through the dialect's id mapping (verbatim for OpenAI, `tool_id` for
Anthropic, positional for Gemini, which links results by name). The same holds for responses and for streams
(IR events -> encoder -> `SseSplitter` -> decoder of the same dialect).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yourouter.codecs import anthropic, gemini
from yourouter.codecs import openai as oa
from yourouter.codecs.sse import SseSplitter
from yourouter.ir.chat import (
    ChatRequest,
    ChatResponse,
    Choice,
    FinishReason,
    Image,
    Message,
    Part,
    Reasoning,
    ResponseFormat,
    StreamEvent,
    StreamFinish,
    StreamStart,
    Text,
    TextDelta,
    Thinking,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    UsageUpdate,
)
from yourouter.ir.usage import Usage

MODEL = "model-x"
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Dialect:
    name: str
    module: ModuleType
    temperature_max: float
    max_stops: int
    multi_choice: bool  # n / several choices
    ids: Callable[[str], str] | None  # None: positional (the dialect keeps no ids of its own)
    keeps_detail: bool = False
    keeps_strict: bool = False
    keeps_signature: bool = False  # ToolCall.signature and Gemini-marked thinking signatures
    keeps_reasoning_usage: bool = True
    thinking_in_responses: bool = True
    top_k: bool = True
    seed_and_penalties: bool = True
    json_mode: bool = True
    images_in_results: bool = False

    def encode(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = self.module.encode_request(request, MODEL)
        return json.loads(json.dumps(body))  # only what survives the wire

    def decode(self, body: dict[str, Any]) -> ChatRequest:
        if self.name == "gemini":
            return gemini.decode_request(body, MODEL, False)
        decoded: ChatRequest = self.module.decode_request(body)
        return decoded

    def __str__(self) -> str:
        return self.name


OPENAI = Dialect("openai", oa, 2.0, 4, True, ids=lambda value: value, keeps_detail=True, keeps_strict=True,
                 thinking_in_responses=False, top_k=False)
ANTHROPIC = Dialect("anthropic", anthropic, 1.0, 4, False, ids=anthropic.messages.tool_id,
                    keeps_reasoning_usage=False, seed_and_penalties=False, json_mode=False, images_in_results=True)
GEMINI = Dialect("gemini", gemini, 2.0, 5, True, ids=None, keeps_signature=True)
DIALECTS = [OPENAI, ANTHROPIC, GEMINI]
by_name = pytest.mark.parametrize("dialect", DIALECTS, ids=str)


# Strategies -----------------------------------------------------------------------------------------------------

texts = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,11}", fullmatch=True)
json_scalars = (st.none() | st.booleans() | st.integers(-10**9, 10**9)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=4)
signatures = st.binary(min_size=1, max_size=40).map(lambda b: base64.b64encode(b).decode())
images = st.builds(lambda data, media: Image(data=base64.b64encode(data).decode(), media_type=media),
                   st.binary(min_size=1, max_size=12), st.sampled_from(["image/png", "image/jpeg", "image/gif",
                                                                       "image/webp"]))
schemas = st.none() | st.dictionaries(names, st.sampled_from([{"type": "string"}, {"type": "integer"}]),
                                      max_size=3).map(lambda props: {"type": "object", "properties": props})


response_formats = st.just(ResponseFormat("json_object")) | st.builds(
    lambda schema, name, strict: ResponseFormat("json_schema", schema, name, strict),
    schemas.filter(lambda schema: schema is not None), st.none() | names, st.none() | st.booleans())


def _arguments(value: dict[str, Any], compact: bool) -> str:
    return json.dumps(value, separators=(",", ":") if compact else None)


@st.composite
def tools(draw: st.DrawFn, dialect: Dialect) -> tuple[Tool, ...]:
    tool_names = draw(st.lists(names, max_size=3, unique=True))
    return tuple(Tool(name, draw(st.none() | texts), draw(schemas),
                      draw(st.none() | st.booleans()) if dialect.keeps_strict else None) for name in tool_names)


@st.composite
def requests(draw: st.DrawFn, dialect: Dialect) -> ChatRequest:
    tool_list = draw(tools(dialect))
    seen_ids: set[str] = set()

    def new_id() -> str:
        while True:
            value = draw(st.from_regex(r"(call_|toolu_)?[A-Za-z0-9.:-]{4,12}", fullmatch=True))
            if value not in seen_ids:
                seen_ids.add(value)
                return value

    def image() -> Image:
        picked = draw(images)
        if dialect.keeps_detail and draw(st.booleans()):
            return Image(data=picked.data, media_type=picked.media_type, detail=draw(st.sampled_from(["low", "high"])))
        return picked

    messages: list[Message] = []
    pending: list[ToolCall] = []
    for _ in range(draw(st.integers(1, 4))):
        results: list[Part] = []
        for call in pending:
            if draw(st.booleans()):
                content: tuple[Text, ...] = (Text(_arguments(draw(json_objects), draw(st.booleans()))),)
            else:
                content = tuple(draw(st.lists(texts.map(Text), max_size=2)))
            if dialect.images_in_results and draw(st.booleans()):
                content += (image(),)  # type: ignore[assignment]
            results.append(ToolResult(call.id, content, name=call.name if dialect.ids is None else None,
                                      is_error=draw(st.booleans())))
        extra = [Text(t) if isinstance(t, str) else image()
                 for t in draw(st.lists(texts | st.just(None), min_size=0 if results else 1, max_size=3))]
        user = results + extra
        cut = draw(st.integers(0, len(user))) if draw(st.booleans()) else 0
        for chunk in (user[:cut], user[cut:]):  # sometimes two consecutive user messages
            if chunk:
                messages.append(Message("user", tuple(chunk)))
        said = [Text(t) for t in draw(st.lists(texts, max_size=2))]
        pending = [ToolCall(new_id(), draw(st.sampled_from(tool_list)).name,
                            _arguments(draw(json_objects), draw(st.booleans())),
                            signature=draw(st.none() | signatures) if dialect.keeps_signature else None)
                   for _ in range(draw(st.integers(0, 3) if tool_list else st.just(0)))]
        messages.append(Message("assistant", tuple(said + pending) or (Text("ok"),)))
    if pending and draw(st.booleans()):
        messages.append(Message("user", tuple(ToolResult(c.id, (Text("done"),), name=c.name if dialect.ids is None
                                                         else None) for c in pending)))
    choice = None
    if tool_list and draw(st.booleans()):
        mode = draw(st.sampled_from(["auto", "required", "none", "tool"]))
        choice = ToolChoice(mode, draw(st.sampled_from(tool_list)).name if mode == "tool" else None)  # type: ignore
    return ChatRequest(
        model=MODEL, messages=tuple(messages), system=tuple(Text(t) for t in draw(st.lists(texts, max_size=2))),
        tools=tool_list, tool_choice=choice, max_tokens=draw(st.none() | st.integers(1, 100_000)),
        temperature=draw(st.none() | st.floats(0, dialect.temperature_max)),
        stop=tuple(draw(st.lists(texts, max_size=dialect.max_stops, unique=True))),
        n=draw(st.none() | st.integers(1, 4)) if dialect.multi_choice else None,
        top_p=draw(st.none() | st.floats(0, 1)), top_k=draw(st.none() | st.integers(1, 100)) if dialect.top_k else None,
        seed=draw(st.none() | st.integers(0, 2**31)) if dialect.seed_and_penalties else None,
        presence_penalty=draw(st.none() | st.floats(-2, 2)) if dialect.seed_and_penalties else None,
        frequency_penalty=draw(st.none() | st.floats(-2, 2)) if dialect.seed_and_penalties else None,
        response_format=draw(st.none() | response_formats) if dialect.json_mode else None)


# Normal forms -----------------------------------------------------------------------------------------------------

class Labels:
    """Tool-call ids as the dialect can keep them: mapped (OpenAI, Anthropic) or by position (Gemini)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.by_id: dict[str, str] = {}

    def call(self, call_id: str) -> str:
        if self.dialect.ids is not None:
            return self.dialect.ids(call_id)
        self.by_id[call_id] = f"#{len(self.by_id)}"
        return self.by_id[call_id]

    def result(self, call_id: str) -> str:
        if self.dialect.ids is not None:
            return self.dialect.ids(call_id)
        return self.by_id.get(call_id, "?" + call_id)


def _result_meaning(part: ToolResult, dialect: Dialect) -> Any:
    text = "".join(item.text for item in part.content if isinstance(item, Text))
    if dialect is OPENAI:  # no is_error field: the gateway says it in the text
        return f"Error: {text}" if part.is_error else text
    if dialect is ANTHROPIC:
        images = [(item.media_type, item.data) for item in part.content if isinstance(item, Image)]
        return text, images, part.is_error
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict):  # Gemini: the response object the model sees
        return {"error": value} if part.is_error and "error" not in value else value
    return {"error": text} if part.is_error else {"output": text}


def _parts(parts: list[Part], dialect: Dialect, labels: Labels) -> list[Any]:
    out: list[Any] = []
    for part in parts:
        if isinstance(part, Text):
            if out and out[-1][0] == "text":
                out[-1] = ("text", out[-1][1] + part.text)
            elif part.text:
                out.append(("text", part.text))
        elif isinstance(part, Image):
            out.append(("image", part.media_type, part.data, part.detail if dialect.keeps_detail else None))
        elif isinstance(part, ToolCall):
            out.append(("call", labels.call(part.id), part.name, json.loads(part.arguments or "{}"),
                        part.signature if dialect.keeps_signature else None))
        elif isinstance(part, ToolResult):
            out.append(("result", labels.result(part.call_id), _result_meaning(part, dialect),
                        part.name if dialect.ids is None else None))
        elif isinstance(part, Thinking):
            if dialect.thinking_in_responses:
                signature = part.signature or None
                if dialect is GEMINI and not (signature or "").startswith("gemini:"):
                    signature = None
                out.append(("thinking", part.text, signature))
        else:
            out.append(("other", part))
    return out


def normal_request(request: ChatRequest, dialect: Dialect) -> dict[str, Any]:
    turns: list[tuple[str, list[Part]]] = []
    for message in request.messages:
        if turns and turns[-1][0] == message.role:
            turns[-1][1].extend(message.parts)
        else:
            turns.append((message.role, list(message.parts)))
    labels = Labels(dialect)
    messages = []
    for role, parts in turns:
        if role == "user":
            parts.sort(key=lambda part: 0 if isinstance(part, ToolResult) else 1)
        normal = _parts(parts, dialect, labels)
        if normal:
            messages.append((role, normal))
    default_schema = {"type": "object", "properties": {}} if dialect is ANTHROPIC else None
    max_tokens = request.max_tokens
    if dialect is ANTHROPIC and max_tokens is None:
        max_tokens = anthropic.default_max_tokens(MODEL)
    return {
        "system": "\n\n".join(part.text for part in request.system if part.text),
        "messages": messages,
        "tools": [(t.name, t.description or None, t.parameters or default_schema,
                   t.strict if dialect.keeps_strict else None) for t in request.tools],
        "tool_choice": request.tool_choice, "max_tokens": max_tokens, "temperature": request.temperature,
        "stop": request.stop, "n": request.n, "top_p": request.top_p, "top_k": request.top_k, "seed": request.seed,
        "penalties": (request.presence_penalty, request.frequency_penalty),
        "response_format": _format_meaning(request.response_format, dialect),
    }


def _format_meaning(fmt: ResponseFormat | None, dialect: Dialect) -> Any:
    if fmt is None or fmt.type == "text":
        return None
    if dialect is OPENAI and fmt.type == "json_schema":
        return fmt.type, fmt.schema, fmt.name or "response", fmt.strict
    return fmt.type, fmt.schema  # Gemini has no schema name nor `strict`


# Requests -------------------------------------------------------------------------------------------------------

@by_name
@SETTINGS
@given(data=st.data())
def test_request_round_trip_keeps_the_meaning(dialect: Dialect, data: st.DataObject) -> None:
    request = data.draw(requests(dialect))
    decoded = dialect.decode(dialect.encode(request))
    assert normal_request(decoded, dialect) == normal_request(request, dialect)


# Responses --------------------------------------------------------------------------------------------------------

@st.composite
def usages(draw: st.DrawFn) -> Usage:
    prompt, completion = draw(st.integers(0, 10**6)), draw(st.integers(0, 10**6))
    return Usage(prompt, completion, draw(st.integers(0, prompt)), draw(st.integers(0, completion)))


@st.composite
def responses(draw: st.DrawFn, dialect: Dialect) -> ChatResponse:
    choices = []
    for index in range(draw(st.integers(1, 3)) if dialect.multi_choice else 1):
        parts: list[Part] = []
        if dialect.thinking_in_responses and draw(st.booleans()):
            signed = draw(st.none() | signatures)
            prefix = "gemini:" if dialect is GEMINI else ""
            parts.append(Thinking(draw(texts), prefix + signed if signed else None))
        parts += [Text(t) for t in draw(st.lists(texts, max_size=2))]
        calls = [ToolCall(draw(st.from_regex(r"(call_|toolu_)[A-Za-z0-9]{8,24}", fullmatch=True)), draw(names),
                          _arguments(draw(json_objects), True),
                          signature=draw(st.none() | signatures) if dialect.keeps_signature else None)
                 for n in range(draw(st.integers(0, 2)))]
        reasons: list[FinishReason] = ["tool_calls", "length"] if calls else ["stop", "length", "content_filter"]
        reason = draw(st.sampled_from(reasons))
        stop_sequence = draw(st.none() | texts) if dialect is ANTHROPIC and reason == "stop" else None
        choices.append(Choice(index, tuple(parts + calls), reason, stop_sequence))
    return ChatResponse(id=draw(st.from_regex(r"[A-Za-z0-9]{1,16}", fullmatch=True)), model=draw(names),
                        choices=tuple(choices), usage=draw(st.none() | usages()))


def _response_id(value: str, dialect: Dialect) -> str:
    if dialect is OPENAI:
        return oa.chat.completion_id(value)
    return anthropic.messages.message_id(value) if dialect is ANTHROPIC else value


def normal_response(response: ChatResponse, dialect: Dialect) -> dict[str, Any]:
    usage = response.usage
    if usage is None and dialect is not OPENAI:
        usage = Usage()  # always reported
    if usage is not None and not dialect.keeps_reasoning_usage:
        usage = Usage(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
    choices = []
    for choice in response.choices:
        choices.append((choice.index, _parts(list(choice.parts), dialect, Labels(dialect)), choice.finish_reason,
                        choice.stop_sequence))
    return {"id": _response_id(response.id, dialect), "model": response.model, "choices": choices, "usage": usage}


@by_name
@SETTINGS
@given(data=st.data())
def test_response_round_trip_keeps_the_meaning(dialect: Dialect, data: st.DataObject) -> None:
    response = data.draw(responses(dialect))
    request = ChatRequest(model=MODEL, messages=(), reasoning=Reasoning(include_thoughts=True))
    body = json.loads(json.dumps(dialect.module.encode_response(response, request)))
    assert normal_response(dialect.module.decode_response(body), dialect) == normal_response(response, dialect)


_WIRE_FINISH = {
    "openai": ("choices", "finish_reason", {"stop", "length", "tool_calls", "content_filter", "function_call"}),
    "anthropic": (None, "stop_reason", {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn",
                                        "refusal"}),
    "gemini": ("candidates", "finishReason", {"STOP", "MAX_TOKENS", "SAFETY", "OTHER"}),
}


@pytest.mark.parametrize(("dialect", "reason"), [
    pytest.param(dialect, reason, id=f"{dialect}-{reason}")
    for dialect in DIALECTS for reason in ("stop", "length", "tool_calls", "content_filter", "error")])
def test_encoded_finish_reasons_are_wire_values(dialect: Dialect, reason: FinishReason) -> None:
    response = ChatResponse("r1", MODEL, (Choice(0, (Text("x"),), reason),))
    body = dialect.module.encode_response(response, ChatRequest(model=MODEL, messages=()))
    where, key, allowed = _WIRE_FINISH[dialect.name]
    assert (body[where][0] if where else body)[key] in allowed


# Streams ----------------------------------------------------------------------------------------------------------

@st.composite
def streams(draw: st.DrawFn, dialect: Dialect) -> list[StreamEvent]:
    events: list[StreamEvent] = [StreamStart(draw(st.from_regex(r"[A-Za-z0-9]{1,12}", fullmatch=True)), MODEL)]
    for choice in range(draw(st.integers(1, 2)) if dialect.multi_choice else 1):
        calls = 0
        for is_text in draw(st.lists(st.booleans(), min_size=1, max_size=5)):
            if is_text:
                events += [TextDelta(t, choice=choice) for t in draw(st.lists(texts, min_size=1, max_size=3))]
                continue
            arguments = _arguments(draw(json_objects), draw(st.booleans()))
            cuts = sorted(draw(st.lists(st.integers(0, len(arguments)), max_size=3)))
            pieces = [arguments[a:b] for a, b in zip([0, *cuts], [*cuts, len(arguments)], strict=True)]
            events.append(ToolCallStart(calls, f"call_{choice}_{calls}", draw(names), choice=choice))
            events += [ToolCallDelta(calls, piece, choice=choice) for piece in pieces]
            calls += 1
        reasons: list[FinishReason] = ["tool_calls", "length"] if calls else ["stop", "length", "content_filter"]
        events.append(StreamFinish(draw(st.sampled_from(reasons)), choice=choice))
    events.append(UsageUpdate(draw(usages())))
    return events


def _meaning(events: list[StreamEvent], dialect: Dialect) -> dict[str, Any]:
    text: dict[int, str] = {}
    calls: dict[int, dict[int, list[str]]] = {}
    finish: dict[int, str] = {}
    usage = None
    for event in events:
        if isinstance(event, TextDelta):
            text[event.choice] = text.get(event.choice, "") + event.text
        elif isinstance(event, ToolCallStart):
            calls.setdefault(event.choice, {})[event.index] = [event.name, ""]
        elif isinstance(event, ToolCallDelta):
            calls[event.choice][event.index][1] += event.arguments
        elif isinstance(event, StreamFinish):
            finish[event.choice] = event.reason
        elif isinstance(event, UsageUpdate):
            usage = event.usage
    if usage is not None and not dialect.keeps_reasoning_usage:
        usage = Usage(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
    return {"text": text, "finish": finish, "usage": usage,
            "calls": {c: [(name, json.loads(args)) for _, (name, args) in sorted(by_index.items())]
                      for c, by_index in calls.items()}}


@by_name
@SETTINGS
@given(data=st.data())
def test_stream_round_trip_keeps_text_calls_finish_and_usage(dialect: Dialect, data: st.DataObject) -> None:
    events = data.draw(streams(dialect))
    encoder = dialect.module.stream_encoder(ChatRequest(model=MODEL, messages=(), stream=True, include_usage=True))
    raw = b"".join(encoder.encode(event) for event in events) + encoder.close()
    splitter, decoder, decoded, position = SseSplitter(), dialect.module.stream_decoder(), [], 0
    for size in data.draw(st.lists(st.integers(1, 64), max_size=20)):  # any chunking of the bytes
        for event in splitter.feed(raw[position:position + size]):
            decoded += decoder.feed(event)
        position += size
    for event in splitter.feed(raw[position:]):
        decoded += decoder.feed(event)
    assert splitter.close() == b""
    decoded += decoder.close()
    assert _meaning(decoded, dialect) == _meaning(events, dialect)
