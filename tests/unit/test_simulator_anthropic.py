"""The Anthropic simulator over a real socket, driven by the official SDK and by raw HTTP."""

from __future__ import annotations

import json
import math
import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import pytest
from anthropic import Anthropic
from anthropic.types import TextBlock, ThinkingBlock, ToolUseBlock

from yourouter.simulators._openai_chat import Directives, plan_reply
from yourouter.simulators.anthropic import SimulatorSettings, create_app
from yourouter.simulators.background import serve_in_thread

API_KEY = "sk-ant-sim-test"
MODEL = "claude-sonnet-4-20250514"
VERSION = {"anthropic-version": "2023-06-01"}
USER: Any = [{"role": "user", "content": "hi there"}]
HELLO = "Hello from the simulator. You said: hi there"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
BASE64_PNG = {"type": "base64", "media_type": "image/png", "data": PNG}
WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer"},
        },
        "required": ["city"],
    },
}
TIME_TOOL: Any = {"name": "get_time", "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}}}
WEATHER_ARGS = {"city": "Paris", "unit": "celsius", "days": 1}


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """(event, data) pairs of an SSE body, asserting Anthropic framing: `event:` then one `data:` line."""
        text = self.body.decode()
        assert text.endswith("\n\n") and "[DONE]" not in text
        pairs = []
        for raw in text[:-2].split("\n\n"):
            event_line, data_line = raw.split("\n")
            assert event_line.startswith("event: ") and data_line.startswith("data: ")
            name, data = event_line[len("event: ") :], json.loads(data_line[len("data: ") :])
            assert data["type"] == name
            pairs.append((name, data))
        return pairs


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

    def messages(self, headers: dict[str, str] | None = None, **body: Any) -> Response:
        payload = {"model": MODEL, "max_tokens": 256, "messages": USER, **body}
        return self.request("POST", "/v1/messages", payload, {**VERSION, **(headers or {})})

    def client(self, **options: Any) -> Anthropic:
        options = {"api_key": API_KEY, "max_retries": 0, "timeout": 10, **options}
        return Anthropic(base_url=self.url, **options)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve_in_thread(create_app(SimulatorSettings(seed=11))) as url:
        yield Server(url)


@pytest.fixture(autouse=True)
def _clean(server: Server) -> None:
    server.request("DELETE", "/_sim/faults")
    server.request("DELETE", "/_sim/requests")


@pytest.fixture
def client(server: Server) -> Anthropic:
    return server.client()


def assert_error(response: Response, status: int, error_type: str, message_start: str = "") -> str:
    assert response.status == status, response.body
    body = response.json()
    assert set(body) == {"type", "error", "request_id"} and body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert body["request_id"] == response.headers["request-id"]
    message: str = body["error"]["message"]
    assert message.startswith(message_start), message
    return message


def text_of(message: Any) -> str:
    return "".join(block.text for block in message.content if isinstance(block, TextBlock))


# --- messages, non-streaming ---------------------------------------------------------------------------------------


def test_message_wire_shape(server: Server) -> None:
    response = server.messages()
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["request-id"].startswith("req_011")
    body = response.json()
    assert set(body) == {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
    assert body["id"].startswith("msg_01") and body["type"] == "message" and body["role"] == "assistant"
    assert body["model"] == MODEL
    assert body["content"] == [{"type": "text", "text": HELLO}]
    assert body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
    usage = body["usage"]
    assert set(usage) == {"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"}
    assert usage["output_tokens"] == math.ceil(len(HELLO) / 4)
    assert usage["cache_creation_input_tokens"] == usage["cache_read_input_tokens"] == 0
    unprefixed = server.request("POST", "/messages", {"model": MODEL, "max_tokens": 16, "messages": USER}, VERSION)
    assert unprefixed.status == 200 and unprefixed.json()["content"] == [{"type": "text", "text": HELLO}]


def test_sdk_text_with_system_prompts(server: Server, client: Anthropic) -> None:
    plain = client.messages.create(model="any-model", max_tokens=256, messages=USER)
    assert text_of(plain) == HELLO and plain.model == "any-model"
    system_text = "You are a terse assistant who answers in one line."
    as_string = client.messages.create(model=MODEL, max_tokens=256, messages=USER, system=system_text)
    as_blocks = client.messages.create(
        model=MODEL, max_tokens=256, messages=USER, system=[{"type": "text", "text": system_text}]
    )
    assert text_of(as_string) == text_of(as_blocks) == HELLO
    assert as_string.usage.input_tokens == as_blocks.usage.input_tokens
    assert as_string.usage.input_tokens == plain.usage.input_tokens + math.ceil(len(system_text) / 4)
    logged = server.request("GET", "/_sim/requests").json()
    assert logged[1]["body"]["system"] == system_text
    assert logged[2]["body"]["system"] == [{"type": "text", "text": system_text}]


def test_sdk_images_base64_and_url(client: Anthropic) -> None:
    content: Any = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": BASE64_PNG},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    message = client.messages.create(model=MODEL, max_tokens=256, messages=[{"role": "user", "content": content}])
    assert text_of(message) == "Hello from the simulator. You said: What is in these? (and 2 images)"
    assert message.usage.input_tokens > 2 * 85
    one = client.messages.create(model=MODEL, max_tokens=256, messages=[{"role": "user", "content": content[:2]}])
    assert text_of(one).endswith("(and 1 image)")


def test_greeting_matches_openai_simulator(client: Anthropic) -> None:
    """Gateway tests assert one string across providers: both simulators must word the echo identically."""
    parts: Any = [
        {"type": "text", "text": "Describe [sim:delay_ms=0] these"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/b.png"}},
    ]
    openai_reply = plan_reply(
        {"model": "m", "messages": [{"role": "user", "content": parts}]}, Directives(), random.Random(0), 0
    )
    content: Any = [
        {"type": "text", "text": "Describe [sim:delay_ms=0] these"},
        *[{"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}] * 2,
    ]
    message = client.messages.create(model=MODEL, max_tokens=256, messages=[{"role": "user", "content": content}])
    assert text_of(message) == openai_reply.choices[0].content


def test_max_tokens_truncates(client: Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=3, messages=USER)
    assert text_of(message) == "Hello from t"
    assert message.stop_reason == "max_tokens" and message.stop_sequence is None
    assert message.usage.output_tokens == 3


def test_stop_sequences(client: Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=256, messages=USER, stop_sequences=["zzz", "You said"])
    assert text_of(message) == "Hello from the simulator. "
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "You said"
    unmatched = client.messages.create(model=MODEL, max_tokens=256, messages=USER, stop_sequences=["zzz"])
    assert unmatched.stop_reason == "end_turn" and unmatched.stop_sequence is None


def test_prefill_is_continued(server: Server, client: Anthropic) -> None:
    matching = client.messages.create(
        model=MODEL, max_tokens=256, messages=[*USER, {"role": "assistant", "content": "Hello from the"}]
    )
    assert text_of(matching) == " simulator. You said: hi there"
    other = client.messages.create(model=MODEL, max_tokens=256, messages=[*USER, {"role": "assistant", "content": "{"}])
    assert text_of(other) == " " + HELLO
    trailing = server.messages(messages=[*USER, {"role": "assistant", "content": "Sure, "}])
    assert_error(trailing, 400, "invalid_request_error", "messages: final assistant content cannot end with")


def test_consecutive_same_role_turns_are_merged(client: Anthropic) -> None:
    messages: Any = [{"role": "user", "content": "first"}, {"role": "user", "content": "second"}]
    message = client.messages.create(model=MODEL, max_tokens=256, messages=messages)
    assert text_of(message) == "Hello from the simulator. You said: first second"


def test_reply_directive(client: Anthropic) -> None:
    messages: Any = [{"role": "user", "content": "[sim:reply=Bonjour tout le monde] hi"}]
    message = client.messages.create(model=MODEL, max_tokens=256, messages=messages, tools=[WEATHER_TOOL])
    assert text_of(message) == "Bonjour tout le monde" and message.stop_reason == "end_turn"


# --- tools ---------------------------------------------------------------------------------------------------------


def test_tools_round_trip(client: Anthropic) -> None:
    first = client.messages.create(model=MODEL, max_tokens=256, messages=USER, tools=[WEATHER_TOOL, TIME_TOOL])
    assert first.stop_reason == "tool_use"
    assert [block.type for block in first.content] == ["text", "tool_use"]
    assert text_of(first) == "I'll use the get_weather tool."
    call = first.content[1]
    assert isinstance(call, ToolUseBlock)
    assert call.id.startswith("toolu_01") and call.name == "get_weather" and call.input == WEATHER_ARGS
    messages: Any = [
        *USER,
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": '{"temp_c": 21}'}]},
    ]
    second = client.messages.create(model=MODEL, max_tokens=256, messages=messages, tools=[WEATHER_TOOL, TIME_TOOL])
    assert second.stop_reason == "end_turn"
    assert text_of(second) == 'Based on the tool results: get_weather returned {"temp_c": 21}.'
    assert second.usage.input_tokens > first.usage.input_tokens


def test_tool_choice_variants(client: Anthropic) -> None:
    tools: Any = [WEATHER_TOOL, TIME_TOOL]
    named = client.messages.create(
        model=MODEL, max_tokens=256, messages=USER, tools=tools, tool_choice={"type": "tool", "name": "get_time"}
    )
    assert [(block.type, getattr(block, "name", None)) for block in named.content] == [("tool_use", "get_time")]
    assert isinstance(named.content[0], ToolUseBlock) and named.content[0].input == {"zone": "example"}
    parallel = client.messages.create(
        model=MODEL,
        max_tokens=256,
        messages=[{"role": "user", "content": "[sim:tool_calls=2] weather and time"}],
        tools=tools,
        tool_choice={"type": "any"},
    )
    assert [getattr(block, "name", None) for block in parallel.content] == ["get_weather", "get_time"]
    single = client.messages.create(
        model=MODEL,
        max_tokens=256,
        messages=[{"role": "user", "content": "[sim:tool_calls=2] weather and time"}],
        tools=tools,
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    assert [block.type for block in single.content] == ["tool_use"]
    none = client.messages.create(model=MODEL, max_tokens=256, messages=USER, tools=tools, tool_choice={"type": "none"})
    assert none.stop_reason == "end_turn" and text_of(none) == HELLO


def test_tool_result_error_and_list_content(client: Anthropic) -> None:
    messages: Any = [
        *USER,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "is_error": True,
                    "content": [{"type": "text", "text": "city not found"}],
                }
            ],
        },
    ]
    message = client.messages.create(model=MODEL, max_tokens=256, messages=messages, tools=[WEATHER_TOOL])
    assert text_of(message) == "Based on the tool results: get_weather failed with city not found."


# --- streaming -----------------------------------------------------------------------------------------------------


def test_sdk_stream_text(client: Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=256, messages=USER) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) >= 3 and "".join(pieces) == HELLO
    assert text_of(final) == HELLO and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == math.ceil(len(HELLO) / 4)
    plain = client.messages.create(model=MODEL, max_tokens=256, messages=USER)
    assert final.usage.input_tokens == plain.usage.input_tokens


def test_raw_stream_event_order(server: Server) -> None:
    response = server.messages(stream=True)
    assert response.status == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    events = response.events()
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"} and len(names[3:-3]) >= 3
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["stop_sequence"] is None
    assert start["usage"]["output_tokens"] == 1 and start["usage"]["input_tokens"] > 0
    assert events[1][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert all(delta["type"] == "text_delta" for delta in deltas)
    assert "".join(delta["text"] for delta in deltas) == HELLO
    assert events[-3][1] == {"type": "content_block_stop", "index": 0}
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": math.ceil(len(HELLO) / 4)},
    }


def test_stream_stop_sequence_in_message_delta(server: Server) -> None:
    events = server.messages(stream=True, stop_sequences=["You said"]).events()
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert text == "Hello from the simulator. "
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "You said"}


def test_stream_tool_use(server: Server, client: Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=256, messages=USER, tools=[WEATHER_TOOL]) as stream:
        final = stream.get_final_message()
    calls = [block for block in final.content if isinstance(block, ToolUseBlock)]
    assert len(calls) == 1 and calls[0].input == WEATHER_ARGS and final.stop_reason == "tool_use"

    events = server.messages(stream=True, tools=[WEATHER_TOOL]).events()
    starts = [data for name, data in events if name == "content_block_start"]
    assert [start["content_block"]["type"] for start in starts] == ["text", "tool_use"]
    assert starts[1]["content_block"]["input"] == {} and starts[1]["content_block"]["id"].startswith("toolu_")
    fragments = [
        data["delta"]["partial_json"]
        for name, data in events
        if name == "content_block_delta" and data["delta"]["type"] == "input_json_delta"
    ]
    assert fragments[0] == "" and len([f for f in fragments if f]) >= 2
    assert json.loads("".join(fragments)) == WEATHER_ARGS
    json_deltas = [data for name, data in events if name == "content_block_delta" and "partial_json" in data["delta"]]
    assert {data["index"] for data in json_deltas} == {1}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_thinking(server: Server, client: Anthropic) -> None:
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    message = client.messages.create(model=MODEL, max_tokens=2048, messages=USER, thinking=thinking)
    first, second = message.content
    assert isinstance(first, ThinkingBlock) and first.thinking and len(first.signature) > 20
    assert isinstance(second, TextBlock) and second.text == HELLO
    assert message.usage.output_tokens == math.ceil(len(first.thinking) / 4) + math.ceil(len(HELLO) / 4)

    with client.messages.stream(model=MODEL, max_tokens=2048, messages=USER, thinking=thinking) as stream:
        final = stream.get_final_message()
    assert isinstance(final.content[0], ThinkingBlock) and final.content[0].thinking == first.thinking
    events = server.messages(max_tokens=2048, stream=True, thinking=thinking).events()
    assert events[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    kinds = [data["delta"]["type"] for name, data in events if name == "content_block_delta" and data["index"] == 0]
    assert kinds[-1] == "signature_delta" and set(kinds[:-1]) == {"thinking_delta"}

    low = server.messages(max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1000})
    assert_error(low, 400, "invalid_request_error", "thinking.enabled.budget_tokens:")
    over = server.messages(max_tokens=1024, thinking=thinking)
    assert_error(over, 400, "invalid_request_error", "max_tokens:")


def test_stream_pacing_and_latency() -> None:
    with serve_in_thread(create_app(SimulatorSettings(latency_ms=100, chunk_delay_ms=25))) as url:
        client = Anthropic(base_url=url, api_key="k", max_retries=0)
        started = time.monotonic()
        arrivals = []
        for _ in client.messages.create(model=MODEL, max_tokens=256, messages=USER, stream=True):
            arrivals.append(time.monotonic())  # one per SSE event (the SDK skips pings)
    assert arrivals[0] - started >= 0.09
    assert arrivals[-1] - arrivals[0] >= 0.025 * (len(arrivals) - 1) * 0.8


# --- count_tokens and models ----------------------------------------------------------------------------------------


def test_count_tokens_matches_usage(client: Anthropic) -> None:
    params: Any = {"model": MODEL, "messages": USER, "system": "Be brief.", "tools": [WEATHER_TOOL]}
    counted = client.messages.count_tokens(**params)
    created = client.messages.create(max_tokens=256, tool_choice={"type": "none"}, **params)
    assert counted.input_tokens == created.usage.input_tokens > 0


def test_models_list_retrieve_and_404(server: Server, client: Anthropic) -> None:
    page = client.models.list()
    ids = [model.id for model in page.data]
    assert MODEL in ids and all(model.type == "model" and model.display_name for model in page.data)
    retrieved = client.models.retrieve(MODEL)
    assert retrieved.display_name == "Claude Sonnet 4" and retrieved.created_at.isoformat().startswith("2025-05-14")
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("no-such-model")
    raw = server.request("GET", "/v1/models?limit=2", headers=VERSION).json()
    assert set(raw) == {"data", "has_more", "first_id", "last_id"}
    assert raw["has_more"] is True and [m["id"] for m in raw["data"]] == ids[:2]
    assert raw["first_id"] == ids[0] and raw["last_id"] == ids[1]
    assert raw["data"][0]["created_at"].endswith("Z")
    rest = server.request("GET", f"/v1/models?after_id={ids[1]}", headers=VERSION).json()
    assert [m["id"] for m in rest["data"]] == ids[2:] and rest["has_more"] is False


def test_configured_models_are_listed() -> None:
    with serve_in_thread(create_app(SimulatorSettings(models=["claude-custom", "my-model-2"]))) as url:
        listed = Server(url).client().models.list()
    names = [(m.id, m.display_name) for m in listed.data]
    assert names == [("claude-custom", "Claude Custom"), ("my-model-2", "My Model 2")]


# --- auth and validation --------------------------------------------------------------------------------------------


def test_auth_accepts_bearer_and_x_api_key() -> None:
    with serve_in_thread(create_app(SimulatorSettings(api_key=API_KEY))) as url:
        sim = Server(url)
        with_key = sim.client()
        assert text_of(with_key.messages.create(model=MODEL, max_tokens=64, messages=USER)) == HELLO
        with_token = sim.client(api_key=None, auth_token=API_KEY)
        assert text_of(with_token.messages.create(model=MODEL, max_tokens=64, messages=USER)) == HELLO
        logged = sim.request("GET", "/_sim/requests").json()
        # SDK 2.x sends API keys (and auth tokens) as a Bearer token, never as x-api-key
        assert [entry["headers"].get("authorization") for entry in logged] == [f"Bearer {API_KEY}"] * 2
        assert all("x-api-key" not in entry["headers"] for entry in logged)
        assert logged[0]["headers"]["anthropic-version"]
        assert sim.messages(headers={"x-api-key": API_KEY}).status == 200
        with pytest.raises(anthropic.AuthenticationError):
            sim.client(api_key="sk-wrong").messages.create(model=MODEL, max_tokens=64, messages=USER)
        assert_error(sim.messages(headers={"x-api-key": "sk-wrong"}), 401, "authentication_error", "invalid x-api-key")
        assert_error(sim.messages(), 401, "authentication_error", "x-api-key header is required")
        assert_error(sim.request("GET", "/v1/models", headers=VERSION), 401, "authentication_error")
        health = sim.request("GET", "/health")
        assert health.status == 200 and health.headers["request-id"]


def test_missing_anthropic_version(server: Server) -> None:
    body = {"model": MODEL, "max_tokens": 16, "messages": USER}
    response = server.request("POST", "/v1/messages", body)
    assert_error(response, 400, "invalid_request_error", "anthropic-version: header is required")
    assert server.request("POST", "/v1/messages", body, {"anthropic-version": "2099-01-01"}).status == 200


def _tool_turn(tool_id: str = "toolu_1") -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "tool_use", "id": tool_id, "name": "get_weather", "input": {}}]}


