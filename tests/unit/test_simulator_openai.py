"""The OpenAI simulator over a real socket, driven by the official SDK and by raw HTTP."""

from __future__ import annotations

import http.client
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from yourouter.simulators.background import serve_in_thread
from yourouter.simulators.openai import SimulatorSettings, create_app
from yourouter.simulators.schema_fill import example_from_schema

API_KEY = "sk-sim-test"
USER: Any = [{"role": "user", "content": "hi there"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
                "detailed": {"type": "boolean"},
            },
            "required": ["city"],
        },
    },
}
TIME_TOOL: Any = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}},
}
WEATHER_ARGS = {"city": "Paris", "unit": "celsius", "days": 1, "detailed": True}


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def sse_data(self) -> list[str]:
        """The `data:` payloads of an SSE body, asserting OpenAI framing (one data line per event, no event:)."""
        text = self.body.decode()
        assert text.endswith("\n\n")
        events = text[:-2].split("\n\n")
        assert all(event.startswith("data: ") and "\n" not in event for event in events)
        return [event[len("data: ") :] for event in events]


@dataclass(frozen=True)
class Server:
    url: str

    def request(self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None) -> Response:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return Response(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())

    def chat(self, **body: Any) -> Response:
        return self.request("POST", "/v1/chat/completions", {"model": "gpt-4o", "messages": USER, **body})

    def client(self, **options: Any) -> OpenAI:
        options = {"api_key": API_KEY, "max_retries": 0, "timeout": 10, **options}
        return OpenAI(base_url=f"{self.url}/v1", **options)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    app = create_app(SimulatorSettings(seed=7))
    with serve_in_thread(app) as url:
        yield Server(url)


@pytest.fixture(autouse=True)
def _clean(server: Server) -> None:
    server.request("DELETE", "/_sim/faults")
    server.request("DELETE", "/_sim/requests")


@pytest.fixture
def client(server: Server) -> OpenAI:
    return server.client()


def assert_error(response: Response, status: int, error_type: str, code: str | None = None) -> dict[str, Any]:
    assert response.status == status, response.body
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == error_type
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return dict(error)


# --- chat, non-streaming -------------------------------------------------------------------------------------------


def test_chat_completion_wire_shape(server: Server) -> None:
    response = server.chat()
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    assert set(body) == {"id", "object", "created", "model", "system_fingerprint", "choices", "usage"}
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion" and body["model"] == "gpt-4o"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello from the simulator. You said: hi there",
                "refusal": None,
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] == math.ceil(len(body["choices"][0]["message"]["content"]) / 4)
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
    assert set(usage["completion_tokens_details"]) == {
        "reasoning_tokens",
        "audio_tokens",
        "accepted_prediction_tokens",
        "rejected_prediction_tokens",
    }


def test_sdk_chat_answers_any_model(client: OpenAI) -> None:
    completion = client.chat.completions.create(model="my-custom-model", messages=USER)
    assert completion.model == "my-custom-model"
    assert completion.choices[0].message.content == "Hello from the simulator. You said: hi there"


def test_sdk_chat_with_image_parts(client: OpenAI) -> None:
    content: Any = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    completion = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": content}])
    assert completion.choices[0].message.content == (
        "Hello from the simulator. You said: What is in these? (and 2 images)"
    )
    assert completion.usage is not None and completion.usage.prompt_tokens > 2 * 85


def test_max_tokens_truncates_with_length(client: OpenAI) -> None:
    completions = [
        client.chat.completions.create(model="gpt-4o", messages=USER, max_tokens=3),
        client.chat.completions.create(model="gpt-4o", messages=USER, max_completion_tokens=3),
    ]
    for completion in completions:
        choice = completion.choices[0]
        assert choice.finish_reason == "length"
        assert choice.message.content == "Hello from t"
        assert completion.usage is not None and completion.usage.completion_tokens == 3


