"""The Gemini simulator over a real socket, driven by the official google-genai SDK (Gemini API and Vertex AI modes)
and by raw HTTP."""

from __future__ import annotations

import base64
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import google.oauth2.credentials
import pytest
from google import genai
from google.genai import errors, types

from yourouter.simulators.background import serve_in_thread
from yourouter.simulators.gemini import SimulatorSettings, create_app, parse_target

API_KEY = "AIza-sim-test-key"
MODEL = "gemini-2.5-flash"
GEMINI_PATH = f"/v1/models/{MODEL}:generateContent"
VERTEX_PATH = f"/v1/projects/p/locations/us-central1/publishers/google/models/{MODEL}:generateContent"
HELLO = "Hello from the simulator. You said: hi there"
USER: Any = [{"role": "user", "parts": [{"text": "hi there"}]}]
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={
            "city": types.Schema(type=types.Type.STRING),
            "unit": types.Schema(type=types.Type.STRING, enum=["celsius", "fahrenheit"]),
            "days": types.Schema(type=types.Type.INTEGER),
        },
        required=["city"],
    ),
)
WEATHER_ARGS = {"city": "Paris", "unit": "celsius", "days": 1}
TOOLS = [types.Tool(function_declarations=[WEATHER])]


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def error(self, code: int, status: str) -> dict[str, Any]:
        """The google.rpc error of this response, asserting the envelope shape."""
        assert self.status == code, self.body
        error = self.json()["error"]
        assert error["code"] == code and error["status"] == status and error["message"]
        assert set(error) <= {"code", "message", "status", "details"}
        return dict(error)


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

    def generate(self, path: str = GEMINI_PATH, **body: Any) -> Response:
        return self.request("POST", path, {"contents": USER, **body}, {"x-goog-api-key": API_KEY})

    def log(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.request("GET", "/_sim/requests").json()
        return entries

    def gemini(self, key: str = API_KEY) -> genai.Client:
        return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=self.url, timeout=10_000))

    def vertex(self, token: str = API_KEY) -> genai.Client:
        # A token-only credential (no refresh token, no expiry) is never "expired", so google-auth never refreshes it
        # and the SDK sends it as is: `Authorization: Bearer <token>`.
        credentials = google.oauth2.credentials.Credentials(token=token)  # type: ignore[no-untyped-call]
        return genai.Client(
            vertexai=True,
            project="p",
            location="us-central1",
            credentials=credentials,
            http_options=types.HttpOptions(base_url=self.url + "/", api_version="v1", timeout=10_000),
        )


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve_in_thread(create_app(SimulatorSettings(api_key=API_KEY, seed=7))) as url:
        yield Server(url)


@pytest.fixture(autouse=True)
def _clean(server: Server) -> None:
    server.request("DELETE", "/_sim/faults")
    server.request("DELETE", "/_sim/requests")


@pytest.fixture(scope="module")
def clients(server: Server) -> dict[str, genai.Client]:
    # built once: each client sets up an SSL context, which costs ~0.15 s
    return {"gemini": server.gemini(), "vertex": server.vertex()}


@pytest.fixture(params=["gemini", "vertex"])
def client(request: pytest.FixtureRequest, clients: dict[str, genai.Client]) -> genai.Client:
    """The SDK in Gemini API mode (x-goog-api-key) and in Vertex AI mode (bearer token), against the same server."""
    return clients[request.param]


def parts_of(response: types.GenerateContentResponse, index: int = 0) -> list[types.Part]:
    assert response.candidates is not None
    content = response.candidates[index].content
    assert content is not None and content.parts is not None
    return content.parts


# --- what the SDK sends -----------------------------------------------------------------------------------------------


def test_sdk_paths_and_headers_per_mode(server: Server, clients: dict[str, genai.Client]) -> None:
    gemini_client, vertex_client = clients["gemini"], clients["vertex"]
    gemini_client.models.generate_content(model=MODEL, contents="hi there")
    vertex_client.models.generate_content(model=MODEL, contents="hi there")
    list(gemini_client.models.generate_content_stream(model=MODEL, contents="hi there"))
    gemini, vertex, stream = server.log()
    assert (gemini["method"], gemini["path"], gemini["query"]) == ("POST", GEMINI_PATH, "")
    assert gemini["headers"]["x-goog-api-key"] == API_KEY and "authorization" not in gemini["headers"]
    assert (vertex["path"], vertex["query"]) == (VERTEX_PATH, "")
    assert vertex["headers"]["authorization"] == f"Bearer {API_KEY}" and "x-goog-api-key" not in vertex["headers"]
    assert (stream["path"], stream["query"]) == (f"/v1/models/{MODEL}:streamGenerateContent", "alt=sse")
    assert gemini["body"] == {"contents": [{"parts": [{"text": "hi there"}], "role": "user"}]}