def _result(tool_id: str = "toolu_1") -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": "sunny"}


BAD_REQUESTS: list[tuple[str, dict[str, Any], str]] = [
    ("missing max_tokens", {"max_tokens": None}, "max_tokens: Field required"),
    ("zero max_tokens", {"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
    ("missing model", {"model": None}, "model: Field required"),
    ("empty messages", {"messages": []}, "messages: at least one message is required"),
    ("first message assistant", {"messages": [{"role": "assistant", "content": "hi"}]}, "messages: first message"),
    ("bad role", {"messages": [{"role": "system", "content": "x"}]}, "messages.0.role: Input should be 'user' or"),
    ("empty string content", {"messages": [{"role": "user", "content": ""}]}, "messages.0: all messages must have"),
    (
        "empty text block",
        {"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
        "messages: text content blocks must be non-empty",
    ),
    (
        "unknown block",
        {"messages": [{"role": "user", "content": [{"type": "video"}]}]},
        "messages.0.content.0: Input tag 'video'",
    ),
    (
        "bad image media type",
        {
            "messages": [
                {"role": "user", "content": [{"type": "image", "source": {**BASE64_PNG, "media_type": "image/bmp"}}]}
            ]
        },
        "messages.0.content.0.image.source.base64.media_type:",
    ),
    ("temperature 1.5", {"temperature": 1.5}, "temperature: Input should be less than or equal to 1"),
    (
        "orphan tool_result",
        {"messages": [*USER, {"role": "assistant", "content": "ok"}, {"role": "user", "content": [_result()]}]},
        "messages.2.content.0: unexpected `tool_use_id`",
    ),
    (
        "unanswered tool_use",
        {"messages": [*USER, _tool_turn(), {"role": "user", "content": "and?"}]},
        "messages.1: `tool_use` ids were found without `tool_result` blocks",
    ),
    (
        "tool_result after text",
        {"messages": [*USER, _tool_turn(), {"role": "user", "content": [{"type": "text", "text": "x"}, _result()]}]},
        "messages.2.content.1: tool_result blocks must come before",
    ),
    ("tool_use in user turn", {"messages": [{"role": "user", "content": _tool_turn()["content"]}]}, "messages.0.c"),
    ("bad tool name", {"tools": [{**WEATHER_TOOL, "name": "bad name"}]}, "tools.0.custom.name: String should match"),
    ("missing input_schema", {"tools": [{"name": "f"}]}, "tools.0.custom.input_schema: Field required"),
    (
        "unknown tool_choice name",
        {"tools": [WEATHER_TOOL], "tool_choice": {"type": "tool", "name": "nope"}},
        "tool_choice.tool.name:",
    ),
    ("bad tool_choice type", {"tools": [WEATHER_TOOL], "tool_choice": {"type": "required"}}, "tool_choice: Input tag"),
    ("system image", {"system": [{"type": "image"}]}, "system.0: Input tag 'image'"),
    ("stop_sequences not strings", {"stop_sequences": [1]}, "stop_sequences.0: Input should be a valid string"),
    ("stream not bool", {"stream": "yes"}, "stream: Input should be a valid boolean"),
]


@pytest.mark.parametrize(("overrides", "message"), [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_invalid_requests_get_400(server: Server, overrides: dict[str, Any], message: str) -> None:
    body = {"model": MODEL, "max_tokens": 64, "messages": USER, **overrides}
    body = {key: value for key, value in body.items() if value is not None}
    assert_error(server.request("POST", "/v1/messages", body, VERSION), 400, "invalid_request_error", message)


def test_valid_edge_cases_are_accepted(server: Server) -> None:
    server_tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 1}
    document = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}}
    cases: list[dict[str, Any]] = [
        {"tools": [server_tool, WEATHER_TOOL], "tool_choice": {"type": "auto"}},
        {"messages": [{"role": "user", "content": [document, {"type": "text", "text": "summarise"}]}]},
        {"messages": [*USER, _tool_turn(), {"role": "user", "content": [_result(), {"type": "text", "text": "ok"}]}]},
        {"messages": [*USER, {"role": "assistant", "content": ""}]},
        {"temperature": 0, "top_p": 1, "top_k": 5, "metadata": {"user_id": "u1"}},
    ]
    for overrides in cases:
        assert server.messages(**overrides).status == 200, overrides


def test_non_json_and_non_object_bodies(server: Server) -> None:
    for raw in (b"{not json", b"[1, 2]"):
        assert_error(server.request("POST", "/v1/messages", raw, VERSION), 400, "invalid_request_error")


def test_sdk_raises_bad_request(client: Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "assistant", "content": "hi"}])
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": 'messages: first message must use the "user" role'},
        "request_id": caught.value.request_id,
    }