def test_stop_sequence_cuts_reply(client: OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o", messages=USER, stop=["You said", "zzz"])
    assert completion.choices[0].message.content == "Hello from the simulator. "
    assert completion.choices[0].finish_reason == "stop"


def test_n_returns_distinct_choices(client: OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o", messages=USER, n=2)
    assert [choice.index for choice in completion.choices] == [0, 1]
    assert completion.choices[0].message.content != completion.choices[1].message.content


def test_reply_directive_overrides_text(client: OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "[sim:reply=Bonjour tout le monde] hi"}]
    completion = client.chat.completions.create(model="gpt-4o", messages=messages)
    assert completion.choices[0].message.content == "Bonjour tout le monde"


def test_json_object_response_format_replies_json(client: OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o", messages=USER, response_format={"type": "json_object"})
    assert json.loads(completion.choices[0].message.content or "") == {
        "reply": "Hello from the simulator. You said: hi there"
    }


# --- chat, streaming -----------------------------------------------------------------------------------------------


def test_stream_without_usage_raw_sse(server: Server) -> None:
    response = server.chat(stream=True)
    assert response.headers["content-type"].startswith("text/event-stream")
    data = server.chat(stream=True).sse_data()
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    assert all("usage" not in chunk for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    pieces = [chunk["choices"][0]["delta"]["content"] for chunk in chunks[1:-1]]
    assert len(pieces) >= 3
    assert "".join(pieces) == "Hello from the simulator. You said: hi there"
    assert chunks[-1]["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]


def test_stream_with_include_usage(server: Server, client: OpenAI) -> None:
    data = server.chat(stream=True, stream_options={"include_usage": True}).sse_data()
    chunks = [json.loads(item) for item in data[:-1]]
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == chunks[-1]["usage"]["prompt_tokens"] + 11
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"

    sdk_chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    assert sdk_chunks[-1].usage is not None and sdk_chunks[-1].usage.completion_tokens == 11
    text = "".join(c.choices[0].delta.content or "" for c in sdk_chunks if c.choices)
    assert text == "Hello from the simulator. You said: hi there"


def test_stream_n_2_interleaves_choices(client: OpenAI) -> None:
    texts = {0: "", 1: ""}
    finishes = {}
    for chunk in client.chat.completions.create(model="gpt-4o", messages=USER, n=2, stream=True):
        choice = chunk.choices[0]
        texts[choice.index] += choice.delta.content or ""
        if choice.finish_reason:
            finishes[choice.index] = choice.finish_reason
    assert texts[0] == "Hello from the simulator. You said: hi there"
    assert texts[1] == texts[0] + " (choice 2)"
    assert finishes == {0: "stop", 1: "stop"}


def test_stream_pacing_and_latency() -> None:
    settings = SimulatorSettings(latency_ms=150, chunk_delay_ms=40)
    with serve_in_thread(create_app(settings)) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
        started = time.monotonic()
        arrivals = []
        for _ in client.chat.completions.create(model="gpt-4o", messages=USER, stream=True):
            arrivals.append(time.monotonic())
    assert arrivals[0] - started >= 0.14
    # events are separate writes: their arrival spreads over the chunk delays
    assert arrivals[-1] - arrivals[0] >= 0.04 * (len(arrivals) - 1) * 0.8


# --- tools ---------------------------------------------------------------------------------------------------------


def test_tool_call_non_stream(client: OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o", messages=USER, tools=[WEATHER_TOOL, TIME_TOOL])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGS


def test_named_tool_choice_and_none(client: OpenAI) -> None:
    tools: Any = [WEATHER_TOOL, TIME_TOOL]
    named = client.chat.completions.create(
        model="gpt-4o", messages=USER, tools=tools, tool_choice={"type": "function", "function": {"name": "get_time"}}
    )
    calls = named.choices[0].message.tool_calls
    assert calls is not None and isinstance(calls[0], ChatCompletionMessageFunctionToolCall)
    assert calls[0].function.name == "get_time"
    assert json.loads(calls[0].function.arguments) == {"zone": "example"}
    plain = client.chat.completions.create(model="gpt-4o", messages=USER, tools=tools, tool_choice="none")
    assert plain.choices[0].finish_reason == "stop" and plain.choices[0].message.tool_calls is None


def test_tool_call_stream_fragments(client: OpenAI) -> None:
    names, ids, fragments, finish = [], [], [], None
    stream = client.chat.completions.create(model="gpt-4o", messages=USER, tools=[WEATHER_TOOL], stream=True)
    for chunk in stream:
        choice = chunk.choices[0]
        for call in choice.delta.tool_calls or []:
            assert call.index == 0
            if call.id:
                ids.append(call.id)
            if call.function and call.function.name:
                names.append(call.function.name)
            if call.function and call.function.arguments:
                fragments.append(call.function.arguments)
        finish = choice.finish_reason or finish
    assert names == ["get_weather"] and len(ids) == 1 and ids[0].startswith("call_")
    assert len(fragments) >= 2
    assert json.loads("".join(fragments)) == WEATHER_ARGS
    assert finish == "tool_calls"


def test_parallel_tool_calls_directive_streams_indices(server: Server) -> None:
    messages = [{"role": "user", "content": "[sim:tool_calls=2] weather and time"}]
    data = server.chat(messages=messages, tools=[WEATHER_TOOL, TIME_TOOL], stream=True).sse_data()
    headers = [
        call
        for item in data[:-1]
        for choice in json.loads(item)["choices"]
        for call in choice["delta"].get("tool_calls") or []
        if "id" in call
    ]
    assert [(call["index"], call["function"]["name"]) for call in headers] == [(0, "get_weather"), (1, "get_time")]
    assert all(call["function"]["arguments"] == "" and call["type"] == "function" for call in headers)


def test_tool_result_round_trip(client: OpenAI) -> None:
    first = client.chat.completions.create(model="gpt-4o", messages=USER, tools=[WEATHER_TOOL])
    assert first.choices[0].message.tool_calls is not None
    call = first.choices[0].message.tool_calls[0]
    messages: Any = [
        *USER,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
    ]
    second = client.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == 'Based on the tool results: get_weather returned {"temp_c": 21}.'


# --- embeddings and models ------------------------------------------------------------------------------------------


def test_embeddings_float(server: Server) -> None:
    body = {"model": "text-embedding-3-small", "input": ["alpha", "beta"], "encoding_format": "float"}
    first = server.request("POST", "/v1/embeddings", body).json()
    again = server.request("POST", "/embeddings", body).json()
    assert first == again
    assert first["object"] == "list" and first["model"] == "text-embedding-3-small"
    assert [item["index"] for item in first["data"]] == [0, 1]
    vectors = [item["embedding"] for item in first["data"]]
    assert all(len(vector) == 16 for vector in vectors) and vectors[0] != vectors[1]
    assert all(abs(math.fsum(v * v for v in vector) - 1) < 1e-5 for vector in vectors)
    assert first["usage"] == {"prompt_tokens": 3, "total_tokens": 3}  # ceil(5/4) + ceil(4/4)
    tokens = server.request("POST", "/v1/embeddings", {"model": "m", "input": [[1, 2, 3], [4]]}).json()
    assert tokens["usage"]["prompt_tokens"] == 4 and len(tokens["data"]) == 2


def test_embeddings_sdk_default_base64_with_dimensions(server: Server, client: OpenAI) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input="alpha", dimensions=8)
    sent = server.request("GET", "/_sim/requests").json()[-1]["body"]
    assert sent["encoding_format"] == "base64" and sent["dimensions"] == 8
    raw = server.request(
        "POST", "/v1/embeddings", {"model": "x", "input": "alpha", "dimensions": 8, "encoding_format": "float"}
    ).json()
    assert result.data[0].embedding == raw["data"][0]["embedding"]
    assert len(result.data[0].embedding) == 8


def test_models_list_retrieve_and_404(client: OpenAI) -> None:
    models = client.models.list()
    ids = [model.id for model in models.data]
    assert "gpt-4o" in ids and "text-embedding-3-small" in ids
    assert all(model.owned_by == "simulator" and model.object == "model" for model in models.data)
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"


# --- auth and validation --------------------------------------------------------------------------------------------


def test_api_key_required_when_configured() -> None:
    with serve_in_thread(create_app(SimulatorSettings(api_key=API_KEY))) as url:
        good = OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0)
        assert good.chat.completions.create(model="gpt-4o", messages=USER).choices[0].message.content
        bad = OpenAI(base_url=f"{url}/v1", api_key="sk-wrong-key-123", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as caught:
            bad.models.list()
        assert caught.value.code == "invalid_api_key"
        missing = Server(url).request("POST", "/v1/embeddings", {"model": "m"})
        assert_error(missing, 401, "invalid_request_error", "invalid_api_key")
        health = urllib.request.urlopen(f"{url}/health", timeout=5)
        assert health.status == 200 and json.loads(health.read()) == {"status": "ok"}


BAD_REQUESTS: list[tuple[str, dict[str, Any], str | None]] = [
    ("missing model", {"model": None}, None),
    ("empty messages", {"messages": []}, "messages"),
    ("messages not array", {"messages": "hi"}, "messages"),
    ("bad role", {"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
    ("stream_options without stream", {"stream_options": {"include_usage": True}}, "stream_options"),
    ("tool without call", {"messages": [*USER, {"role": "tool", "tool_call_id": "call_x", "content": "1"}]}, None),
    (
        "unanswered tool call",
        {
            "messages": [
                *USER,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "user", "content": "and?"},
            ]
        },
        "messages",
    ),
    ("assistant null content", {"messages": [{"role": "assistant", "content": None}]}, "messages[0].content"),
    ("n zero", {"n": 0}, "n"),
    ("temperature", {"temperature": 2.5}, "temperature"),
    ("top_p", {"top_p": -0.1}, "top_p"),
    ("bad tool name", {"tools": [{"type": "function", "function": {"name": "bad name"}}]}, None),
    (
        "unknown tool_choice",
        {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "x"}}},
        "tool_choice",
    ),
    ("tool_choice without tools", {"tool_choice": "auto"}, "tool_choice"),
    (
        "ftp image",
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}]}
            ]
        },
        "messages[0].content[0].image_url.url",
    ),
    (
        "unknown part",
        {"messages": [{"role": "user", "content": [{"type": "video", "video": {}}]}]},
        "messages[0].content[0].type",
    ),
    ("too many stops", {"stop": ["a", "b", "c", "d", "e"]}, "stop"),
]


