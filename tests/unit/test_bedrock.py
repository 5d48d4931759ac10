"""Bedrock: the event-stream framing (checked against botocore's own parser), the Converse codec (requests valid
for botocore's service model, responses and streams back to the IR), SigV4 signing, and the simulator driven by
the official boto3 client."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.unit.test_codec_properties import ANTHROPIC, SETTINGS, requests
from yourouter.codecs import bedrock
from yourouter.codecs.bedrock.converse import decode_response, encode_request, tool_use_id, usage_in
from yourouter.codecs.bedrock.eventstream import EventStreamSplitter, encode_message, event_message
from yourouter.config import settings_from_mapping
from yourouter.ir.chat import (
    ChatRequest,
    Document,
    Image,
    Message,
    Reasoning,
    StreamError,
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
from yourouter.ir.errors import GatewayError
from yourouter.ir.usage import Usage
from yourouter.providers.bedrock import BedrockProvider
from yourouter.providers.registry import build_provider
from yourouter.simulators._bedrock_validation import AwsError, validate_converse, verify_sigv4
from yourouter.simulators.background import serve_in_thread
from yourouter.simulators.bedrock import ACCESS_KEY_ID, create_app
from yourouter.simulators.openai import SimulatorSettings

SECRET = "sim-secret-0001"
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


# Event stream framing ---------------------------------------------------------------------------------------------

def _frames() -> list[bytes]:
    return [event_message("messageStart", {"role": "assistant"}),
            event_message("contentBlockDelta", {"delta": {"text": "héllo"}, "contentBlockIndex": 0}),
            encode_message({":message-type": "exception", ":exception-type": "throttlingException",
                            ":content-type": "application/json"}, b'{"message":"slow down"}')]


def test_encoded_messages_parse_with_botocore() -> None:
    parser = EventStreamBuffer()
    for frame in _frames():
        parser.add_data(frame)
    parsed = list(parser)
    assert [m.headers[":event-type"] for m in parsed[:2]] == ["messageStart", "contentBlockDelta"]
    assert json.loads(parsed[1].payload) == {"delta": {"text": "héllo"}, "contentBlockIndex": 0}
    assert parsed[2].headers[":exception-type"] == "throttlingException"


@pytest.mark.parametrize("step", [1, 7, 1000])
def test_splitter_reassembles_messages_split_anywhere(step: int) -> None:
    stream = b"".join(_frames())
    splitter = EventStreamSplitter()
    documents = []
    for start in range(0, len(stream), step):
        documents += splitter.feed(stream[start:start + step])
    assert splitter.close() == b""
    assert [json.loads(d) for d in documents] == [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "héllo"}, "contentBlockIndex": 0}},
        {"throttlingException": {"message": "slow down"}}]


def test_corrupt_or_truncated_streams_become_error_documents() -> None:
    frame = bytearray(_frames()[1])
    frame[-6] ^= 0xFF  # a payload byte: the message CRC no longer matches
    splitter = EventStreamSplitter()
    out = splitter.feed(_frames()[0] + bytes(frame) + _frames()[0])
    assert json.loads(out[0]) == {"messageStart": {"role": "assistant"}}
    assert "CRC" in json.loads(out[1])["error"]["message"] and len(out) == 2
    assert splitter.feed(_frames()[0]) == []  # nothing after a corrupt message is trusted
    truncated = EventStreamSplitter()
    assert truncated.feed(_frames()[0][:20]) == []
    assert json.loads(truncated.close())["error"]["code"] == "truncatedStream"


# Requests -----------------------------------------------------------------------------------------------------

def _request(*messages: Message, **fields: object) -> ChatRequest:
    return ChatRequest(model="m", messages=messages, **fields)  # type: ignore[arg-type]


def test_request_shape_system_inference_and_alternation() -> None:
    request = _request(Message("user", (Text("a"),)), Message("user", (Text("b"), Text("  "))),
                       Message("assistant", (Text("c"),)), system=(Text("be brief"),), max_tokens=50,
                       temperature=1.7, top_p=0.9, top_k=40, stop=("END",))
    body = encode_request(request, MODEL)
    assert body["messages"] == [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
                                {"role": "assistant", "content": [{"text": "c"}]}]
    assert body["system"] == [{"text": "be brief"}]
    assert body["inferenceConfig"] == {"maxTokens": 50, "temperature": 1.0, "topP": 0.9, "stopSequences": ["END"]}
    assert body["additionalModelRequestFields"] == {"top_k": 40}  # Claude on Bedrock only
    assert "additionalModelRequestFields" not in encode_request(request, "amazon.nova-pro-v1:0")
    validate_converse(body)


def test_tools_choice_results_and_history_without_tools() -> None:
    call = ToolCall("call.1:x", "get_weather", '{"city": "Paris"}')
    history = (Message("user", (Text("weather?"),)), Message("assistant", (Text(""), call)),
               Message("user", (ToolResult("call.1:x", (Text("sunny"),), is_error=True),)))
    body = encode_request(_request(*history, tools=(Tool("get_weather", "Weather", WEATHER),),
                                   tool_choice=ToolChoice("tool", "get_weather")), MODEL)
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}
    assert body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": WEATHER}
    assert body["messages"][1]["content"] == [{"toolUse": {"toolUseId": "call_1_x", "name": "get_weather",
                                                           "input": {"city": "Paris"}}}]
    assert body["messages"][2]["content"][0]["toolResult"] == {
        "toolUseId": "call_1_x", "content": [{"text": "sunny"}], "status": "error"}
    validate_converse(body)
    # the client no longer offers the tool, but the history uses it: Converse still needs a toolConfig
    bare = encode_request(_request(*history), MODEL)
    assert bare["toolConfig"] == {"tools": [{"toolSpec": {"name": "get_weather",
                                                          "inputSchema": {"json": {"type": "object"}}}}]}
    validate_converse(bare)
    none = encode_request(_request(history[0], tools=(Tool("t"),), tool_choice=ToolChoice("none")), MODEL)
    assert "toolConfig" not in none
    required = encode_request(_request(history[0], tools=(Tool("t"),), tool_choice=ToolChoice("required")), MODEL)
    assert required["toolConfig"]["toolChoice"] == {"any": {}}


def test_images_documents_thinking_and_refusals() -> None:
    png = base64.b64encode(b"\x89PNG").decode()
    body = encode_request(_request(Message("user", (
        Image(data=png, media_type="image/png"),
        Document("application/pdf", data=png, filename="Q3 report (final).pdf"),
        Text("compare")))), MODEL)
    content = body["messages"][0]["content"]
    assert content[0] == {"image": {"format": "png", "source": {"bytes": png}}}
    assert content[1]["document"]["name"] == "Q3 report (final)" and content[1]["document"]["format"] == "pdf"
    validate_converse(body)
    with pytest.raises(GatewayError, match="image bytes") as refused:
        encode_request(_request(Message("user", (Image(url="https://example.com/a.png"),))), MODEL)
    assert refused.value.code == "untranslatable_content"
    with pytest.raises(GatewayError, match="n > 1"):
        encode_request(_request(Message("user", (Text("x"),)), n=2), MODEL)
    thinking = encode_request(_request(Message("user", (Text("x"),)), max_tokens=100,
                                       reasoning=Reasoning(effort="low")), MODEL)
    assert thinking["additionalModelRequestFields"]["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert thinking["inferenceConfig"]["maxTokens"] == 2048 + 1024
    replay = encode_request(_request(Message("user", (Text("x"),)), Message("assistant", (
        Thinking("mine", signature="bedrock:sig"), Thinking("anthropic's", signature="abc"), Text("y")))), MODEL)
    assert replay["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "mine", "signature": "sig"}}}, {"text": "y"}]


@SETTINGS
@given(data=st.data())
def test_every_translatable_request_is_valid_converse(data: st.DataObject) -> None:
    request = data.draw(requests(ANTHROPIC))
    assume(all(any(not isinstance(p, Text) or p.text.strip() for p in m.parts) for m in request.messages))
    body = json.loads(json.dumps(encode_request(request, MODEL)))
    validate_converse(body)  # botocore's service model and Bedrock's turn rules


# Responses and streams ----------------------------------------------------------------------------------------

def test_response_decoding() -> None:
    answer = decode_response({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "s1"}}},
            {"text": "Calling."}, {"toolUse": {"toolUseId": "tooluse_1", "name": "f", "input": {"a": 1}}}]}},
        "stopReason": "tool_use", "metrics": {"latencyMs": 5},
        "usage": {"inputTokens": 10, "outputTokens": 4, "totalTokens": 14, "cacheReadInputTokens": 6,
                  "cacheWriteInputTokens": 2}})
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.parts == (Thinking("hmm", signature="bedrock:s1"), Text("Calling."),
                            ToolCall("tooluse_1", "f", '{"a":1}'))
    assert answer.usage == Usage(prompt_tokens=18, completion_tokens=4, cached_tokens=6)
    assert usage_in(None) is None and tool_use_id("a.b:c" * 20) == ("a_b_c" * 20)[:64]
    assert bedrock.upstream_error_message(b'{"message": "Malformed input"}') == "Malformed input"
    assert bedrock.usage_of_response(b"not json") is None


def test_stream_decoding_in_order() -> None:
    decoder = bedrock.stream_decoder()
    frames = [event_message("messageStart", {"role": "assistant", "p": "abc"}),
              event_message("contentBlockDelta", {"delta": {"text": "Hi"}, "contentBlockIndex": 0}),
              event_message("contentBlockStart", {"start": {"toolUse": {"toolUseId": "t1", "name": "f"}},
                                                  "contentBlockIndex": 1}),
              event_message("contentBlockDelta", {"delta": {"toolUse": {"input": '{"a"'}}, "contentBlockIndex": 1}),
              event_message("contentBlockDelta", {"delta": {"toolUse": {"input": ":1}"}}, "contentBlockIndex": 1}),
              event_message("messageStop", {"stopReason": "tool_use"}),
              event_message("metadata", {"usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5},
                                         "metrics": {"latencyMs": 1}})]
    splitter = bedrock.stream_splitter()
    events = [e for document in splitter.feed(b"".join(frames)) for e in decoder.feed(document)]
    assert isinstance(events[0], StreamStart)
    assert events[1:] == [TextDelta("Hi"), ToolCallStart(0, "t1", "f"), ToolCallDelta(0, '{"a"'),
                          ToolCallDelta(0, ":1}"), StreamFinish("tool_calls"),
                          UsageUpdate(Usage(prompt_tokens=3, completion_tokens=2))]
    error = decoder.feed(b'{"throttlingException": {"message": "slow down"}}')
    assert error == [StreamError(429, "Upstream stream error (throttlingException): slow down")]


# Provider: URLs, signing, config --------------------------------------------------------------------------------

def _provider(**extra: object) -> BedrockProvider:
    settings = settings_from_mapping({"providers": [{"name": "br", "vendor": "aws", "region": "eu-west-1",
                                                     "models": [MODEL], **extra}]}, env={})
    provider = build_provider(settings.providers[0])
    assert isinstance(provider, BedrockProvider)
    return provider


def test_provider_urls_and_sigv4_signature_verifies() -> None:
    provider = _provider(aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET)
    url = provider.url("chat", MODEL, stream=True)
    assert url == ("https://bedrock-runtime.eu-west-1.amazonaws.com/model/"
                   "anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream")
    body = b'{"messages": []}'
    headers = provider.headers(url, body)
    assert headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/")
    assert "/eu-west-1/bedrock/aws4_request" in headers["Authorization"]
    received = {k.lower(): v for k, v in {**headers, "host": "bedrock-runtime.eu-west-1.amazonaws.com"}.items()}
    assert verify_sigv4("POST", url, received, body, {ACCESS_KEY_ID: SECRET}) == ACCESS_KEY_ID
    with pytest.raises(AwsError, match="signature we calculated"):
        verify_sigv4("POST", url, received, body + b" ", {ACCESS_KEY_ID: SECRET})  # the body is signed
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    with pytest.raises(AwsError, match="Signature expired"):
        verify_sigv4("POST", url, received, body, {ACCESS_KEY_ID: SECRET}, now=later)
    assert provider.supports("chat") and not provider.supports("embeddings")


def test_provider_with_a_bedrock_api_key_and_config_rules() -> None:
    provider = _provider(api_key="bedrock-api-key-1")
    assert provider.headers("u", b"x")["Authorization"] == "Bearer bedrock-api-key-1"
    with pytest.raises(Exception, match="region is required"):
        settings_from_mapping({"providers": [{"name": "br", "vendor": "aws", "models": ["m"]}]}, env={})
    with pytest.raises(Exception, match="go together"):
        _provider(aws_access_key_id="AKIA0")


def test_missing_or_broken_aws_credentials_are_config_errors(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Found when the gateway is built; `serve` turns a ConfigError into a message and exit status 2."""
    from yourouter.providers.bedrock import BedrockUnavailable

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(BedrockUnavailable, match="providers.br: no AWS credentials"):
        _provider()
    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(BedrockUnavailable, match="providers.br: AWS credentials: The config profile \\(nobody\\)"):
        _provider()


