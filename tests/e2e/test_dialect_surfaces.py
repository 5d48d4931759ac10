"""The Anthropic and Gemini surfaces beyond the matrix: auth styles, error envelopes, token counting, embeddings
across dialects, image URLs, mid-stream errors, untranslatable requests, stream framings."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import openai
import pytest
from google.genai import errors as genai_errors
from google.genai import types as gtypes

from tests.e2e.conftest import MODELS, UPSTREAM_KEY
from tests.support.dialects import PNG_1PX, AnthropicClient, GeminiClient, OpenAIClient
from tests.support.gateway import STATIC_KEY, GatewayHandle, http
from yourouter.simulators.background import serve_in_thread

USER = [{"role": "user", "content": "hi"}]


def _upstream_requests(gateway: GatewayHandle, provider: str) -> list[dict]:
    return list(http("GET", gateway.sims[provider] + "/_sim/requests").json())


# Anthropic surface ----------------------------------------------------------------------------------------------

def test_anthropic_auth_styles_prefix_and_models(matrix: GatewayHandle) -> None:
    body = {"model": MODELS["openai"], "max_tokens": 50, "messages": USER}
    for headers in ({"x-api-key": STATIC_KEY}, {"Authorization": f"Bearer {STATIC_KEY}"}):
        for prefix in ("", "/anthropic"):
            response = http("POST", matrix.url + prefix + "/v1/messages", body,
                            {**headers, "anthropic-version": "2023-06-01"})
            assert response.status == 200 and response.json()["type"] == "message"
            assert response.headers["x-request-id"].startswith("req_")
    client = anthropic.Anthropic(base_url=matrix.url + "/anthropic", api_key=STATIC_KEY, max_retries=0)
    ids = [model.id for model in client.models.list()]
    assert MODELS["anthropic"] in ids and MODELS["gemini"] in ids
    plain = anthropic.Anthropic(base_url=matrix.url, api_key=STATIC_KEY, max_retries=0)
    assert [m.id for m in plain.models.list()] == ids  # /v1/models answers in Anthropic's shape to Anthropic


def test_anthropic_error_envelopes(matrix: GatewayHandle) -> None:
    client = anthropic.Anthropic(base_url=matrix.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(model=MODELS["openai"], max_tokens=10, messages=USER)
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "authentication_error"
    client = anthropic.Anthropic(base_url=matrix.url, api_key=STATIC_KEY, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as unknown:
        client.messages.create(model="nope", max_tokens=10, messages=USER)
    assert unknown.value.body["error"]["type"] == "invalid_request_error"
    response = http("POST", matrix.url + "/v1/messages", b"{broken", {"x-api-key": STATIC_KEY})
    assert response.status == 400 and response.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model=MODELS["gemini"], max_tokens=10,
                               messages=[{"role": "user", "content": "x [sim:status=429] [sim:retry_after=3]"}])
    assert limited.value.body["error"]["type"] == "rate_limit_error"
    assert limited.value.response.headers["retry-after"] == "3"
    with pytest.raises(anthropic.InternalServerError) as failed:
        client.messages.create(model=MODELS["openai"], max_tokens=10,
                               messages=[{"role": "user", "content": "x [sim:status=503]"}])
    assert failed.value.body["error"]["type"] == "api_error" and "up-openai" in failed.value.body["error"]["message"]


def test_anthropic_missing_max_tokens_gets_a_default_and_beta_is_forwarded(matrix: GatewayHandle) -> None:
    response = http("POST", matrix.url + "/v1/messages", {"model": MODELS["anthropic"], "messages": USER},
                    {"x-api-key": STATIC_KEY, "anthropic-version": "2023-06-01",
                     "anthropic-beta": "prompt-caching-2024-07-31"})
    assert response.status == 200
    seen = _upstream_requests(matrix, "anthropic")[-1]
    assert seen["body"]["max_tokens"] == 8192
    assert seen["headers"]["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert seen["headers"]["anthropic-version"] == "2023-06-01" and seen["headers"]["x-api-key"] == UPSTREAM_KEY
    http("POST", matrix.url + "/v1/messages", {"model": MODELS["openai"], "messages": USER},
         {"x-api-key": STATIC_KEY, "anthropic-beta": "x"})
    assert "anthropic-beta" not in _upstream_requests(matrix, "openai")[-1]["headers"]  # only to Anthropic


def test_anthropic_count_tokens_passthrough_and_estimated(matrix: GatewayHandle) -> None:
    client = anthropic.Anthropic(base_url=matrix.url, api_key=STATIC_KEY, max_retries=0)
    messages = [{"role": "user", "content": "Count these words for me please"}]
    upstream = client.messages.count_tokens(model=MODELS["anthropic"], messages=messages)
    assert upstream.input_tokens > 0
    assert _upstream_requests(matrix, "anthropic")[-1]["path"].endswith("/messages/count_tokens")
    estimated = client.messages.count_tokens(model=MODELS["openai"], messages=messages)
    assert 5 <= estimated.input_tokens <= 30


def test_anthropic_stream_gets_error_event_when_upstream_fails_mid_stream(matrix: GatewayHandle) -> None:
    client = anthropic.Anthropic(base_url=matrix.url, api_key=STATIC_KEY, max_retries=0)
    response = http("POST", matrix.url + "/v1/messages",
                    {"model": MODELS["openai"], "max_tokens": 50, "stream": True,
                     "messages": [{"role": "user", "content": "go [sim:midstream_error=3]"}]},
                    {"x-api-key": STATIC_KEY})
    events = [e for e in response.body.decode().split("\n\n") if e]
    assert events[0].startswith("event: message_start") and events[-1].startswith("event: error")
    assert not any(e.startswith("event: message_stop") for e in events)
    with pytest.raises(anthropic.APIStatusError):
        with client.messages.stream(model=MODELS["gemini"], max_tokens=50,
                                    messages=[{"role": "user", "content": "go [sim:midstream_error=2]"}]) as stream:
            for _ in stream.text_stream:
                pass


def test_untranslatable_requests_are_400_naming_the_field(matrix: GatewayHandle) -> None:
    oa = OpenAIClient(matrix.url, STATIC_KEY).client
    with pytest.raises(openai.BadRequestError) as caught:
        oa.chat.completions.create(model=MODELS["anthropic"], messages=USER, n=2)
    assert "n" == caught.value.param and "n > 1" in caught.value.message
    an = anthropic.Anthropic(base_url=matrix.url, api_key=STATIC_KEY, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as server_tool:
        an.messages.create(model=MODELS["openai"], max_tokens=50, messages=USER,
                           tools=[{"type": "web_search_20250305", "name": "web_search"}])
    assert "tools[0] (web_search_20250305)" in server_tool.value.message
    assert an.messages.create(model=MODELS["anthropic"], max_tokens=50, messages=USER,
                              tools=[{"type": "web_search_20250305", "name": "web_search"}]).content  # same dialect
    # A model served by an OpenAI and an Anthropic deployment: the one that can carry the request serves it.
    raw = an.messages.with_raw_response.create(model="dual", max_tokens=50, messages=USER,
                                               tools=[{"type": "web_search_20250305", "name": "web_search"}])
    assert raw.headers["x-yourouter-provider"] == "up-anthropic" and raw.headers["x-yourouter-attempts"] == "2"
    with pytest.raises(openai.BadRequestError):  # an OpenAI client asking n=2: the OpenAI deployment serves it
        oa.chat.completions.create(model=MODELS["anthropic"], messages=USER, n=2)
    assert len(oa.chat.completions.create(model="dual", messages=USER, n=2).choices) == 2


# Gemini surface -------------------------------------------------------------------------------------------------

def test_gemini_auth_styles_and_error_envelope(matrix: GatewayHandle) -> None:
    path = f"/v1beta/models/{MODELS['openai']}:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    for headers, query in (({"x-goog-api-key": STATIC_KEY}, ""), ({"Authorization": f"Bearer {STATIC_KEY}"}, ""),
                           ({}, f"?key={STATIC_KEY}")):
        response = http("POST", matrix.url + path + query, body, headers)
        assert response.status == 200 and response.json()["candidates"][0]["content"]["role"] == "model"
    denied = http("POST", matrix.url + path + "?key=sk-wrong", body)
    assert denied.status == 401 and denied.json()["error"]["status"] == "UNAUTHENTICATED"
    bad = http("POST", matrix.url + "/v1beta/models/nope:generateContent", body, {"x-goog-api-key": STATIC_KEY})
    assert bad.status == 400 and bad.json()["error"]["code"] == 400
    assert bad.json()["error"]["status"] == "INVALID_ARGUMENT" and "nope" in bad.json()["error"]["message"]
    unknown_method = http("POST", matrix.url + "/v1beta/models/x:explode", body, {"x-goog-api-key": STATIC_KEY})
    assert unknown_method.status == 404 and unknown_method.json()["error"]["status"] == "NOT_FOUND"
    client = GeminiClient(matrix.url, STATIC_KEY).client
    with pytest.raises(genai_errors.ClientError) as limited:
        client.models.generate_content(model=MODELS["anthropic"], contents="x [sim:status=429]")
    assert limited.value.code == 429 and limited.value.status == "RESOURCE_EXHAUSTED"
    with pytest.raises(genai_errors.ServerError):
        client.models.generate_content(model=MODELS["openai"], contents="x [sim:status=500]")


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_gemini_stream_framings(matrix: GatewayHandle, provider: str) -> None:
    path = f"/v1beta/models/{MODELS[provider]}:streamGenerateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "frame me"}]}]}
    sse = http("POST", matrix.url + path + "?alt=sse", body, {"x-goog-api-key": STATIC_KEY})
    assert sse.headers["content-type"].startswith("text/event-stream")
    chunks = [json.loads(e.removeprefix("data: ")) for e in sse.body.decode().replace("\r\n", "\n").split("\n\n")
              if e.startswith("data: ")]
    array = http("POST", matrix.url + path, body, {"x-goog-api-key": STATIC_KEY})
    assert array.headers["content-type"].startswith("application/json")
    items = json.loads(array.body)
    for stream in (chunks, items):
        text = "".join(p.get("text", "") for c in stream for p in c["candidates"][0]["content"].get("parts", []))
        assert text.endswith("You said: frame me")
        assert stream[-1]["candidates"][0]["finishReason"] == "STOP" and stream[-1]["usageMetadata"]


def test_gemini_count_tokens(matrix: GatewayHandle) -> None:
    client = GeminiClient(matrix.url, STATIC_KEY).client
    assert client.models.count_tokens(model=MODELS["gemini"], contents="count me please").total_tokens > 0
    assert client.models.count_tokens(model=MODELS["anthropic"], contents="count me please").total_tokens > 0


# Embeddings across dialects -------------------------------------------------------------------------------------

def test_openai_embeddings_reach_a_gemini_model(matrix: GatewayHandle) -> None:
    client = OpenAIClient(matrix.url, STATIC_KEY).client
    result = client.embeddings.create(model="gemini-embed", input=["one", "two"], dimensions=8)  # SDK asks base64
    assert [len(item.embedding) for item in result.data] == [8, 8] and result.usage.prompt_tokens > 0
    seen = _upstream_requests(matrix, "gemini")[-1]
    assert seen["path"].endswith("gemini-embed:batchEmbedContents")
    assert [r["content"]["parts"][0]["text"] for r in seen["body"]["requests"]] == ["one", "two"]


@pytest.mark.parametrize("vertex", [False, True], ids=["gemini-api", "vertex"])
def test_gemini_embeddings_reach_an_openai_model(matrix: GatewayHandle, vertex: bool) -> None:
    client = GeminiClient(matrix.url, STATIC_KEY, vertex=vertex).client
    single = client.models.embed_content(model="oa-embed", contents="alpha")
    several = client.models.embed_content(model="oa-embed", contents=["alpha", "beta"],
                                          config=gtypes.EmbedContentConfig(output_dimensionality=4))
    assert len(single.embeddings) == 1 and len(single.embeddings[0].values) == 16
    assert [len(e.values) for e in several.embeddings] == [4, 4]
    assert _upstream_requests(matrix, "openai")[-1]["body"]["input"] == ["alpha", "beta"]


# Image URLs -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image_server() -> Iterator[str]:
    import base64

    png = base64.b64decode(PNG_1PX)

    async def app(scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            return
        status, body, kind = (200, png, b"image/png") if scope["path"] == "/cat.png" else (404, b"no", b"text/plain")
        await send({"type": "http.response.start", "status": status,  # type: ignore[operator]
                    "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})  # type: ignore[operator]

    with serve_in_thread(app) as url:
        yield url


def test_image_url_is_fetched_for_gemini_and_passed_as_url_elsewhere(matrix: GatewayHandle, image_server: str
                                                                      ) -> None:
    content = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": image_server + "/cat.png"}}]
    oa = OpenAIClient(matrix.url, STATIC_KEY).client
    reply = oa.chat.completions.create(model=MODELS["gemini"], messages=[{"role": "user", "content": content}])
    assert "1 image" in (reply.choices[0].message.content or "")
    parts = _upstream_requests(matrix, "gemini")[-1]["body"]["contents"][0]["parts"]
    assert {"inlineData": {"mimeType": "image/png", "data": PNG_1PX}} in parts
    oa.chat.completions.create(model=MODELS["anthropic"], messages=[{"role": "user", "content": content}])
    blocks = _upstream_requests(matrix, "anthropic")[-1]["body"]["messages"][0]["content"]
    assert {"type": "image", "source": {"type": "url", "url": image_server + "/cat.png"}} in blocks
    missing = [{"type": "image_url", "image_url": {"url": image_server + "/missing.png"}}]
    with pytest.raises(openai.BadRequestError) as caught:
        oa.chat.completions.create(model=MODELS["gemini"], messages=[{"role": "user", "content": missing}])
    assert "404" in caught.value.message


def test_anthropic_client_via_gemini_keeps_tool_ids_consistent(matrix: GatewayHandle) -> None:
    trip = AnthropicClient(matrix.url, STATIC_KEY).tool_trip(MODELS["gemini"], stream=True)
    assert trip.name == "get_weather"
    contents = _upstream_requests(matrix, "gemini")[-1]["body"]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert "functionCall" in contents[1]["parts"][0] and "functionResponse" in contents[2]["parts"][0]


def test_gemini_models_list(matrix: GatewayHandle) -> None:
    gemini = GeminiClient(matrix.url, STATIC_KEY)  # kept alive: the pager reads through the client lazily
    names = [model.name for model in gemini.client.models.list()]
    assert f"models/{MODELS['gemini']}" in names and f"models/{MODELS['openai']}" in names


# Parameters that travel across dialects -------------------------------------------------------------------------

def test_stop_max_tokens_and_finish_reasons_across(matrix: GatewayHandle) -> None:
    oa = OpenAIClient(matrix.url, STATIC_KEY).client
    for provider in ("anthropic", "gemini"):
        stopped = oa.chat.completions.create(model=MODELS[provider], messages=USER, stop=["simulator"])
        assert stopped.choices[0].finish_reason == "stop"
        assert stopped.choices[0].message.content == "Hello from the "
        body = _upstream_requests(matrix, provider)[-1]["body"]
        assert body.get("stop_sequences", body.get("generationConfig", {}).get("stopSequences")) == ["simulator"]
        cut = oa.chat.completions.create(model=MODELS[provider], messages=USER, max_tokens=2)
        assert cut.choices[0].finish_reason == "length"
    an = anthropic.Anthropic(base_url=matrix.url, api_key=STATIC_KEY, max_retries=0)
    cut = an.messages.create(model=MODELS["openai"], max_tokens=2, messages=USER)
    assert cut.stop_reason == "max_tokens"
    assert _upstream_requests(matrix, "openai")[-1]["body"]["max_completion_tokens"] == 2


def test_json_mode_across(matrix: GatewayHandle) -> None:
    oa = OpenAIClient(matrix.url, STATIC_KEY).client
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
    reply = oa.chat.completions.create(model=MODELS["gemini"], messages=USER, response_format=fmt)
    assert "answer" in json.loads(reply.choices[0].message.content or "{}")
    config = _upstream_requests(matrix, "gemini")[-1]["body"]["generationConfig"]
    assert config["responseMimeType"] == "application/json" and config["responseJsonSchema"] == schema
    oa.chat.completions.create(model=MODELS["anthropic"], messages=USER, response_format=fmt)
    assert '"answer"' in _upstream_requests(matrix, "anthropic")[-1]["body"]["system"]


def test_reasoning_across(matrix: GatewayHandle) -> None:
    an = anthropic.Anthropic(base_url=matrix.url, api_key=STATIC_KEY, max_retries=0)
    reply = an.messages.create(model=MODELS["gemini"], max_tokens=4000, messages=USER,
                               thinking={"type": "enabled", "budget_tokens": 2048})
    assert reply.content[0].type == "thinking" and reply.content[-1].type == "text"
    thinking = _upstream_requests(matrix, "gemini")[-1]["body"]["generationConfig"]["thinkingConfig"]
    assert thinking["thinkingBudget"] == 2048 and thinking["includeThoughts"] is True
    oa = OpenAIClient(matrix.url, STATIC_KEY).client
    raw = oa.chat.completions.with_raw_response.create(model=MODELS["anthropic"], messages=USER,
                                                       reasoning_effort="high")
    from tests.support import oaschema

    oaschema.validate(oaschema.CHAT_COMPLETION, json.loads(raw.content))
    message = json.loads(raw.content)["choices"][0]["message"]
    assert message["reasoning_content"] and message["content"].endswith("You said: hi")
    body = _upstream_requests(matrix, "anthropic")[-1]["body"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 16384} and body["max_tokens"] > 16384
    effort = an.messages.create(model=MODELS["openai"], max_tokens=4000, messages=USER,
                                thinking={"type": "enabled", "budget_tokens": 1024})
    assert effort.content[-1].type == "text"
    assert _upstream_requests(matrix, "openai")[-1]["body"]["reasoning_effort"] == "low"


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_translated_openai_responses_match_the_openapi_schema(matrix: GatewayHandle, provider: str) -> None:
    from tests.support import oaschema

    oaschema.require_spec()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    for extra in ({}, {"tools": tools}, {"reasoning_effort": "low"}):
        response = matrix.post("/v1/chat/completions", {"model": MODELS[provider], "messages": USER, **extra})
        oaschema.validate(oaschema.CHAT_COMPLETION, response.json())
        streamed = matrix.post("/v1/chat/completions", {"model": MODELS[provider], "messages": USER, "stream": True,
                                                        "stream_options": {"include_usage": True}, **extra})
        events = streamed.body.decode().split("\n\n")
        assert events[-2] == "data: [DONE]"
        chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
        for chunk in chunks:
            oaschema.validate(oaschema.CHAT_COMPLETION_CHUNK, chunk)
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    error = matrix.post("/v1/chat/completions", {"model": MODELS[provider], "messages": USER, "n": 2 if
                                                 provider == "anthropic" else 1, "stop": ["a"] * 6})
    assert error.status == 400
    oaschema.validate(oaschema.ERROR, error.json())


def test_tool_choice_and_sampling_across(matrix: GatewayHandle) -> None:
    oa = OpenAIClient(matrix.url, STATIC_KEY).client
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}},
             {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
    forced = {"type": "function", "function": {"name": "get_time"}}
    reply = oa.chat.completions.create(model=MODELS["anthropic"], messages=USER, tools=tools, tool_choice=forced,
                                       temperature=1.5, top_p=0.9)
    assert reply.choices[0].message.tool_calls[0].function.name == "get_time"
    body = _upstream_requests(matrix, "anthropic")[-1]["body"]
    assert body["tool_choice"] == {"type": "tool", "name": "get_time"}
    assert body["temperature"] == 1.0 and body["top_p"] == 0.9  # Anthropic's range is 0..1
    reply = oa.chat.completions.create(model=MODELS["gemini"], messages=USER, tools=tools, tool_choice=forced,
                                       temperature=1.5)
    assert reply.choices[0].message.tool_calls[0].function.name == "get_time"
    body = _upstream_requests(matrix, "gemini")[-1]["body"]
    assert body["toolConfig"]["functionCallingConfig"] == {"mode": "ANY", "allowedFunctionNames": ["get_time"]}
    assert body["generationConfig"]["temperature"] == 1.5
    oa.chat.completions.create(model=MODELS["anthropic"], messages=USER, tools=tools, tool_choice="none")
    assert _upstream_requests(matrix, "anthropic")[-1]["body"]["tool_choice"] == {"type": "none"}
    an = anthropic.Anthropic(base_url=matrix.url, api_key=STATIC_KEY, max_retries=0)
    an.messages.create(model=MODELS["openai"], max_tokens=50, messages=USER, extra_body={"top_k": 5},
                       tools=[{"name": "get_time", "input_schema": {"type": "object"}}],
                       tool_choice={"type": "any", "disable_parallel_tool_use": True})
    body = _upstream_requests(matrix, "openai")[-1]["body"]
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False and "top_k" not in body