@pytest.mark.parametrize(("overrides", "param"), [case[1:] for case in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_invalid_chat_requests_get_400(server: Server, overrides: dict[str, Any], param: str | None) -> None:
    body = {"model": "gpt-4o", "messages": USER, **overrides}
    body = {key: value for key, value in body.items() if value is not None}
    error = assert_error(server.request("POST", "/v1/chat/completions", body), 400, "invalid_request_error")
    if param is not None:
        assert error["param"] == param


def test_non_json_bodies_get_400(server: Server) -> None:
    for raw in (b"{not json", b"[1, 2]"):
        response = server.request("POST", "/v1/chat/completions", raw)
        assert_error(response, 400, "invalid_request_error")
    assert_error(server.request("POST", "/v1/embeddings", {"model": "m", "input": []}), 400, "invalid_request_error")
    dims = {"model": "text-embedding-ada-002", "input": "x", "dimensions": 8}
    assert_error(server.request("POST", "/v1/embeddings", dims), 400, "invalid_request_error")


def test_sdk_raises_bad_request(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER, stream_options={"include_usage": True})
    assert caught.value.param == "stream_options"


def test_unknown_path_and_wrong_method(server: Server) -> None:
    assert_error(server.request("POST", "/v1/completions/nope", {}), 404, "invalid_request_error")
    assert_error(server.request("GET", "/v1/chat/completions"), 405, "invalid_request_error")


# --- fault injection ------------------------------------------------------------------------------------------------


def test_control_endpoint_429_with_retry_after(server: Server, client: OpenAI) -> None:
    queued = server.request("POST", "/_sim/faults", {"kind": "status", "status": 429, "retry_after": 2, "count": 2})
    assert queued.status == 200 and queued.json()["queued"] == 2
    response = server.chat()
    assert response.headers["retry-after"] == "2"
    assert_error(response, 429, "requests", "rate_limit_exceeded")
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o", messages=USER)
    assert server.chat().status == 200  # the fault applied to exactly two requests


def test_fault_queue_can_be_listed_and_cleared(server: Server) -> None:
    server.request("POST", "/_sim/faults", {"kind": "status", "status": 503, "count": 3})
    assert server.request("GET", "/_sim/faults").json()[0]["remaining"] == 3
    server.request("DELETE", "/_sim/faults")
    assert server.request("GET", "/_sim/faults").json() == []
    assert server.chat().status == 200
    bad = server.request("POST", "/_sim/faults", {"kind": "explode"})
    assert_error(bad, 400, "invalid_request_error")


def test_status_directive_and_delay_directive(client: OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x [sim:status=503]"}])
    assert caught.value.status_code == 503
    started = time.monotonic()
    completion = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "slow [sim:delay_ms=300] please"}]
    )
    assert time.monotonic() - started >= 0.29
    assert completion.choices[0].message.content == "Hello from the simulator. You said: slow please"