def test_unknown_path_and_wrong_method(server: Server) -> None:
    assert_error(server.request("POST", "/v1/complete", {}, VERSION), 404, "not_found_error")
    assert_error(server.request("GET", "/v1/messages", headers=VERSION), 405, "invalid_request_error")


# --- fault injection ------------------------------------------------------------------------------------------------


def test_control_endpoint_429_with_retry_after(server: Server, client: Anthropic) -> None:
    queued = server.request("POST", "/_sim/faults", {"kind": "status", "status": 429, "retry_after": 2, "count": 2})
    assert queued.status == 200 and queued.json()["queued"] == 2
    assert server.request("GET", "/_sim/faults").json()[0]["remaining"] == 2
    response = server.messages()
    assert response.headers["retry-after"] == "2"
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert_error(response, 429, "rate_limit_error")
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=MODEL, max_tokens=64, messages=USER)
    assert caught.value.response.headers["retry-after"] == "2"
    assert server.messages().status == 200  # the fault applied to exactly two requests
    assert server.request("GET", "/_sim/faults").json() == []


@pytest.mark.parametrize(
    ("status", "error_type", "exception"),
    [
        (529, "overloaded_error", anthropic.OverloadedError),
        (500, "api_error", anthropic.InternalServerError),
        (403, "permission_error", anthropic.PermissionDeniedError),
        (413, "request_too_large", anthropic.ContentTooLargeError),
    ],
)
def test_status_directive(
    server: Server, client: Anthropic, status: int, error_type: str, exception: type[Exception]
) -> None:
    messages: Any = [{"role": "user", "content": f"x [sim:status={status}]"}]
    assert_error(server.messages(messages=messages), status, error_type)
    with pytest.raises(exception):
        client.messages.create(model=MODEL, max_tokens=64, messages=messages)


