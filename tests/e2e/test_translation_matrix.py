"""Every client dialect to every provider protocol, through one gateway, with the official SDKs.

Clients: openai, anthropic, google-genai (Gemini API mode and Vertex mode). Providers: an OpenAI-, an Anthropic-,
a Gemini- and a Bedrock (Converse, SigV4-signed) simulator. Each cell runs text, streaming, an image and a complete
tool round trip (plain and streamed), and checks what reached the upstream.
"""

from __future__ import annotations

import itertools

import pytest

from tests.e2e.conftest import MODELS, UPSTREAM_KEY
from tests.support.dialects import TOOL_RESULT, make_client
from tests.support.gateway import STATIC_KEY, GatewayHandle, http

CLIENTS = ["openai", "anthropic", "gemini", "gemini-vertex"]
CELLS = list(itertools.product(CLIENTS, MODELS))


def _upstream(gateway: GatewayHandle, provider: str) -> dict:
    """The last request the provider's simulator received (body and headers)."""
    requests = http("GET", gateway.sims[provider] + "/_sim/requests").json()
    chats = [r for r in requests if r["method"] == "POST" and r["body"] is not None]
    return chats[-1]


@pytest.mark.parametrize(("client", "provider"), CELLS)
def test_text_with_system_prompt(matrix: GatewayHandle, client: str, provider: str) -> None:
    answer = make_client(client, matrix.url, STATIC_KEY).text(MODELS[provider], "Hello matrix", system="Be terse.")
    assert answer.text.endswith("You said: Hello matrix")
    assert answer.prompt_tokens > 0 and answer.completion_tokens > 0
    seen = _upstream(matrix, provider)
    body = seen["body"]
    if provider == "openai":
        assert body["messages"][0] == {"role": "system", "content": "Be terse."}
        assert seen["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    elif provider == "anthropic":
        assert body["system"] in ("Be terse.", [{"type": "text", "text": "Be terse."}]) and body["max_tokens"] == 200
        assert seen["headers"].get("x-api-key", seen["headers"].get("authorization", "")).endswith(UPSTREAM_KEY)
    elif provider == "bedrock":
        assert body["system"] == [{"text": "Be terse."}] and body["inferenceConfig"]["maxTokens"] == 200
        assert seen["path"] == "/model/anthropic.claude-sim-v1:0/converse"
        assert seen["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
        assert "/us-west-2/bedrock/aws4_request" in seen["headers"]["authorization"]
    else:
        assert body["systemInstruction"]["parts"][0]["text"] == "Be terse."
        assert seen["headers"].get("x-goog-api-key") == UPSTREAM_KEY
    assert STATIC_KEY not in str(seen)


@pytest.mark.parametrize(("client", "provider"), CELLS)
def test_stream_text_and_usage(matrix: GatewayHandle, client: str, provider: str) -> None:
    answer = make_client(client, matrix.url, STATIC_KEY).stream_text(MODELS[provider], "Stream to me")
    assert answer.text.endswith("You said: Stream to me")
    assert answer.completion_tokens > 0


@pytest.mark.parametrize(("client", "provider"), CELLS)
def test_image_base64(matrix: GatewayHandle, client: str, provider: str) -> None:
    text = make_client(client, matrix.url, STATIC_KEY).image(MODELS[provider], "Describe")
    assert "1 image" in text


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize(("client", "provider"), CELLS)
def test_tool_round_trip(matrix: GatewayHandle, client: str, provider: str, stream: bool) -> None:
    trip = make_client(client, matrix.url, STATIC_KEY).tool_trip(MODELS[provider], stream)
    assert trip.name == "get_weather" and isinstance(trip.arguments.get("city"), str)
    assert TOOL_RESULT in trip.final_text