def test_disconnect_drops_connection_without_response(server: Server, client: OpenAI) -> None:
    server.request("POST", "/_sim/faults", {"kind": "disconnect"})
    connection = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=5)
    connection.request("POST", "/v1/chat/completions", json.dumps({"model": "m", "messages": USER}))
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        connection.getresponse()
    connection.close()
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "[sim:disconnect]"}])


def test_midstream_disconnect_directive_and_fault(server: Server, client: OpenAI) -> None:
    received = []
    messages: Any = [{"role": "user", "content": "tell me [sim:midstream_disconnect=3]"}]
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="gpt-4o", messages=messages, stream=True):
            received.append(chunk)
    assert len(received) == 3
    server.request("POST", "/_sim/faults", {"kind": "midstream_disconnect", "after_events": 2})
    with pytest.raises(http.client.IncompleteRead):
        server.chat(stream=True)


def test_midstream_error_event_raises_api_error(client: OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "[sim:midstream_error=2]"}]
    with pytest.raises(openai.APIError) as caught:
        list(client.chat.completions.create(model="gpt-4o", messages=messages, stream=True))
    assert "server had an error" in caught.value.message


def test_timeout_fault_outlasts_client_timeout(server: Server) -> None:
    server.request("POST", "/_sim/faults", {"kind": "timeout", "delay_ms": 5000})
    with pytest.raises(openai.APITimeoutError):
        server.client(timeout=0.3).chat.completions.create(model="gpt-4o", messages=USER)
    assert server.chat().status == 200