def test_delay_directive(client: Anthropic) -> None:
    started = time.monotonic()
    message = client.messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "slow [sim:delay_ms=200] please"}]
    )
    assert time.monotonic() - started >= 0.19
    assert text_of(message) == "Hello from the simulator. You said: slow please"


def test_midstream_error(server: Server, client: Anthropic) -> None:
    messages: Any = [{"role": "user", "content": "tell me [sim:midstream_error=3]"}]
    received = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        with client.messages.stream(model=MODEL, max_tokens=64, messages=messages) as stream:
            for event in stream:
                received.append(event.type)
    assert caught.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert received[0] == "message_start" and "message_stop" not in received
    events = server.messages(messages=messages, stream=True).events()
    assert [name for name, _ in events] == ["message_start", "content_block_start", "ping", "error"]
    assert_error(server.messages(messages=messages), 529, "overloaded_error", "Overloaded")


def test_disconnects(server: Server, client: Anthropic) -> None:
    with pytest.raises(anthropic.APIConnectionError):
        client.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "[sim:disconnect]"}])
    server.request("POST", "/_sim/faults", {"kind": "midstream_disconnect", "after_events": 3})
    received = []
    # the SDK lets its HTTP client's RemoteProtocolError through when a stream breaks off
    with pytest.raises(Exception, match="incomplete chunked read"):
        for event in client.messages.create(model=MODEL, max_tokens=64, messages=USER, stream=True):
            received.append(event.type)
    assert received == ["message_start", "content_block_start"]  # the third event was the ping
    server.request("POST", "/_sim/faults", {"kind": "midstream_disconnect"})
    with pytest.raises(anthropic.APIConnectionError):  # half a JSON body, then the connection closes
        client.messages.create(model=MODEL, max_tokens=64, messages=USER)