def test_parse_target_forms() -> None:
    assert parse_target("/v1beta/models/gemini-2.5-flash:generateContent") is not None
    tuned = parse_target("/v1beta/tunedModels/my-model.v2:countTokens")
    assert tuned is not None and (tuned.model, tuned.method, tuned.vertex) == ("my-model.v2", "countTokens", False)
    express = parse_target("/v1beta1/publishers/google/models/gemini-2.0-flash-001:streamGenerateContent")
    assert express is not None and (express.model, express.vertex) == ("gemini-2.0-flash-001", True)
    listing = parse_target("/v1/models")
    assert listing is not None and listing.model is None and listing.method is None
    for bad in ("/v2/models/x:generateContent", "/v1/chat/completions", "/v1/projects/p/models/x:generateContent"):
        assert parse_target(bad) is None


# --- generate_content ---------------------------------------------------------------------------------------------


def test_generate_text(client: genai.Client) -> None:
    response = client.models.generate_content(model=MODEL, contents="hi there")
    assert response.text == HELLO
    assert response.candidates is not None and response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.model_version == MODEL and response.response_id
    usage = response.usage_metadata
    assert usage is not None and usage.candidates_token_count == math.ceil(len(HELLO) / 4)
    assert usage.prompt_token_count == math.ceil(len("hi there") / 4)
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert usage.thoughts_token_count is None


def test_raw_response_shape(server: Server) -> None:
    gemini = server.generate().json()
    assert list(gemini) == ["candidates", "usageMetadata", "modelVersion", "responseId"]
    assert gemini["candidates"] == [
        {"content": {"role": "model", "parts": [{"text": HELLO}]}, "finishReason": "STOP", "index": 0}
    ]
    vertex = server.generate(VERTEX_PATH).json()
    assert vertex["createTime"].endswith("Z") and vertex["usageMetadata"]["trafficType"] == "ON_DEMAND"


def test_system_instruction_counts_but_does_not_change_reply(server: Server, client: genai.Client) -> None:
    plain = client.models.generate_content(model=MODEL, contents="hi there")
    config = types.GenerateContentConfig(system_instruction="You are a terse assistant.")
    instructed = client.models.generate_content(model=MODEL, contents="hi there", config=config)
    assert instructed.text == HELLO
    assert plain.usage_metadata is not None and instructed.usage_metadata is not None
    extra = math.ceil(len("You are a terse assistant.") / 4)
    assert instructed.usage_metadata.prompt_token_count == (plain.usage_metadata.prompt_token_count or 0) + extra
    sent = server.log()[-1]["body"]
    assert sent["systemInstruction"]["parts"] == [{"text": "You are a terse assistant."}]


def test_inline_image_is_mentioned(server: Server, client: genai.Client) -> None:
    image = types.Part.from_bytes(data=b"\x89PNG\r\n\x1a\n fake", mime_type="image/png")
    response = client.models.generate_content(model=MODEL, contents=[image, "What is this?"])
    # the same wording as the OpenAI simulator, so cross-provider gateway tests can assert one string
    assert response.text == "Hello from the simulator. You said: What is this? (and 1 image)"
    assert response.usage_metadata is not None and (response.usage_metadata.prompt_token_count or 0) > 258
    inline = server.log()[-1]["body"]["contents"][0]["parts"][0]["inlineData"]
    assert base64.b64decode(inline["data"]) == b"\x89PNG\r\n\x1a\n fake"


def test_candidate_count_two(client: genai.Client) -> None:
    config = types.GenerateContentConfig(candidate_count=2)
    response = client.models.generate_content(model=MODEL, contents="hi there", config=config)
    assert response.candidates is not None and [c.index for c in response.candidates] == [0, 1]
    assert [part.text for part in parts_of(response, 1)] == [HELLO + " (choice 2)"]


def test_max_output_tokens_and_stop_sequences(client: genai.Client) -> None:
    limited = client.models.generate_content(
        model=MODEL, contents="hi there", config=types.GenerateContentConfig(max_output_tokens=3)
    )
    assert limited.candidates is not None and limited.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert limited.text == "Hello from t"
    assert limited.usage_metadata is not None and limited.usage_metadata.candidates_token_count == 3
    stopped = client.models.generate_content(
        model=MODEL, contents="hi there", config=types.GenerateContentConfig(stop_sequences=["You said"])
    )
    assert stopped.text == "Hello from the simulator. "
    assert stopped.candidates is not None and stopped.candidates[0].finish_reason == types.FinishReason.STOP


