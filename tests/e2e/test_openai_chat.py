"""Chat Completions through a running gateway, driven by the official `openai` SDK against the simulators."""

from __future__ import annotations

import base64
import json

import openai
import pytest

from tests.support import oaschema
from tests.support.gateway import STATIC_KEY, UPSTREAM_KEY, GatewayHandle

USER = [{"role": "user", "content": "Say hello"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
PNG_1PX = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")).decode()


@pytest.fixture(autouse=True)
def _spec() -> None:
    oaschema.require_spec()


def test_chat_non_stream_text(gateway: GatewayHandle) -> None:
    raw = gateway.client().chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
    completion = raw.parse()
    oaschema.validate(oaschema.CHAT_COMPLETION, json.loads(raw.content))
    assert completion.choices[0].message.content.endswith("You said: Say hello")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-yourouter-vendor"] == "openai"
    assert raw.headers["x-yourouter-provider"] == "sim-a"


def test_chat_image_parts_url_and_base64(gateway: GatewayHandle) -> None:
    content = [{"type": "text", "text": "What is in these images?"},
               {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
               {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1PX}"}}]
    completion = gateway.client().chat.completions.create(model="gpt-4o",
                                                          messages=[{"role": "user", "content": content}])
    assert "2 image" in completion.choices[0].message.content
    received = gateway.sim_requests("a")[-1]["body"]["messages"][0]["content"]
    assert received == content  # image parts reach the upstream unchanged


def test_every_client_field_reaches_upstream_unchanged_with_provider_key(gateway: GatewayHandle) -> None:
    client = gateway.client()
    client.chat.completions.create(model="gpt-4o", messages=USER, temperature=0.3, seed=7, logprobs=True,
                                   top_logprobs=2, user="u-1", metadata={"team": "x"},
                                   extra_body={"vendor_specific_field": {"a": [1, 2]}})
    seen = gateway.sim_requests("a")[-1]
    assert seen["body"]["vendor_specific_field"] == {"a": [1, 2]}
    assert seen["body"]["seed"] == 7 and seen["body"]["top_logprobs"] == 2 and seen["body"]["user"] == "u-1"
    assert seen["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert STATIC_KEY not in json.dumps(seen)  # the client's credentials never go upstream


def test_chat_tools_round_trip(gateway: GatewayHandle) -> None:
    client = gateway.client()
    first = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Weather?"}],
                                           tools=[WEATHER], tool_choice="auto")
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    second = client.chat.completions.create(model="gpt-4o", tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}])
    assert second.choices[0].finish_reason == "stop"
    assert "18C and sunny" in second.choices[0].message.content


def _raw_stream(gateway: GatewayHandle, body: dict) -> list[dict]:
    response = gateway.post("/v1/chat/completions", body)
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = response.body.decode().split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    return [json.loads(event.removeprefix("data: ")) for event in events[:-2]]


def test_stream_without_usage_hides_the_gateways_usage_chunk(gateway: GatewayHandle) -> None:
    chunks = _raw_stream(gateway, {"model": "gpt-4o", "messages": USER, "stream": True})
    for chunk in chunks:
        oaschema.validate(oaschema.CHAT_COMPLETION_CHUNK, chunk)
        assert "usage" not in chunk and chunk["choices"]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks).endswith("You said: Say hello")
    upstream_body = gateway.sim_requests("a")[-1]["body"]
    assert upstream_body["stream_options"] == {"include_usage": True}  # asked upstream, for metering


def test_stream_with_usage_keeps_it(gateway: GatewayHandle) -> None:
    chunks = _raw_stream(gateway, {"model": "gpt-4o", "messages": USER, "stream": True,
                                   "stream_options": {"include_usage": True}})
    for chunk in chunks:
        oaschema.validate(oaschema.CHAT_COMPLETION_CHUNK, chunk)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])


def test_stream_with_sdk_text_and_usage_row(gateway: GatewayHandle) -> None:
    stream = gateway.client().chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=USER,
                                                                        stream=True)
    request_id = stream.headers["x-request-id"]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream.parse() if chunk.choices)
    assert text.endswith("You said: Say hello")
    rows = gateway.usage_rows(request_id)
    assert len(rows) == 1
    row = rows[0]
    assert row["streamed"] and row["status"] == 200 and row["outcome"] == "ok"
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0  # usage read from the hidden usage chunk
    assert row["key_name"] == "static-all" and row["model"] == "gpt-4o-mini" and row["deployment"] == "sim-a"
    assert row["ttfb_ms"] is not None and row["latency_ms"] >= row["ttfb_ms"]


def test_stream_tool_call_arguments_accumulate(gateway: GatewayHandle) -> None:
    stream = gateway.client().chat.completions.create(model="gpt-4o", stream=True, tools=[WEATHER],
                                                      messages=[{"role": "user", "content": "Weather in Rome?"}])
    name, arguments, finish = "", "", None
    fragments = 0
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                name += call.function.name or ""
                arguments += call.function.arguments or ""
                fragments += 1
            finish = choice.finish_reason or finish
    assert name == "get_weather" and finish == "tool_calls" and fragments >= 3
    assert "city" in json.loads(arguments)


def test_upstream_disconnect_mid_stream_is_an_error_event(gateway: GatewayHandle) -> None:
    stream = gateway.client().chat.completions.create(
        model="gpt-4o", stream=True, messages=[{"role": "user", "content": "hi [sim:midstream_disconnect=2]"}])
    with pytest.raises(openai.APIError) as caught:
        for _ in stream:
            pass
    assert "mid-stream" in str(caught.value)