def test_fail_rate_from_settings() -> None:
    with serve_in_thread(create_app(SimulatorSettings(fail_rate=1.0, fail_status=502))) as url:
        sim = Server(url)
        assert_error(sim.chat(), 502, "server_error")
        assert sim.request("GET", "/v1/models").status == 200  # only chat and embeddings fail


# --- request log ----------------------------------------------------------------------------------------------------


def test_request_log_records_what_arrived(server: Server, client: OpenAI) -> None:
    client.chat.completions.create(model="gpt-4o", messages=USER, stream=True, stream_options={"include_usage": True})
    server.request("POST", "/v1/chat/completions", b"not json")
    log = server.request("GET", "/_sim/requests").json()
    assert [(entry["method"], entry["path"]) for entry in log] == [("POST", "/v1/chat/completions")] * 2
    first = log[0]
    assert first["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert first["body"]["stream_options"] == {"include_usage": True} and first["body"]["messages"] == USER
    assert log[1]["body"] is None
    server.request("DELETE", "/_sim/requests")
    assert server.request("GET", "/_sim/requests").json() == []


def test_request_log_keeps_last_hundred(server: Server) -> None:
    for index in range(105):
        server.request("GET", f"/health?i={index}")
    log = server.request("GET", "/_sim/requests").json()
    assert len(log) == 100


# --- schema fill ----------------------------------------------------------------------------------------------------


def test_schema_fill_handles_refs_unions_and_bounds() -> None:
    schema = {
        "type": "object",
        "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number", "minimum": 5}}}},
        "properties": {
            "where": {"$ref": "#/$defs/Point"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer", "maximum": 0}]},
            "when": {"type": "string", "format": "date-time"},
            "kind": {"const": "fixed"},
            "nested": {"type": ["object", "null"], "properties": {"ok": {"type": "boolean"}}},
        },
    }
    assert example_from_schema(schema) == {
        "where": {"x": 5},
        "tags": ["example", "example"],
        "maybe": 0,
        "when": "2024-01-01T00:00:00Z",
        "kind": "fixed",
        "nested": {"ok": True},
    }
    assert example_from_schema(None) == {}