def test_json_mode_with_schemas(client: genai.Client) -> None:
    schema = types.Schema(
        type=types.Type.OBJECT,
        properties={"city": types.Schema(type=types.Type.STRING), "temp": types.Schema(type=types.Type.NUMBER)},
    )
    config = types.GenerateContentConfig(response_mime_type="application/json", response_schema=schema)
    response = client.models.generate_content(model=MODEL, contents="weather as JSON", config=config)
    assert json.loads(response.text or "") == {"city": "Paris", "temp": 1}
    json_schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    config = types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=json_schema)
    assert json.loads(client.models.generate_content(model=MODEL, contents="x", config=config).text or "") == {
        "ok": True
    }
    config = types.GenerateContentConfig(response_mime_type="application/json")
    bare = client.models.generate_content(model=MODEL, contents="hi there", config=config)
    assert json.loads(bare.text or "") == {"reply": HELLO}


def test_include_thoughts_adds_thought_part(client: genai.Client) -> None:
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True))
    response = client.models.generate_content(model=MODEL, contents="hi there", config=config)
    thought, answer = parts_of(response)
    assert thought.thought is True and "hi there" in (thought.text or "")
    assert answer.thought is None and answer.text == HELLO and response.text == HELLO
    usage = response.usage_metadata
    assert usage is not None and usage.thoughts_token_count == math.ceil(len(thought.text or "") / 4)
    assert usage.total_token_count == (usage.prompt_token_count or 0) + (usage.candidates_token_count or 0) + (
        usage.thoughts_token_count or 0
    )


def test_snake_case_fields_and_other_path_forms(server: Server) -> None:
    body = {
        "contents": USER,
        "system_instruction": {"parts": [{"text": "be brief"}]},
        "generation_config": {"max_output_tokens": 3, "thinking_config": {"include_thoughts": False}},
    }
    headers = {"x-goog-api-key": API_KEY}
    snake = server.request("POST", "/v1beta/models/gemini-2.5-flash:generateContent", body, headers).json()
    assert snake["candidates"][0]["finishReason"] == "MAX_TOKENS"
    for path in (
        "/v1beta/tunedModels/my-tuned.model-1:generateContent",
        "/v1beta1/publishers/google/models/gemini-2.0-flash-001:generateContent",
        "/v1beta/models/gemini-2.5-flash%3AgenerateContent",
    ):
        response = server.generate(path)
        assert response.status == 200, path
        assert response.json()["candidates"][0]["content"]["parts"] == [{"text": HELLO}]
    assert server.generate("/v1/models/gemini-2.5-flash:chat").error(404, "NOT_FOUND")
    assert server.request("GET", f"/v1/models/{MODEL}:generateContent", headers=headers).status == 404


# --- tools --------------------------------------------------------------------------------------------------------


def test_function_call_round_trip(server: Server, client: genai.Client) -> None:
    config = types.GenerateContentConfig(tools=TOOLS)
    first = client.models.generate_content(model=MODEL, contents="weather in Paris?", config=config)
    assert first.candidates is not None and first.candidates[0].finish_reason == types.FinishReason.STOP
    assert first.function_calls is not None and len(first.function_calls) == 1
    call = first.function_calls[0]
    assert call.name == "get_weather" and call.args == WEATHER_ARGS and call.id is None
    assert parts_of(first)[0].thought_signature is None  # only gemini-3 models sign calls
    assert first.candidates[0].content is not None
    contents = [
        types.Content(role="user", parts=[types.Part(text="weather in Paris?")]),
        first.candidates[0].content,
        types.Content(role="user", parts=[types.Part.from_function_response(name="get_weather", response={"c": 21})]),
    ]
    second = client.models.generate_content(model=MODEL, contents=contents, config=config)
    assert second.text == 'Based on the tool results: get_weather returned {"c":21}.'
    assert second.function_calls is None
    sent = server.log()[-1]["body"]["contents"]
    assert sent[1]["parts"][0]["functionCall"] == {"name": "get_weather", "args": WEATHER_ARGS}