# The simulator, driven by boto3 -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    with serve_in_thread(create_app(SimulatorSettings(api_key=SECRET))) as url:
        yield url


def _boto(url: str, secret: str = SECRET) -> object:
    return boto3.client("bedrock-runtime", endpoint_url=url, region_name="us-west-2",
                        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 0}))


def test_boto3_converse_and_stream_against_the_simulator(sim: str) -> None:
    client = _boto(sim)
    reply = client.converse(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "Hello sim"}]}],  # type: ignore[attr-defined]
                            inferenceConfig={"maxTokens": 100})
    assert reply["output"]["message"]["content"][0]["text"].endswith("You said: Hello sim")
    assert reply["stopReason"] == "end_turn" and reply["usage"]["outputTokens"] > 0
    tools = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": WEATHER}}}]}
    stream = client.converse_stream(modelId=MODEL, toolConfig=tools,  # type: ignore[attr-defined]
                                    messages=[{"role": "user", "content": [{"text": "weather?"}]}])
    events = list(stream["stream"])
    names = [next(iter(e)) for e in events]
    assert names[0] == "messageStart" and names[-2:] == ["messageStop", "metadata"]
    start = next(e["contentBlockStart"] for e in events if "contentBlockStart" in e)
    arguments = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events
                        if "toolUse" in e.get("contentBlockDelta", {}).get("delta", {}))
    assert start["start"]["toolUse"]["name"] == "get_weather" and isinstance(json.loads(arguments)["city"], str)


def test_simulator_refuses_what_bedrock_refuses(sim: str) -> None:
    client = _boto(sim)
    cases = [
        ([{"role": "assistant", "content": [{"text": "x"}]}], "must start with a user message"),
        ([{"role": "user", "content": [{"text": "a"}]}, {"role": "user", "content": [{"text": "b"}]}],
         "must alternate"),
        ([{"role": "user", "content": [{"text": "   "}]}], "is blank"),
        ([{"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"text": "r"}]}}]}],
         "toolConfig field must be defined"),
    ]
    for messages, expected in cases:
        with pytest.raises(ClientError, match=expected) as error:
            client.converse(modelId=MODEL, messages=messages)  # type: ignore[attr-defined]
        assert error.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError, match="less than or equal to 1"):
        client.converse(modelId=MODEL, messages=cases[0][0][:0] + [{"role": "user", "content": [{"text": "x"}]}],  # type: ignore[attr-defined]
                        inferenceConfig={"temperature": 1.5})
    with pytest.raises(ClientError) as denied:
        _boto(sim, "wrong-secret").converse(modelId=MODEL,  # type: ignore[attr-defined]
                                             messages=[{"role": "user", "content": [{"text": "x"}]}])
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