def test_fail_rate_applies_to_messages_only() -> None:
    with serve_in_thread(create_app(SimulatorSettings(fail_rate=1.0, fail_status=503))) as url:
        sim = Server(url)
        assert_error(sim.messages(), 503, "api_error")
        assert sim.request("GET", "/v1/models", headers=VERSION).status == 200
        count = sim.request("POST", "/v1/messages/count_tokens", {"model": MODEL, "messages": USER}, VERSION)
        assert count.status == 200 and count.json()["input_tokens"] > 0


# --- request log ----------------------------------------------------------------------------------------------------


def test_request_log_records_what_arrived(server: Server, client: Anthropic) -> None:
    client.messages.create(model=MODEL, max_tokens=64, messages=USER, stop_sequences=["zzz"])
    server.request("POST", "/v1/messages", b"not json", VERSION)
    log = server.request("GET", "/_sim/requests").json()
    assert [(entry["method"], entry["path"]) for entry in log] == [("POST", "/v1/messages")] * 2
    assert log[0]["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert log[0]["body"] == {"model": MODEL, "max_tokens": 64, "messages": USER, "stop_sequences": ["zzz"]}
    assert log[1]["body"] is None and log[1]["headers"]["anthropic-version"] == "2023-06-01"
    server.request("DELETE", "/_sim/requests")
    assert server.request("GET", "/_sim/requests").json() == []
    bad = server.request("POST", "/_sim/faults", {"kind": "explode"})
    assert bad.status == 400 and bad.json()["error"]["type"] == "invalid_request_error"  # same as the OpenAI sim
