"""The Gemini codec: golden requests, responses, streams and errors, and the tool-call id / signature scheme."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from yourouter.codecs import anthropic, gemini
from yourouter.codecs import openai as oa
from yourouter.codecs.common import UNTRANSLATABLE
from yourouter.codecs.sse import SseSplitter
from yourouter.ir.chat import (
    ChatRequest,
    ChatResponse,
    Choice,
    Document,
    Image,
    Message,
    Reasoning,
    ResponseFormat,
    StreamError,
    StreamEvent,
    StreamFinish,
    StreamStart,
    Text,
    TextDelta,
    Thinking,
    ThinkingDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    Unknown,
    UsageUpdate,
)
from yourouter.ir.errors import ErrorKind, GatewayError
from yourouter.ir.usage import Usage

MODEL = "gemini-2.5-flash"
PNG = "iVBORw0KGgo="
SIG = "CiQBVKhc7l5mzkoZSRQfFeCS44vjuGk3o7tG+/rA=="  # standard base64, canonical padding
SAFE_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def _request(*messages: Message, **fields: Any) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=messages, **fields)


def _user(*parts: Any) -> Message:
    return Message("user", tuple(parts))


def _assistant(*parts: Any) -> Message:
    return Message("assistant", tuple(parts))


# Requests: decode -----------------------------------------------------------------------------------------------

def test_decode_request_roles_system_media_and_config() -> None:
    payload = {
        "systemInstruction": {"role": "system", "parts": [{"text": "Be brief."}, {"text": "Use metric."}]},
        "contents": [
            {"parts": [{"text": "Describe"}, {"inlineData": {"mimeType": "image/png", "data": PNG}},
                       {"inline_data": {"mime_type": "application/pdf", "data": "JVBERi0="}},
                       {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://b/cat.jpg"}}]},
            {"role": "model", "parts": [{"text": "A cat."}]},
            {"role": "user", "parts": [{"text": "Thanks"}]},
        ],
        "generation_config": {"temperature": 1.5, "topP": 0.9, "top_k": 40.0, "candidateCount": 2,
                              "maxOutputTokens": 256, "stopSequences": ["END"], "seed": 7, "presencePenalty": 0.5,
                              "frequencyPenalty": 0.25, "responseLogprobs": True},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    }
    ir = gemini.decode_request(payload, MODEL, stream=True)
    assert ir.model == MODEL and ir.stream and ir.include_usage
    assert ir.system == (Text("Be brief."), Text("Use metric."))
    assert ir.messages == (
        _user(Text("Describe"), Image(data=PNG, media_type="image/png"),
              Document("application/pdf", data="JVBERi0="), Image(url="gs://b/cat.jpg", media_type="image/jpeg")),
        _assistant(Text("A cat.")), _user(Text("Thanks")))
    assert (ir.temperature, ir.top_p, ir.top_k, ir.n, ir.max_tokens, ir.stop, ir.seed) == (
        1.5, 0.9, 40, 2, 256, ("END",), 7)
    assert (ir.presence_penalty, ir.frequency_penalty) == (0.5, 0.25)
    assert ir.extra["safetySettings"][0]["threshold"] == "BLOCK_NONE"
    assert ir.extra["generationConfig"] == {"responseLogprobs": True}
    assert UNTRANSLATABLE not in ir.extra


def test_decode_request_tools_tool_config_json_mode_and_thinking() -> None:
    payload = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "tools": [{"functionDeclarations": [
            {"name": "lookup", "description": "Find", "parameters": {
                "type": "OBJECT", "properties": {"q": {"type": "STRING", "nullable": True},
                                                 "tags": {"type": "ARRAY", "items": {"type": "STRING"}}},
                "required": ["q"], "propertyOrdering": ["q", "tags"]}},
            {"name": "raw", "parametersJsonSchema": {"type": "object", "additionalProperties": False}},
            {"name": "bare"}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["lookup"]}},
        "generationConfig": {"responseMimeType": "application/json",
                             "responseSchema": {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}},
                             "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True}},
    }
    ir = gemini.decode_request(payload, MODEL, stream=False)
    assert ir.tools == (
        Tool("lookup", "Find", {"type": "object", "required": ["q"], "properties": {
            "q": {"type": ["string", "null"]}, "tags": {"type": "array", "items": {"type": "string"}}}}),
        Tool("raw", None, {"type": "object", "additionalProperties": False}),
        Tool("bare"))
    assert ir.tool_choice == ToolChoice("tool", "lookup")
    assert ir.response_format == ResponseFormat("json_schema", schema={"type": "object",
                                                                       "properties": {"n": {"type": "integer"}}})
    assert ir.reasoning == Reasoning(budget_tokens=2048, include_thoughts=True, enabled=True)


@pytest.mark.parametrize(("config", "choice"), [
    ({"mode": "AUTO"}, ToolChoice("auto")),
    ({"mode": "any"}, ToolChoice("required")),
    ({"mode": "NONE"}, ToolChoice("none")),
    ({"mode": "VALIDATED"}, ToolChoice("auto")),
    ({}, None),
])
def test_decode_tool_config_modes(config: dict[str, Any], choice: ToolChoice | None) -> None:
    payload = {"contents": [{"parts": [{"text": "x"}]}], "toolConfig": {"functionCallingConfig": config}}
    assert gemini.decode_request(payload, MODEL, False).tool_choice == choice


def test_decode_json_object_mode_and_thinking_off() -> None:
    payload = {"contents": [{"parts": [{"text": "x"}]}],
               "generationConfig": {"responseMimeType": "application/json", "thinkingConfig": {"thinkingBudget": 0}}}
    ir = gemini.decode_request(payload, MODEL, False)
    assert ir.response_format == ResponseFormat("json_object")
    assert ir.reasoning is not None and not ir.reasoning.enabled


def test_decode_marks_what_no_other_dialect_can_carry() -> None:
    payload = {"contents": [{"role": "model", "parts": [{"executableCode": {"language": "PYTHON", "code": "1"}}]},
                            {"role": "user", "parts": [{"text": "ok"}]}],
               "tools": [{"googleSearch": {}}], "cachedContent": "cachedContents/abc"}
    ir = gemini.decode_request(payload, MODEL, False)
    assert ir.messages[0].parts == (Unknown("gemini", "executableCode",
                                            {"executableCode": {"language": "PYTHON", "code": "1"}}),)
    assert ir.extra[UNTRANSLATABLE] == ["cachedContent", "contents[0].parts[0] (executableCode)",
                                        "tools[0].googleSearch"]
    # the same dialect can emit the unknown part again
    assert gemini.encode_request(ir, MODEL)["contents"][0]["parts"] == [
        {"executableCode": {"language": "PYTHON", "code": "1"}}]


@pytest.mark.parametrize(("payload", "param"), [
    ({}, "contents"),
    ({"contents": []}, "contents"),
    ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "contents[0].role"),
    ({"contents": [{"parts": [{"text": 3}]}]}, "contents[0].parts[0].text"),
    ({"contents": [{"parts": "hi"}]}, "contents[0].parts"),
    ({"contents": [{"parts": [{"functionCall": {"args": {}}}]}]}, "contents[0].parts[0].functionCall.name"),
    ({"contents": [{"parts": [{"functionCall": {"name": "f", "args": [1]}}]}]},
     "contents[0].parts[0].functionCall.args"),
    ({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png"}}]}]}, "contents[0].parts[0].inlineData.data"),
    ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": "hot"}},
     "generationConfig.temperature"),
    ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": 1.5}},
     "generationConfig.maxOutputTokens"),
    ({"contents": [{"parts": [{"text": "x"}]}], "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
     "toolConfig.functionCallingConfig.mode"),
    ({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [{"description": "d"}]}]},
     "tools[0].functionDeclarations[0].name"),
])
def test_decode_validation_errors_name_the_field(payload: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        gemini.decode_request(payload, MODEL, False)
    assert caught.value.status == 400 and caught.value.kind is ErrorKind.INVALID_REQUEST
    assert caught.value.param == param and param in caught.value.message


# Tool calls: ids, links and thought signatures -------------------------------------------------------------------

def test_function_calls_get_positional_ids_and_results_link_by_name_in_order() -> None:
    payload = {"contents": [
        {"role": "user", "parts": [{"text": "Paris and London?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                                    {"functionCall": {"name": "weather", "args": {"city": "London"}}},
                                    {"functionCall": {"name": "time", "args": {}}}]},
        {"role": "function", "parts": [{"functionResponse": {"name": "time", "response": {"now": "12:00"}}},
                                       {"functionResponse": {"name": "weather", "response": {"c": 20}}},
                                       {"functionResponse": {"name": "weather", "response": {"c": 15}}}]},
    ]}
    ir = gemini.decode_request(payload, MODEL, False)
    calls = ir.messages[1].parts
    assert [(c.id, c.name, c.arguments) for c in calls if isinstance(c, ToolCall)] == [
        ("call_1_0", "weather", '{"city":"Paris"}'), ("call_1_1", "weather", '{"city":"London"}'),
        ("call_1_2", "time", "{}")]
    assert ir.messages[2] == _user(
        ToolResult("call_1_2", (Text('{"now":"12:00"}'),), name="time"),
        ToolResult("call_1_0", (Text('{"c":20}'),), name="weather"),
        ToolResult("call_1_1", (Text('{"c":15}'),), name="weather"))


def test_gemini_ids_link_results_and_come_back_only_to_gemini() -> None:
    payload = {"contents": [
        {"role": "user", "parts": [{"text": "go"}]},
        {"role": "model", "parts": [{"functionCall": {"id": "fc-9", "name": "f", "args": {"a": 1}}},
                                    {"functionCall": {"id": "fc-8", "name": "f", "args": {"a": 2}}}]},
        {"role": "user", "parts": [{"functionResponse": {"id": "fc-8", "name": "f", "response": {"r": 2}}},
                                   {"functionResponse": {"id": "unknown", "name": "f", "response": {"r": 1}}}]},
    ]}
    ir = gemini.decode_request(payload, MODEL, False)
    first, second = (p for p in ir.messages[1].parts if isinstance(p, ToolCall))
    results = [p for p in ir.messages[2].parts if isinstance(p, ToolResult)]
    assert [r.call_id for r in results] == [second.id, first.id]  # by id, then the unanswered call of that name
    assert gemini.parse_call_id(first.id) == ("fc-9", None)
    body = gemini.encode_request(ir, MODEL)
    assert [p["functionCall"]["id"] for p in body["contents"][1]["parts"]] == ["fc-9", "fc-8"]
    assert [p["functionResponse"]["id"] for p in body["contents"][2]["parts"]] == ["fc-8", "fc-9"]
    # other dialects' ids never reach Gemini
    foreign = _request(_user(Text("go")), _assistant(ToolCall("toolu_01A", "f", "{}")),
                       _user(ToolResult("toolu_01A", (Text("ok"),))))
    encoded = gemini.encode_request(foreign, MODEL)["contents"]
    assert encoded[1]["parts"] == [{"functionCall": {"name": "f", "args": {}}}]
    assert encoded[2]["parts"] == [{"functionResponse": {"name": "f", "response": {"output": "ok"}}}]


@pytest.mark.parametrize("signature", [SIG, "Q2lJQl+/w==", "abc", "not base64 at all / ü", "AAAA"])
def test_call_id_embeds_the_signature_reversibly(signature: str) -> None:
    for gemini_id in (None, "fc-1", "ü/x"):
        made = gemini.call_id("7", 3, gemini_id, signature)
        assert SAFE_ID.match(made) and made.startswith("call_7_3")
        assert gemini.parse_call_id(made) == (gemini_id, signature)
        assert anthropic.messages.tool_id(made) == made  # Anthropic accepts it unchanged


@given(st.text(min_size=1, max_size=200), st.one_of(st.none(), st.text(min_size=1, max_size=30)),
       st.from_regex(r"[A-Za-z0-9]{1,10}", fullmatch=True), st.integers(0, 99))
def test_call_id_round_trips_any_signature_and_id(signature: str, gemini_id: str | None, tag: str, n: int) -> None:
    made = gemini.call_id(tag, n, gemini_id, signature)
    assert SAFE_ID.match(made)
    assert gemini.parse_call_id(made) == (gemini_id, signature)


@pytest.mark.parametrize("other", ["call_abc123", "toolu_01XYZ", "call_0", "call_1_2", "x_1_2_sAAAA"])
def test_other_ids_carry_nothing(other: str) -> None:
    assert gemini.parse_call_id(other) == (None, None)


def test_thought_signature_survives_an_openai_client_round_trip() -> None:
    """Gemini answers with a signed call; an OpenAI client echoes the id; the signature goes back to Gemini."""
    upstream = {"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIG}]},
        "finishReason": "STOP", "index": 0}], "responseId": "resp-42", "modelVersion": MODEL}
    answer = gemini.decode_response(upstream)
    call = answer.choices[0].parts[0]
    assert isinstance(call, ToolCall) and call.signature == SIG and answer.choices[0].finish_reason == "tool_calls"
    openai_body = oa.encode_response(answer, _request())
    tool_call = openai_body["choices"][0]["message"]["tool_calls"][0]
    assert SAFE_ID.match(tool_call["id"]) and openai_body["choices"][0]["finish_reason"] == "tool_calls"
    history = oa.decode_request({"model": "m", "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [tool_call]},
        {"role": "tool", "tool_call_id": tool_call["id"], "content": "sunny, 21C"}]})
    contents = gemini.encode_request(history, MODEL)["contents"]
    assert contents[1] == {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIG}]}
    assert contents[2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"output": "sunny, 21C"}}}]}


def test_thought_signature_survives_an_anthropic_client_round_trip() -> None:
    answer = gemini.decode_response({"candidates": [{"content": {"parts": [
        {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "x+y/z"}]}, "finishReason": "STOP"}],
        "responseId": "r"})
    block = anthropic.encode_response(answer, _request())["content"][0]
    history = anthropic.decode_request({"model": "c", "max_tokens": 10, "messages": [
        {"role": "user", "content": "go"}, {"role": "assistant", "content": [block]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": "done",
                                      "is_error": True}]}]})
    contents = gemini.encode_request(history, MODEL)["contents"]
    assert contents[1]["parts"][0]["thoughtSignature"] == "x+y/z"
    assert contents[2]["parts"][0] == {"functionResponse": {"name": "f", "response": {"error": "done"}}}


# Requests: encode ---------------------------------------------------------------------------------------------------

def test_encode_request_turns_system_images_and_merging() -> None:
    ir = _request(
        _user(Text("Look"), Image(data=PNG, media_type="image/png")), _user(Text("closely")),
        _assistant(Text("")), _assistant(Text("A cat"), Thinking("unsigned thought")),
        _user(Document("application/pdf", data="JVBERi0="), Image(url="gs://b/x.png")),
        system=(Text("Be brief."), Text("")))
    body = gemini.encode_request(ir, MODEL)
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Look"}, {"inlineData": {"mimeType": "image/png", "data": PNG}},
                                   {"text": "closely"}]},
        {"role": "model", "parts": [{"text": "A cat"}]},
        {"role": "user", "parts": [{"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
                                   {"fileData": {"fileUri": "gs://b/x.png", "mimeType": "image/png"}}]}]
    assert "generationConfig" not in body and "tools" not in body


def test_http_images_must_be_inlined_first() -> None:
    web = Image(url="https://example.com/cat.png")
    assert gemini.needs_inline(web)
    assert not gemini.needs_inline(Image(url="gs://bucket/cat.png"))
    assert not gemini.needs_inline(Image(data=PNG, media_type="image/png"))
    assert not gemini.needs_inline(Image(url="data:image/png;base64," + PNG))
    with pytest.raises(GatewayError) as caught:
        gemini.encode_request(_request(_user(web)), MODEL)
    assert caught.value.status == 400 and "example.com" in caught.value.message
    data_url = gemini.encode_request(_request(_user(Image(url="data:image/png;base64," + PNG))), MODEL)
    assert data_url["contents"][0]["parts"] == [{"inlineData": {"mimeType": "image/png", "data": PNG}}]


def test_encode_request_tools_choice_and_generation_config() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string", "const": "x"}}, "$schema": "x"}
    ir = _request(_user(Text("hi")), tools=(Tool("lookup", "Find", schema, strict=True), Tool("ping")),
                  tool_choice=ToolChoice("tool", "lookup"), parallel_tool_calls=False, n=2, max_tokens=99,
                  temperature=1.7, top_p=0.5, top_k=3, stop=("a", "b"), seed=1, presence_penalty=0.1,
                  frequency_penalty=0.2, response_format=ResponseFormat("json_schema", {"type": "object"}, "r"),
                  reasoning=Reasoning(budget_tokens=4096, include_thoughts=True))
    body = gemini.encode_request(ir, MODEL)
    assert body["tools"] == [{"functionDeclarations": [
        {"name": "lookup", "description": "Find", "parametersJsonSchema": schema}, {"name": "ping"}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["lookup"]}}
    assert body["generationConfig"] == {
        "temperature": 1.7, "topP": 0.5, "topK": 3, "candidateCount": 2, "maxOutputTokens": 99, "seed": 1,
        "presencePenalty": 0.1, "frequencyPenalty": 0.2, "stopSequences": ["a", "b"],
        "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"},
        "thinkingConfig": {"thinkingBudget": 4096, "includeThoughts": True}}


@pytest.mark.parametrize(("choice", "calling"), [
    (ToolChoice("auto"), {"mode": "AUTO"}), (ToolChoice("required"), {"mode": "ANY"}),
    (ToolChoice("none"), {"mode": "NONE"})])
def test_encode_tool_choice(choice: ToolChoice, calling: dict[str, Any]) -> None:
    body = gemini.encode_request(_request(_user(Text("x")), tools=(Tool("f"),), tool_choice=choice), MODEL)
    assert body["toolConfig"] == {"functionCallingConfig": calling}


@pytest.mark.parametrize(("reasoning", "model", "thinking"), [
    (Reasoning(effort="low"), MODEL, {"thinkingBudget": 1024, "includeThoughts": True}),
    (Reasoning(effort="high", include_thoughts=False), "gemini-3-pro-preview", {"thinkingLevel": "HIGH"}),
    (Reasoning(enabled=False), MODEL, {"thinkingBudget": 0}),
])
def test_encode_reasoning(reasoning: Reasoning, model: str, thinking: dict[str, Any]) -> None:
    body = gemini.encode_request(_request(_user(Text("x")), reasoning=reasoning), model)
    assert body["generationConfig"]["thinkingConfig"] == thinking


def test_encode_json_object_mode_and_stop_limit() -> None:
    body = gemini.encode_request(_request(_user(Text("x")), response_format=ResponseFormat("json_object")), MODEL)
    assert body["generationConfig"] == {"responseMimeType": "application/json"}
    with pytest.raises(GatewayError) as caught:
        gemini.encode_request(_request(_user(Text("x")), stop=tuple("abcdef")), MODEL)
    assert caught.value.param == "stop"


def test_encode_tool_results() -> None:
    ir = _request(
        _user(Text("go")),
        _assistant(ToolCall("c1", "a", '{"x": 1}'), ToolCall("c2", "b", "not json"), ToolCall("c3", "c", "[1]")),
        _user(Text("and then?"), ToolResult("c1", (Text('{"ok": true}'),)),
              ToolResult("c2", (Text("plain"),), is_error=True),
              ToolResult("c3", (Text('{"why": 1}'), Image(data=PNG, media_type="image/png")), is_error=True),
              ToolResult("zz", (Text("x"),), name="named")))
    contents = gemini.encode_request(ir, MODEL)["contents"]
    assert contents[1]["parts"] == [{"functionCall": {"name": "a", "args": {"x": 1}}},
                                    {"functionCall": {"name": "b", "args": {"_raw_arguments": "not json"}}},
                                    {"functionCall": {"name": "c", "args": {"_value": [1]}}}]
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "a", "response": {"ok": True}}},
        {"functionResponse": {"name": "b", "response": {"error": "plain"}}},
        {"functionResponse": {"name": "c", "response": {"error": {"why": 1}}}},
        {"functionResponse": {"name": "named", "response": {"output": "x"}}},
        {"text": "and then?"}, {"inlineData": {"mimeType": "image/png", "data": PNG}}]
    with pytest.raises(GatewayError) as caught:
        gemini.encode_request(_request(_user(ToolResult("lost", (Text("x"),)))), MODEL)
    assert "lost" in caught.value.message


def test_other_dialects_content_is_refused_by_name() -> None:
    with pytest.raises(GatewayError) as caught:
        gemini.encode_request(_request(_user(Unknown("anthropic", "server_tool_use", {}))), MODEL)
    assert "server_tool_use" in caught.value.message


# Responses ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("reason", "with_call", "expected"), [
    ("STOP", False, "stop"), ("STOP", True, "tool_calls"), ("MAX_TOKENS", True, "length"),
    ("SAFETY", False, "content_filter"), ("RECITATION", False, "content_filter"),
    ("PROHIBITED_CONTENT", False, "content_filter"), ("OTHER", False, "stop"),
    ("MALFORMED_FUNCTION_CALL", False, "stop"), (None, True, "tool_calls"), (None, False, "stop")])
def test_finish_reason_derivation(reason: str | None, with_call: bool, expected: str) -> None:
    parts: list[dict[str, Any]] = [{"text": "hi"}]
    if with_call:
        parts.append({"functionCall": {"name": "f", "args": {}}})
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
    if reason:
        candidate["finishReason"] = reason
    assert gemini.decode_response({"candidates": [candidate]}).choices[0].finish_reason == expected


def test_decode_response_parts_usage_and_candidates() -> None:
    payload = {"candidates": [
        {"content": {"role": "model", "parts": [{"text": "Pondering", "thought": True, "thoughtSignature": "c2ln"},
                                                {"text": "Answer", "thoughtSignature": "dHh0"}]},
         "finishReason": "STOP", "index": 0, "safetyRatings": []},
        {"content": {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": [1]}}}]},
         "finishReason": "STOP", "index": 1}],
        "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 12, "thoughtsTokenCount": 30,
                          "cachedContentTokenCount": 8, "totalTokenCount": 82},
        "modelVersion": MODEL, "responseId": "r-1"}
    answer = gemini.decode_response(payload)
    assert (answer.id, answer.model) == ("r-1", MODEL)
    assert answer.usage == Usage(prompt_tokens=40, completion_tokens=42, cached_tokens=8, reasoning_tokens=30)
    assert answer.choices[0] == Choice(0, (Thinking("Pondering", "gemini:c2ln"), Thinking("", "gemini:dHh0"),
                                           Text("Answer")), "stop")
    second = answer.choices[1]
    assert second.finish_reason == "tool_calls" and second.parts == (ToolCall("call_r1c1_0", "f", '{"a":[1]}'),)
    # back to a Gemini client that asked for thoughts: the signatures sit where Gemini put them
    body = gemini.encode_response(answer, _request(reasoning=Reasoning(include_thoughts=True)))
    assert body["candidates"][0]["content"]["parts"] == [
        {"text": "Pondering", "thought": True, "thoughtSignature": "c2ln"},
        {"text": "Answer", "thoughtSignature": "dHh0"}]
    # one that did not gets no thought text, but every signature
    quiet = gemini.encode_response(answer, _request())
    assert quiet["candidates"][0]["content"]["parts"] == [
        {"text": "", "thought": True, "thoughtSignature": "c2ln"}, {"text": "Answer", "thoughtSignature": "dHh0"}]
    assert body["usageMetadata"] == {"promptTokenCount": 40, "candidatesTokenCount": 12, "thoughtsTokenCount": 30,
                                     "cachedContentTokenCount": 8, "totalTokenCount": 82}


def test_blocked_prompt_is_one_empty_content_filter_choice() -> None:
    payload = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}}
    answer = gemini.decode_response(payload)
    assert answer.choices == (Choice(0, (), "content_filter"),)
    assert answer.usage == Usage(prompt_tokens=5)
    assert oa.encode_response(answer, _request())["choices"][0]["finish_reason"] == "content_filter"


def test_encode_response_shape() -> None:
    answer = ChatResponse(id="chatcmpl-1", model="gpt-x", choices=(
        Choice(0, (Text("Hi "), Text("there"), ToolCall("call_abc", "f", '{"a":1}')), "tool_calls"),
        Choice(1, (), "content_filter"), Choice(2, (), "length")),
        usage=Usage(prompt_tokens=10, completion_tokens=7, reasoning_tokens=3))
    body = gemini.encode_response(answer, _request())
    assert body == {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "Hi "}, {"text": "there"},
                                                    {"functionCall": {"name": "f", "args": {"a": 1}}}]},
             "finishReason": "STOP", "index": 0},
            {"finishReason": "SAFETY", "index": 1},
            {"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "MAX_TOKENS", "index": 2}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 3,
                          "totalTokenCount": 17},
        "modelVersion": "gpt-x", "responseId": "chatcmpl-1"}


def test_foreign_thinking_signatures_are_not_sent_to_gemini() -> None:
    ir = _request(_user(Text("q")), _assistant(Thinking("anthropic thought", "EqQBCkgIARABGAIi"), Text("a")),
                  _user(Text("q2")))
    assert gemini.encode_request(ir, MODEL)["contents"][1]["parts"] == [{"text": "a"}]
    own = _request(_user(Text("q")), _assistant(Thinking("mine", "gemini:c2ln"), Thinking("", "gemini:dHh0")))
    assert gemini.encode_request(own, MODEL)["contents"][1]["parts"] == [
        {"text": "mine", "thought": True, "thoughtSignature": "c2ln"},
        {"text": "", "thought": True, "thoughtSignature": "dHh0"}]


# Streams --------------------------------------------------------------------------------------------------------

def _decode_stream(raw: bytes, cut: int = 7) -> list[StreamEvent]:
    splitter, decoder, events = SseSplitter(), gemini.stream_decoder(), []
    for start in range(0, len(raw), cut):
        for event in splitter.feed(raw[start:start + cut]):
            events += decoder.feed(event)
    rest = splitter.close()
    if rest.strip():
        events += decoder.feed(rest)
    return events + decoder.close()


UPSTREAM = (
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"Let me think","thought":true}]},"index":0}],'
    b'"usageMetadata":{"promptTokenCount":4,"totalTokenCount":4},"modelVersion":"gemini-2.5-flash","responseId":"r1"}'
    b'\r\n\r\n'
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"Hel","thoughtSignature":"c2ln"}]},'
    b'"index":0}],"responseId":"r1"}\r\n\r\n'
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"lo"},{"functionCall":{"name":"f",'
    b'"args":{"a":1}},"thoughtSignature":"AAAA"}]},"index":0}],"responseId":"r1"}\r\n\r\n'
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":""}]},"finishReason":"STOP","index":0}],'
    b'"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"thoughtsTokenCount":3,"totalTokenCount":9},'
    b'"responseId":"r1"}\r\n\r\n')


def test_stream_decoder_on_crlf_chunks() -> None:
    events = _decode_stream(UPSTREAM)
    assert events == [
        StreamStart("r1", MODEL, Usage(prompt_tokens=4)),
        ThinkingDelta("Let me think"), UsageUpdate(Usage(prompt_tokens=4)),
        ThinkingDelta(signature="gemini:c2ln"), TextDelta("Hel"),
        TextDelta("lo"), ToolCallStart(0, gemini.call_id("r1", 0, None, "AAAA"), "f", signature="AAAA"),
        ToolCallDelta(0, '{"a":1}'),
        StreamFinish("tool_calls"), UsageUpdate(Usage(prompt_tokens=4, completion_tokens=5, reasoning_tokens=3))]


def test_stream_decoder_errors_and_blocked_prompt() -> None:
    decoder = gemini.stream_decoder()
    blocked = decoder.feed(b'data: {"promptFeedback":{"blockReason":"SAFETY"},"responseId":"b"}\n\n')
    assert blocked == [StreamStart("b", ""), StreamFinish("content_filter")]
    error = b'data: {"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}\n\n'
    assert decoder.feed(error) == [StreamError(429, "Quota exceeded")]
    assert decoder.feed(b'{"error": {"code": 500, "message": "boom"}}\n\n') == [StreamError(500, "boom")]
    assert decoder.feed(b"data: {not json\n\n")[0].status == 500
    assert decoder.feed(b": keepalive\n\n") == []


STREAM = [StreamStart("up-1", "gpt-x", Usage(prompt_tokens=9)), TextDelta("Hel"), TextDelta("lo"),
          ThinkingDelta("hmm"), ThinkingDelta(signature="anthropic-sig"),
          ToolCallStart(0, "call_a", "f"), ToolCallDelta(0, '{"a"'), ToolCallDelta(0, ": 1}"),
          ToolCallStart(1, gemini.call_id("t", 0, "g-1", SIG), "g"), ToolCallDelta(1, ""),
          StreamFinish("tool_calls"), UsageUpdate(Usage(prompt_tokens=9, completion_tokens=4))]


def _chunks(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(event[6:]) for event in SseSplitter().feed(raw)]


THOUGHTFUL = _request(reasoning=Reasoning(budget_tokens=1024, include_thoughts=True))


def test_stream_encoder_buffers_calls_and_ends_with_finish_and_usage() -> None:
    encoder = gemini.stream_encoder(THOUGHTFUL)
    raw = b"".join(encoder.encode(e) for e in STREAM) + encoder.close()
    assert raw.endswith(b"\r\n\r\n") and raw.count(b"data: ") == 6
    chunks = _chunks(raw)
    assert all(c["responseId"] == "up-1" and c["modelVersion"] == "gpt-x" for c in chunks)
    parts = [c["candidates"][0]["content"]["parts"] for c in chunks[:5]]
    assert parts == [[{"text": "Hel"}], [{"text": "lo"}], [{"text": "hmm", "thought": True}],
                     [{"functionCall": {"name": "f", "args": {"a": 1}}}],
                     [{"functionCall": {"name": "g", "args": {}, "id": "g-1"}, "thoughtSignature": SIG}]]
    last = chunks[-1]
    assert last["candidates"] == [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP",
                                   "index": 0}]
    assert last["usageMetadata"] == {"promptTokenCount": 9, "candidatesTokenCount": 4, "totalTokenCount": 13}
    assert "usageMetadata" not in chunks[0]
    # and our own decoder reads it back
    events = _decode_stream(raw)
    assert [e for e in events if isinstance(e, StreamFinish)] == [StreamFinish("tool_calls")]
    assert [(e.name, e.signature) for e in events if isinstance(e, ToolCallStart)] == [("f", None), ("g", SIG)]


def test_stream_encoder_sends_thought_text_only_when_asked() -> None:
    encoder = gemini.stream_encoder(_request())
    raw = encoder.encode(ThinkingDelta("secret")) + encoder.encode(ThinkingDelta("more", "gemini:c2ln"))
    raw += encoder.encode(TextDelta("Hi"))
    chunks = _chunks(raw + encoder.close())
    assert chunks[0]["candidates"][0]["content"]["parts"] == [{"text": "Hi", "thoughtSignature": "c2ln"}]


def test_stream_encoder_json_array_mode() -> None:
    encoder = gemini.GeminiStreamEncoder(THOUGHTFUL, sse=False)
    raw = b"".join(encoder.encode(e) for e in STREAM) + encoder.close()
    assert raw.startswith(b"[{") and raw.endswith(b"}]") and raw.count(b",\r\n{") == 5
    chunks = json.loads(raw)
    assert len(chunks) == 6 and chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert gemini.usage_of_response(raw) == Usage(prompt_tokens=9, completion_tokens=4)
    empty = gemini.GeminiStreamEncoder(_request(), sse=False)
    assert empty.close() == b"[]" and empty.close() == b""


def test_stream_encoder_error_is_the_last_chunk() -> None:
    for sse in (True, False):
        encoder = gemini.GeminiStreamEncoder(_request(), sse=sse)
        raw = encoder.encode(TextDelta("partial")) + encoder.encode(StreamError(503, "overloaded"))
        raw += encoder.encode(TextDelta("more")) + encoder.encode(StreamFinish("stop")) + encoder.close()
        chunks = json.loads(raw) if not sse else _chunks(raw)
        assert chunks[-1] == {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}
        assert len(chunks) == 2


def test_stream_encoder_signature_waits_for_its_text_and_content_filter_has_no_content() -> None:
    encoder = gemini.stream_encoder(_request())
    raw = encoder.encode(ThinkingDelta(signature="gemini:c2ln")) + encoder.encode(TextDelta("Hi"))
    raw += encoder.encode(ThinkingDelta(signature="gemini:dHh0")) + encoder.encode(StreamFinish("content_filter"))
    chunks = _chunks(raw + encoder.close())
    assert chunks[0]["candidates"][0]["content"]["parts"] == [{"text": "Hi", "thoughtSignature": "c2ln"}]
    assert chunks[1]["candidates"][0]["content"]["parts"] == [{"text": "", "thought": True,
                                                               "thoughtSignature": "dHh0"}]
    assert chunks[2]["candidates"] == [{"finishReason": "SAFETY", "index": 0}]


def test_stream_encoder_multiple_choices() -> None:
    encoder = gemini.stream_encoder(_request())
    events = [TextDelta("a", choice=0), TextDelta("b", choice=1), StreamFinish("stop", choice=0),
              StreamFinish("length", choice=1)]
    chunks = _chunks(b"".join(encoder.encode(e) for e in events) + encoder.close())
    assert [c["index"] for c in chunks[1]["candidates"]] == [1]
    assert [(c["index"], c["finishReason"]) for c in chunks[-1]["candidates"]] == [(0, "STOP"), (1, "MAX_TOKENS")]


# Errors and passthrough metering --------------------------------------------------------------------------------

@pytest.mark.parametrize(("error", "code", "status"), [
    (GatewayError(400, ErrorKind.INVALID_REQUEST, "bad"), 400, "INVALID_ARGUMENT"),
    (GatewayError(401, ErrorKind.AUTHENTICATION, "who"), 401, "UNAUTHENTICATED"),
    (GatewayError(401, ErrorKind.PERMISSION, "not yours"), 401, "PERMISSION_DENIED"),
    (GatewayError(404, ErrorKind.NOT_FOUND, "none"), 404, "NOT_FOUND"),
    (GatewayError(413, ErrorKind.PAYLOAD_TOO_LARGE, "big"), 413, "INVALID_ARGUMENT"),
    (GatewayError(429, ErrorKind.RATE_LIMIT, "slow"), 429, "RESOURCE_EXHAUSTED"),
    (GatewayError(500, ErrorKind.UPSTREAM, "boom"), 500, "INTERNAL"),
    (GatewayError(529, ErrorKind.UPSTREAM, "busy"), 503, "UNAVAILABLE"),
    (GatewayError(503, ErrorKind.GATEWAY, "down"), 503, "UNAVAILABLE"),
    (GatewayError(504, ErrorKind.TIMEOUT, "late"), 504, "DEADLINE_EXCEEDED"),
])
def test_error_body(error: GatewayError, code: int, status: str) -> None:
    body = json.loads(gemini.error_body(error))
    assert body == {"error": {"code": code, "message": error.message, "status": status}}


def test_error_details_stream_event_and_upstream_message() -> None:
    error = GatewayError(400, ErrorKind.INVALID_REQUEST, "bad key", code="invalid_api_key")
    assert json.loads(gemini.error_body(error))["error"]["details"] == [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "INVALID_API_KEY", "domain": "yourouter"}]
    event = gemini.stream_error_event(error)
    assert event.startswith(b"data: {") and event.endswith(b"\r\n\r\n")
    assert gemini.upstream_error_message(b'{"error":{"code":400,"message":"API key not valid"}}') == \
        "API key not valid"
    assert gemini.upstream_error_message(b'[{"error":{"code":429,"message":"quota"}}]') == "quota"
    assert gemini.upstream_error_message(b"<html>") is None


def test_usage_of_response_and_stream_tap() -> None:
    body = b'{"candidates":[],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":2,"totalTokenCount":5}}'
    assert gemini.usage_of_response(body) == Usage(prompt_tokens=3, completion_tokens=2)
    assert gemini.usage_of_response(b"nope") is None
    tap = gemini.stream_tap(strip_usage=True)
    events = SseSplitter().feed(UPSTREAM)
    assert [tap.event(e) for e in events] == events  # forwarded unchanged
    assert tap.usage == Usage(prompt_tokens=4, completion_tokens=5, reasoning_tokens=3)
    assert tap.event(b'data: {"usageMetadata": broken\n\n') == b'data: {"usageMetadata": broken\n\n'


def test_gemini_thought_signatures_are_not_replayed_to_anthropic() -> None:
    history = gemini.decode_request({"contents": [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "model", "parts": [{"text": "Hello", "thoughtSignature": "c2ln"}]},
        {"role": "user", "parts": [{"text": "again"}]}]}, MODEL, False)
    blocks = anthropic.encode_request(history, "claude-sonnet-4-5")["messages"][1]["content"]
    assert blocks == [{"type": "text", "text": "Hello"}]