def test_gemini_3_signs_calls_and_requires_the_signature_back(server: Server, client: genai.Client) -> None:
    model = "gemini-3-pro-preview"
    config = types.GenerateContentConfig(tools=TOOLS)
    first = client.models.generate_content(model=model, contents="weather?", config=config)
    signature = parts_of(first)[0].thought_signature
    assert signature and len(signature) == 32
    assert first.candidates is not None and first.candidates[0].content is not None
    answer = types.Content(role="user", parts=[types.Part.from_function_response(name="get_weather", response={})])
    contents = [types.Content(role="user", parts=[types.Part(text="weather?")]), first.candidates[0].content, answer]
    assert client.models.generate_content(model=model, contents=contents, config=config).text
    unsigned: Any = [
        *USER,
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {}}}]},
    ]
    error = server.generate(f"/v1beta/models/{model}:generateContent", contents=unsigned).error(400, "INVALID_ARGUMENT")
    assert "thought_signature" in error["message"]


def get_weather(city: str) -> dict[str, Any]:
    """Current weather for a city."""
    return {"city": city, "temp_c": 21}


def test_automatic_function_calling_in_chat(server: Server, client: genai.Client) -> None:
    # the SDK runs the Python tool itself and sends the result back, echoing Gemini 3's thought signature
    chat = client.chats.create(model="gemini-3-pro-preview", config=types.GenerateContentConfig(tools=[get_weather]))
    response = chat.send_message("weather in Paris?")
    assert response.text == 'Based on the tool results: get_weather returned {"result":{"city":"Paris","temp_c":21}}.'
    first, second = server.log()[-2:]
    assert first["body"]["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert [content["role"] for content in second["body"]["contents"]] == ["user", "model", "user"]
    assert second["body"]["contents"][1]["parts"][0]["thoughtSignature"]


def test_tool_config_modes(client: genai.Client) -> None:
    echo = types.FunctionDeclaration(name="echo", parameters_json_schema={"type": "object", "properties": {}})
    tools = [types.Tool(function_declarations=[WEATHER, echo])]

    def calling(mode: str, names: list[str] | None = None) -> types.GenerateContentConfig:
        function_config = types.FunctionCallingConfig(
            mode=types.FunctionCallingConfigMode(mode), allowed_function_names=names
        )
        return types.GenerateContentConfig(
            tools=tools, tool_config=types.ToolConfig(function_calling_config=function_config)
        )

    none = client.models.generate_content(model=MODEL, contents="hi there", config=calling("NONE"))
    assert none.text == HELLO and none.function_calls is None
    forced = client.models.generate_content(model=MODEL, contents="hi there", config=calling("ANY", ["echo"]))
    assert forced.function_calls is not None and [(c.name, c.args) for c in forced.function_calls] == [("echo", {})]
    two = client.models.generate_content(model=MODEL, contents="both [sim:tool_calls=2]", config=calling("AUTO"))
    assert two.function_calls is not None and [c.name for c in two.function_calls] == ["get_weather", "echo"]


def test_streaming_function_call_arrives_whole(client: genai.Client) -> None:
    chunks = list(
        client.models.generate_content_stream(
            model=MODEL, contents="weather?", config=types.GenerateContentConfig(tools=TOOLS)
        )
    )
    with_calls = [chunk for chunk in chunks if chunk.function_calls]
    assert len(with_calls) == 1
    assert with_calls[0].function_calls is not None and with_calls[0].function_calls[0].args == WEATHER_ARGS
    assert chunks[-1].candidates is not None and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP


# --- streaming ----------------------------------------------------------------------------------------------------


def test_stream_text_accumulates_and_last_chunk_has_usage(client: genai.Client) -> None:
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="hi there"))
    assert len(chunks) >= 3
    assert "".join(chunk.text or "" for chunk in chunks) == HELLO
    assert all(chunk.candidates and chunk.candidates[0].finish_reason is None for chunk in chunks[:-1])
    last = chunks[-1]
    assert last.candidates is not None and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None and last.usage_metadata.candidates_token_count == math.ceil(len(HELLO) / 4)
    assert chunks[0].usage_metadata is not None and chunks[0].usage_metadata.candidates_token_count is None
    assert len({chunk.response_id for chunk in chunks}) == 1


