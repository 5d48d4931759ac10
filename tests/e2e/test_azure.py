"""Azure OpenAI end to end: the plain OpenAI SDK and the Anthropic SDK through a gateway whose provider is
`vendor: azure`, against the simulator's Azure deployment paths."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.support.gateway import STATIC_KEY, UPSTREAM_KEY, GatewayHandle, start_gateway
from yourouter.config import settings_from_mapping

API_VERSION = "2024-10-21"
DEPLOYMENT = "my-gpt4o-deployment"
USER: Any = [{"role": "user", "content": "Say hello"}]
WEATHER: Any = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def azure(sim_b: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    db: Path = tmp_path_factory.mktemp("azure") / "gw.db"
    config = {
        "database_url": f"sqlite:///{db}",
        "usage": {"flush_interval_s": 0.05},
        "keys": [{"key": STATIC_KEY, "name": "azure-e2e", "models": ["*"]}],
        "providers": [
            {"name": "az", "vendor": "azure", "base_url": sim_b, "api_key": UPSTREAM_KEY, "api_version": API_VERSION,
             "models": [{"name": "gpt-4o", "upstream": DEPLOYMENT}, "text-embedding-3-small"]},
        ],
    }
    with start_gateway(settings_from_mapping(config, env={}), sims={"az": sim_b}) as gateway:
        yield gateway


@pytest.fixture(autouse=True)
def _clean(azure: GatewayHandle) -> None:
    azure.sim_control(azure.sims["az"], "DELETE", "/_sim/faults")
    azure.sim_control(azure.sims["az"], "DELETE", "/_sim/requests")


def upstream(azure: GatewayHandle) -> dict[str, Any]:
    """The one request the Azure simulator saw, checked for what every Azure call must carry."""
    [seen] = azure.sim_requests("az")
    assert seen["query"] == f"api-version={API_VERSION}"
    assert seen["headers"]["api-key"] == UPSTREAM_KEY and "authorization" not in seen["headers"]
    assert STATIC_KEY not in json.dumps(seen)  # the client's gateway key never reaches Azure
    return dict(seen)


def test_chat_reaches_the_deployment_url(azure: GatewayHandle) -> None:
    raw = azure.client().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=USER, extra_headers={"vendor": "azure"})
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from the simulator. You said: Say hello"
    assert completion.model == DEPLOYMENT  # Azure names the deployment; the body passes through
    assert "prompt_filter_results" in (completion.model_extra or {})
    assert raw.headers["x-yourouter-vendor"] == "azure" and raw.headers["x-yourouter-provider"] == "az"
    seen = upstream(azure)
    assert seen["path"] == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert seen["body"]["model"] == DEPLOYMENT and seen["body"]["messages"] == USER


def test_vendor_pin_and_prefix(azure: GatewayHandle) -> None:
    client = azure.client()
    completion = client.chat.completions.create(model="azure/gpt-4o", messages=USER)
    assert completion.choices[0].message.content
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o", messages=USER, extra_headers={"vendor": "openai"})


def test_stream_with_usage_is_relayed_and_metered(azure: GatewayHandle) -> None:
    stream = azure.client().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=USER, stream=True, stream_options={"include_usage": True})
    chunks = list(stream.parse())
    assert chunks[0].choices == [] and "prompt_filter_results" in (chunks[0].model_extra or {})  # Azure's opening
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "Hello from the simulator. You said: Say hello"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None and usage.completion_tokens > 0
    seen = upstream(azure)
    assert seen["path"] == f"/openai/deployments/{DEPLOYMENT}/chat/completions" and seen["body"]["stream"] is True
    [row] = azure.usage_rows(stream.headers["x-request-id"])
    assert row["streamed"] and row["deployment"] == "az"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)


def test_stream_without_usage_still_metered(azure: GatewayHandle) -> None:
    stream = azure.client().chat.completions.with_raw_response.create(model="gpt-4o", messages=USER, stream=True)
    chunks = list(stream.parse())
    assert all(chunk.usage is None for chunk in chunks)  # the usage the gateway asked for is not relayed
    assert upstream(azure)["body"]["stream_options"] == {"include_usage": True}
    [row] = azure.usage_rows(stream.headers["x-request-id"])
    assert row["completion_tokens"] > 0


def test_tool_calls_plain_and_streamed(azure: GatewayHandle) -> None:
    client = azure.client()
    completion = client.chat.completions.create(model="gpt-4o", messages=USER, tools=[WEATHER])
    [call] = completion.choices[0].message.tool_calls or []
    assert completion.choices[0].finish_reason == "tool_calls" and call.type == "function"
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    assert upstream(azure)["body"]["tools"] == [WEATHER]
    with client.chat.completions.stream(model="gpt-4o", messages=USER, tools=[WEATHER]) as stream:
        final = stream.get_final_completion()
    [streamed] = final.choices[0].message.tool_calls or []
    assert streamed.function.name == "get_weather" and "city" in json.loads(streamed.function.arguments)


def test_embeddings(azure: GatewayHandle) -> None:
    response = azure.client().embeddings.create(model="text-embedding-3-small", input=["a", "b"],
                                                extra_headers={"vendor": "azure"})
    assert [item.index for item in response.data] == [0, 1] and len(response.data[0].embedding) == 16
    seen = upstream(azure)
    assert seen["path"] == "/openai/deployments/text-embedding-3-small/embeddings"


def test_azure_rate_limit_reaches_the_client_as_openai_429(azure: GatewayHandle) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        azure.client().chat.completions.create(model="gpt-4o", messages=[
            {"role": "user", "content": "x [sim:status=429] [sim:retry_after=30]"}])
    assert caught.value.response.headers["retry-after"] == "30"
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "requests"


def test_anthropic_client_reaches_the_azure_deployment(azure: GatewayHandle) -> None:
    client = anthropic.Anthropic(base_url=azure.url, api_key=STATIC_KEY, max_retries=0, timeout=15)
    message = client.messages.create(model="gpt-4o", max_tokens=200, messages=USER)
    assert message.type == "message" and message.model == DEPLOYMENT
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello from the simulator. You said: Say hello"
    assert message.usage.output_tokens > 0
    seen = upstream(azure)
    assert seen["path"] == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert seen["body"]["model"] == DEPLOYMENT and seen["body"]["messages"] == USER  # translated to OpenAI


def test_anthropic_client_streams_and_calls_tools_on_azure(azure: GatewayHandle) -> None:
    client = anthropic.Anthropic(base_url=azure.url, api_key=STATIC_KEY, max_retries=0, timeout=15)
    with client.messages.stream(model="gpt-4o", max_tokens=200, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from the simulator. You said: Say hello"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    assert upstream(azure)["body"]["stream"] is True
    azure.sim_control(azure.sims["az"], "DELETE", "/_sim/requests")
    tool: Any = {"name": "get_weather", "description": "Weather for a city",
            "input_schema": WEATHER["function"]["parameters"]}
    message = client.messages.create(model="gpt-4o", max_tokens=200, messages=USER, tools=[tool])
    [block] = message.content
    assert message.stop_reason == "tool_use" and block.type == "tool_use" and block.name == "get_weather"
    assert "city" in block.input
    assert upstream(azure)["body"]["tools"][0]["function"]["name"] == "get_weather"


def test_translated_stream_keeps_azures_completion_id(azure: GatewayHandle) -> None:
    client = anthropic.Anthropic(base_url=azure.url, api_key=STATIC_KEY, max_retries=0, timeout=15)
    with client.messages.stream(model="gpt-4o", max_tokens=200, messages=USER) as stream:
        final = stream.get_final_message()
    assert final.id.startswith("msg_chatcmpl-") and final.model == DEPLOYMENT  # as the non-streamed reply has