def test_raw_sse_framing_uses_crlf(server: Server) -> None:
    response = server.generate(f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse")
    assert response.status == 200 and response.headers["content-type"].startswith("text/event-stream")
    text = response.body.decode()
    assert text.endswith("\r\n\r\n") and "[DONE]" not in text
    events = text[: -len("\r\n\r\n")].split("\r\n\r\n")
    assert all(event.startswith("data: ") and "\n" not in event for event in events)
    chunks = [json.loads(event[len("data: ") :]) for event in events]
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == HELLO
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["totalTokenCount"] == 2 + 11


def test_stream_without_alt_is_a_json_array(server: Server) -> None:
    response = server.generate(f"/v1beta/models/{MODEL}:streamGenerateContent")
    assert response.headers["content-type"] == "application/json"
    assert response.body.startswith(b"[{") and response.body.endswith(b"}]") and b",\r\n{" in response.body
    chunks = json.loads(response.body)
    assert len(chunks) >= 3
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == HELLO


def test_stream_pacing_and_latency() -> None:
    with serve_in_thread(create_app(SimulatorSettings(latency_ms=150, chunk_delay_ms=40))) as url:
        client = Server(url).gemini()
        started = time.monotonic()
        arrivals = [time.monotonic() for _ in client.models.generate_content_stream(model=MODEL, contents="hi there")]
    assert arrivals[0] - started >= 0.14
    assert arrivals[-1] - arrivals[0] >= 0.04 * (len(arrivals) - 1) * 0.8


# --- countTokens, embeddings, models ------------------------------------------------------------------------------


def test_count_tokens_matches_prompt_tokens(client: genai.Client) -> None:
    contents = "a somewhat longer prompt to count"
    counted = client.models.count_tokens(model=MODEL, contents=contents)
    generated = client.models.generate_content(model=MODEL, contents=contents)
    assert counted.total_tokens == math.ceil(len(contents) / 4)
    assert generated.usage_metadata is not None and generated.usage_metadata.prompt_token_count == counted.total_tokens


def test_count_tokens_of_a_whole_generate_request(server: Server) -> None:
    request = {"contents": USER, "systemInstruction": {"parts": [{"text": "abcd"}]}}
    path = f"/v1beta/models/{MODEL}:countTokens"
    counted = server.request("POST", path, {"generateContentRequest": request}, {"x-goog-api-key": API_KEY})
    assert counted.json() == {"totalTokens": 2 + 1}
    server.request("POST", path, {"contents": []}, {"x-goog-api-key": API_KEY}).error(400, "INVALID_ARGUMENT")


def test_embed_content_single_and_several(server: Server, client: genai.Client) -> None:
    config = types.EmbedContentConfig(output_dimensionality=8)
    for model in ("text-embedding-004", "gemini-embedding-001"):
        one = client.models.embed_content(model=model, contents="alpha", config=config)
        several = client.models.embed_content(model=model, contents=["alpha", "beta", "gamma"], config=config)
        assert one.embeddings is not None and several.embeddings is not None and len(several.embeddings) == 3
        vectors = [embedding.values or [] for embedding in several.embeddings]
        assert one.embeddings[0].values == vectors[0]  # deterministic per text
        assert all(len(vector) == 8 for vector in vectors) and vectors[0] != vectors[1]
        assert all(abs(math.fsum(v * v for v in vector) - 1) < 1e-5 for vector in vectors)
    default = client.models.embed_content(model="gemini-embedding-001", contents="alpha")
    assert default.embeddings is not None and len(default.embeddings[0].values or []) == 16


def test_raw_embed_endpoints(server: Server) -> None:
    headers = {"x-goog-api-key": API_KEY}
    content = {"parts": [{"text": "alpha"}]}
    single = server.request("POST", "/v1beta/models/gemini-embedding-001:embedContent", {"content": content}, headers)
    assert list(single.json()) == ["embedding"] and len(single.json()["embedding"]["values"]) == 16
    batch = {"requests": [{"model": "models/gemini-embedding-001", "content": content, "outputDimensionality": 4}]}
    response = server.request("POST", "/v1beta/models/gemini-embedding-001:batchEmbedContents", batch, headers)
    assert [len(item["values"]) for item in response.json()["embeddings"]] == [4]
    assert response.json()["embeddings"][0]["values"] != single.json()["embedding"]["values"][:4]  # renormalised
    mismatch = {"requests": [{"model": "models/other", "content": content}]}
    server.request("POST", "/v1beta/models/gemini-embedding-001:batchEmbedContents", mismatch, headers).error(
        400, "INVALID_ARGUMENT"
    )


def test_models_list_and_get(server: Server, client: genai.Client) -> None:
    names = [model.name for model in client.models.list()]
    assert any(name and name.endswith("/gemini-2.5-flash") for name in names)
    assert any(name and name.endswith("/gemini-embedding-001") for name in names)
    model = client.models.get(model="gemini-2.5-pro")
    assert model.name is not None and model.name.endswith("gemini-2.5-pro")
    listed = server.request("GET", "/v1beta/models?pageSize=2", headers={"x-goog-api-key": API_KEY}).json()
    assert [m["name"] for m in listed["models"]] == ["models/gemini-2.5-flash", "models/gemini-2.5-pro"]
    assert listed["nextPageToken"] == "2"
    assert "generateContent" in listed["models"][0]["supportedGenerationMethods"]
    with pytest.raises(errors.ClientError) as caught:
        client.models.get(model="no-such-model")
    assert caught.value.code == 404 and caught.value.status == "NOT_FOUND"


# --- auth ---------------------------------------------------------------------------------------------------------


def test_gemini_api_bad_key_is_400_api_key_invalid(server: Server) -> None:
    client = server.gemini(key="AIza-wrong")
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents="hi")
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert caught.value.message == "API key not valid. Please pass a valid API key."
    details = caught.value.details["error"]["details"]
    assert details[0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert details[0]["reason"] == "API_KEY_INVALID"
    assert details[0]["metadata"] == {"service": "generativelanguage.googleapis.com"}


def test_vertex_bad_token_is_401(server: Server) -> None:
    client = server.vertex(token="ya29.wrong")
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents="hi")
    assert (caught.value.code, caught.value.status) == (401, "UNAUTHENTICATED")


def test_other_key_locations_and_missing_key(server: Server) -> None:
    body = {"contents": USER}
    assert server.request("POST", f"{GEMINI_PATH}?key={API_KEY}", body).status == 200
    assert server.request("POST", GEMINI_PATH, body, {"authorization": f"Bearer {API_KEY}"}).status == 200
    server.request("POST", f"{GEMINI_PATH}?key=nope", body).error(400, "INVALID_ARGUMENT")
    server.request("POST", GEMINI_PATH, body).error(403, "PERMISSION_DENIED")
    health = server.request("GET", "/health")
    assert health.status == 200 and health.json() == {"status": "ok"}


# --- validation ---------------------------------------------------------------------------------------------------

FUNCTION: Any = {"name": "f", "parameters": {"type": "object"}}
CALL_TURN: Any = {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]}
BAD_REQUESTS: list[tuple[str, dict[str, Any], str]] = [
    ("missing contents", {"contents": None}, "contents is not specified"),
    ("empty parts", {"contents": [{"role": "user", "parts": []}]}, "contents.parts must not be empty"),
    ("bad role", {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role: user, model"),
    ("part without data", {"contents": [{"parts": [{"thought": True}]}]}, "oneof field 'data'"),
    ("two data fields", {"contents": [{"parts": [{"text": "x", "inlineData": {}}]}]}, "oneof field 'data'"),
    (
        "http file uri",
        {"contents": [{"parts": [{"fileData": {"mimeType": "image/png", "fileUri": "http://example.com/a.png"}}]}]},
        "unsupported file uri",
    ),
    ("bad base64", {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "%%%"}}]}]}, "Base64"),
    ("inline without mime", {"contents": [{"parts": [{"inlineData": {"data": "AAAA"}}]}]}, "MIME type"),
    (
        "parameters and parametersJsonSchema",
        {"tools": [{"functionDeclarations": [{**FUNCTION, "parametersJsonSchema": {"type": "object"}}]}]},
        "mutually exclusive",
    ),
    ("bad function name", {"tools": [{"functionDeclarations": [{"name": "9lives"}]}]}, "Invalid function name"),
    (
        "bad schema type",
        {"tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "dict"}}]}]},
        "parameters.type",
    ),
    (
        "unknown allowed name",
        {
            "tools": [{"functionDeclarations": [FUNCTION]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["g"]}},
        },
        "not declared",
    ),
    (
        "bad mode",
        {
            "tools": [{"functionDeclarations": [FUNCTION]}],
            "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}},
        },
        "mode",
    ),
    ("temperature", {"generationConfig": {"temperature": 2.5}}, "temperature"),
    ("top_p", {"generationConfig": {"topP": 1.5}}, "top_p"),
    ("candidate count", {"generationConfig": {"candidateCount": 0}}, "candidate_count"),
    ("max output tokens", {"generationConfig": {"maxOutputTokens": 0}}, "max_output_tokens"),
    ("too many stops", {"generationConfig": {"stopSequences": list("abcdef")}}, "stop_sequences"),
    ("mime type", {"generationConfig": {"responseMimeType": "text/html"}}, "allowed mimetypes"),
    ("schema without json mime", {"generationConfig": {"responseSchema": {"type": "STRING"}}}, "response_mime_type"),
    ("unknown field", {"messages": []}, 'Unknown name "messages"'),
    ("unknown generation field", {"generationConfig": {"max_tokens": 5}}, 'Unknown name "max_tokens"'),
    (
        "response without call",
        {"contents": [*USER, {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]},
        "function response turn comes immediately after a function call turn",
    ),
    (
        "response count mismatch",
        {
            "contents": [
                *USER,
                {"role": "model", "parts": [*CALL_TURN["parts"], *CALL_TURN["parts"]]},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
            ]
        },
        "number of function response parts",
    ),
    (
        "function response not an object",
        {"contents": [*USER, CALL_TURN, {"role": "function", "parts": [{"functionResponse": {"name": "f"}}]}]},
        "response",
    ),
]


@pytest.mark.parametrize(("overrides", "fragment"), [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_invalid_requests_get_400(server: Server, overrides: dict[str, Any], fragment: str) -> None:
    body = {key: value for key, value in {"contents": USER, **overrides}.items() if value is not None}
    response = server.request("POST", GEMINI_PATH, body, {"x-goog-api-key": API_KEY})
    assert fragment in response.error(400, "INVALID_ARGUMENT")["message"]


def test_valid_edge_cases_are_accepted(server: Server) -> None:
    contents: Any = [
        {"parts": [{"text": "no role means user"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
        {"role": "function", "parts": [{"functionResponse": {"name": "f", "response": {"output": 1}}}]},
    ]
    tools = [{"functionDeclarations": [{"name": "f", "parameters": {"type": "object", "properties": {}}}]}]
    response = server.generate(contents=contents, tools=tools)
    assert response.json()["candidates"][0]["content"]["parts"] == [
        {"text": 'Based on the tool results: f returned {"output":1}.'}
    ]
    files = [{"parts": [{"fileData": {"fileUri": "gs://bucket/cat.png", "mimeType": "image/png"}}, {"text": "hm"}]}]
    assert (
        server.generate(contents=files).json()["candidates"][0]["content"]["parts"][0]["text"].endswith("(and 1 image)")
    )


def test_vertex_requires_roles_in_multi_turn_requests(server: Server) -> None:
    contents = [{"parts": [{"text": "hi"}]}, {"role": "model", "parts": [{"text": "hello"}]}, *USER]
    assert server.generate(contents=contents).status == 200  # the Gemini API defaults a missing role to user
    error = server.generate(VERTEX_PATH, contents=contents).error(400, "INVALID_ARGUMENT")
    assert error["message"] == "Please use a valid role: user, model."
    assert server.generate(VERTEX_PATH, contents=[{"parts": [{"text": "hi"}]}]).status == 200


def test_non_json_bodies_get_400(server: Server) -> None:
    headers = {"x-goog-api-key": API_KEY}
    for raw in (b"{not json", b"[1, 2]"):
        server.request("POST", GEMINI_PATH, raw, headers).error(400, "INVALID_ARGUMENT")


def test_sdk_surfaces_validation_error(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(
            model=MODEL, contents="x", config=types.GenerateContentConfig(stop_sequences=list("abcdef"))
        )
    assert caught.value.code == 400 and "stop_sequences" in (caught.value.message or "")


# --- fault injection ------------------------------------------------------------------------------------------------


def test_control_endpoint_429_with_retry_after(server: Server, client: genai.Client) -> None:
    queued = server.request("POST", "/_sim/faults", {"kind": "status", "status": 429, "retry_after": 2, "count": 2})
    assert queued.status == 200 and queued.json()["queued"] == 2
    response = server.generate()
    error = response.error(429, "RESOURCE_EXHAUSTED")
    assert response.headers["retry-after"] == "2"
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"} in error["details"]
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents="hi")
    assert caught.value.code == 429 and caught.value.status == "RESOURCE_EXHAUSTED"
    assert server.generate().status == 200  # the fault applied to exactly two requests


def test_503_via_control_and_directive(server: Server, client: genai.Client) -> None:
    server.request("POST", "/_sim/faults", {"kind": "status", "status": 503})
    with pytest.raises(errors.ServerError) as caught:
        client.models.generate_content(model=MODEL, contents="hi")
    assert (caught.value.code, caught.value.status) == (503, "UNAVAILABLE")
    with pytest.raises(errors.ServerError) as again:
        client.models.generate_content(model=MODEL, contents="hi [sim:status=504]")
    assert (again.value.code, again.value.status) == (504, "DEADLINE_EXCEEDED")
    assert client.models.generate_content(model=MODEL, contents="hi there").text == HELLO


def test_fault_queue_listing_clearing_and_bad_fault(server: Server) -> None:
    server.request("POST", "/_sim/faults", {"kind": "status", "status": 500, "count": 3})
    assert server.request("GET", "/_sim/faults").json()[0]["remaining"] == 3
    assert server.request("DELETE", "/_sim/faults").json() == {"cleared": True}
    assert server.request("GET", "/_sim/faults").json() == []
    server.request("POST", "/_sim/faults", {"kind": "explode"}).error(400, "INVALID_ARGUMENT")
    # countTokens and model listing never consume a fault
    server.request("POST", "/_sim/faults", {"kind": "status", "status": 500})
    count = server.request("POST", f"/v1/models/{MODEL}:countTokens", {"contents": USER}, {"x-goog-api-key": API_KEY})
    assert count.json() == {"totalTokens": 2}
    server.generate().error(500, "INTERNAL")


def test_reply_and_delay_directives(client: genai.Client) -> None:
    started = time.monotonic()
    response = client.models.generate_content(model=MODEL, contents="slow [sim:delay_ms=200] please")
    assert time.monotonic() - started >= 0.19
    assert response.text == "Hello from the simulator. You said: slow please"
    assert client.models.generate_content(model=MODEL, contents="[sim:reply=Bonjour] hi").text == "Bonjour"


def test_midstream_error_raises_in_sdk_stream(client: genai.Client) -> None:
    received = []
    with pytest.raises(errors.ServerError) as caught:
        for chunk in client.models.generate_content_stream(model=MODEL, contents="tell me [sim:midstream_error=2]"):
            received.append(chunk)
    assert len(received) == 2 and caught.value.code == 503 and caught.value.status == "UNAVAILABLE"


def test_midstream_error_raw_event_and_disconnect(server: Server, clients: dict[str, genai.Client]) -> None:
    server.request("POST", "/_sim/faults", {"kind": "midstream_error", "after_events": 1})
    events = server.generate(f"/v1/models/{MODEL}:streamGenerateContent?alt=sse").body.decode().split("\r\n\r\n")
    assert len(events) == 3 and events[-1] == ""
    assert json.loads(events[1][len("data: ") :]) == {
        "error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}
    }
    server.request("POST", "/_sim/faults", {"kind": "midstream_error", "after_events": 1})
    array = json.loads(server.generate(f"/v1/models/{MODEL}:streamGenerateContent").body)
    assert len(array) == 2 and array[1]["error"]["code"] == 503
    received = []
    # the SDK lets its HTTP client's protocol error through when the connection drops mid-body
    with pytest.raises(Exception, match="peer closed connection"):
        for chunk in clients["gemini"].models.generate_content_stream(
            model=MODEL, contents="x [sim:midstream_disconnect=2]"
        ):
            received.append(chunk.text)
    assert received == ["Hello ", "from "]
    with pytest.raises(Exception, match="Server disconnected without sending a response"):
        clients["gemini"].models.generate_content(model=MODEL, contents="x [sim:disconnect]")


def test_fail_rate_from_settings() -> None:
    with serve_in_thread(create_app(SimulatorSettings(fail_rate=1.0, fail_status=503))) as url:
        sim = Server(url)
        sim.generate().error(503, "UNAVAILABLE")
        assert sim.request("GET", "/v1beta/models").status == 200  # only generation and embeddings fail


# --- request log --------------------------------------------------------------------------------------------------


def test_request_log_records_what_arrived(server: Server, clients: dict[str, genai.Client]) -> None:
    clients["vertex"].models.count_tokens(model=MODEL, contents="hi")
    server.request("POST", f"{GEMINI_PATH}?key={API_KEY}", b"not json")
    count, broken = server.log()
    assert count["path"] == f"/v1/projects/p/locations/us-central1/publishers/google/models/{MODEL}:countTokens"
    assert count["body"] == {"contents": [{"parts": [{"text": "hi"}], "role": "user"}]}
    assert count["headers"]["user-agent"].startswith("google-genai-sdk/")
    assert (broken["path"], broken["query"], broken["body"]) == (GEMINI_PATH, f"key={API_KEY}", None)
    assert server.request("DELETE", "/_sim/requests").json() == {"cleared": True}
    assert server.log() == []
