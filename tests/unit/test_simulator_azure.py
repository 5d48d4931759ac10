"""Azure OpenAI's data plane on the OpenAI simulator, driven by the official `openai.AzureOpenAI` client and by
raw HTTP."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import AzureOpenAI, OpenAI
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from tests.unit.test_simulator_openai import WEATHER_ARGS, WEATHER_TOOL, Server
from yourouter.simulators.background import serve_in_thread
from yourouter.simulators.openai import SimulatorSettings, create_app

API_KEY = "azure-sim-key-0001"
API_VERSION = "2024-10-21"
DEPLOYMENT = "my-gpt4o-deployment"
CHAT_PATH = f"/openai/deployments/{DEPLOYMENT}/chat/completions"
USER: Any = [{"role": "user", "content": "hi there"}]
NOT_FOUND = {"error": {"code": "404", "message": "Resource not found"}}
DENIED = {"error": {"code": "401", "message": (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an "
    "active subscription and use a correct regional API endpoint for your resource.")}}
SAFE = {"filtered": False, "severity": "safe"}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve_in_thread(create_app(SimulatorSettings(api_key=API_KEY, seed=11))) as url:
        yield Server(url)


@pytest.fixture(autouse=True)
def _clean(server: Server) -> None:
    server.request("DELETE", "/_sim/faults")
    server.request("DELETE", "/_sim/requests")


def azure_client(server: Server, **options: Any) -> AzureOpenAI:
    options = {"api_key": API_KEY, "api_version": API_VERSION, "max_retries": 0, "timeout": 10, **options}
    return AzureOpenAI(azure_endpoint=server.url, **options)


@pytest.fixture
def client(server: Server) -> AzureOpenAI:
    return azure_client(server)


def azure_post(server: Server, path: str, body: object, key: str | None = API_KEY) -> Any:
    return server.request("POST", path, body, {"api-key": key} if key is not None else {})


def last_request(server: Server) -> dict[str, Any]:
    entry: dict[str, Any] = server.request("GET", "/_sim/requests").json()[-1]
    return entry


# --- chat ----------------------------------------------------------------------------------------------------------


def test_sdk_chat_names_the_deployment_and_carries_filter_results(server: Server, client: AzureOpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model=DEPLOYMENT, messages=USER)
    completion = raw.parse()
    assert completion.model == DEPLOYMENT and completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Hello from the simulator. You said: hi there"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    extra = completion.model_extra or {}
    prompt_filter = extra["prompt_filter_results"][0]
    assert prompt_filter["prompt_index"] == 0 and prompt_filter["content_filter_results"]["hate"] == SAFE
    assert prompt_filter["content_filter_results"]["jailbreak"] == {"filtered": False, "detected": False}
    choice_filter = (completion.choices[0].model_extra or {})["content_filter_results"]
    assert choice_filter["violence"] == SAFE and choice_filter["protected_material_text"]["detected"] is False
    assert raw.headers["apim-request-id"] == raw.headers["x-request-id"] and "openai-version" not in raw.headers
    seen = last_request(server)
    assert (seen["method"], seen["path"], seen["query"]) == ("POST", CHAT_PATH, f"api-version={API_VERSION}")
    assert seen["headers"]["api-key"] == API_KEY and "authorization" not in seen["headers"]
    assert seen["body"]["model"] == DEPLOYMENT  # what the SDK sent; Azure ignores it


def test_body_model_is_ignored_and_optional(server: Server) -> None:
    response = azure_post(server, f"{CHAT_PATH}?api-version={API_VERSION}", {"model": "gpt-3.5", "messages": USER})
    assert response.status == 200 and response.json()["model"] == DEPLOYMENT
    response = azure_post(server, f"{CHAT_PATH}?api-version={API_VERSION}", {"messages": USER})
    assert response.status == 200 and response.json()["model"] == DEPLOYMENT


def test_sdk_stream_opens_with_prompt_annotations_and_ends_with_usage(client: AzureOpenAI) -> None:
    chunks = list(client.chat.completions.create(model=DEPLOYMENT, messages=USER, stream=True,
                                                 stream_options={"include_usage": True}))
    opening = chunks[0]
    assert (opening.id, opening.object, opening.model, opening.created, opening.choices) == ("", "", "", 0, [])
    assert (opening.model_extra or {})["prompt_filter_results"][0]["content_filter_results"]["sexual"] == SAFE
    body = chunks[1:-1]
    assert {chunk.model for chunk in body} == {DEPLOYMENT}
    text = "".join(chunk.choices[0].delta.content or "" for chunk in body)
    assert text == "Hello from the simulator. You said: hi there"
    filters = [(chunk.choices[0].model_extra or {})["content_filter_results"] for chunk in body]
    assert filters[0] == {} and filters[-1] == {}  # role and finish deltas
    assert all(f["hate"] == SAFE for chunk, f in zip(body, filters, strict=True) if chunk.choices[0].delta.content)
    assert body[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_sdk_stream_helper_skips_the_annotation_chunk(client: AzureOpenAI) -> None:
    with client.chat.completions.stream(model=DEPLOYMENT, messages=USER) as stream:
        completion = stream.get_final_completion()
    assert completion.choices[0].message.content == "Hello from the simulator. You said: hi there"


def test_sdk_tool_calls_plain_and_streamed(client: AzureOpenAI) -> None:
    completion = client.chat.completions.create(model=DEPLOYMENT, messages=USER, tools=[WEATHER_TOOL])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == WEATHER_ARGS
    assert (choice.model_extra or {})["content_filter_results"] == {}  # no text to filter
    with client.chat.completions.stream(model=DEPLOYMENT, messages=USER, tools=[WEATHER_TOOL]) as stream:
        final = stream.get_final_completion()
    streamed = final.choices[0].message.tool_calls
    assert streamed is not None and json.loads(streamed[0].function.arguments) == WEATHER_ARGS


# --- embeddings ----------------------------------------------------------------------------------------------------


def test_sdk_embeddings_float_and_base64(server: Server, client: AzureOpenAI) -> None:
    floats = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="float")
    assert floats.model == "text-embedding-3-small" and [d.index for d in floats.data] == [0, 1]
    assert len(floats.data[0].embedding) == 16
    packed = client.embeddings.create(model="embed-deployment", input="a", dimensions=8)  # SDK default: base64
    assert packed.model == "embed-deployment" and len(packed.data[0].embedding) == 8
    seen = last_request(server)
    assert seen["path"] == "/openai/deployments/embed-deployment/embeddings"
    assert seen["body"]["encoding_format"] == "base64"


# --- Azure's routing and auth --------------------------------------------------------------------------------------


def test_wrong_or_missing_key_is_azures_401(server: Server) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        azure_client(server, api_key="wrong").chat.completions.create(model=DEPLOYMENT, messages=USER)
    assert caught.value.body == DENIED["error"] and caught.value.status_code == 401
    missing = azure_post(server, f"{CHAT_PATH}?api-version={API_VERSION}", {"messages": USER}, key=None)
    assert (missing.status, missing.json()) == (401, DENIED)


def test_bearer_token_is_accepted_too(server: Server) -> None:
    client = azure_client(server, api_key=None, azure_ad_token=API_KEY)
    assert client.chat.completions.create(model=DEPLOYMENT, messages=USER).model == DEPLOYMENT
    assert last_request(server)["headers"]["authorization"] == f"Bearer {API_KEY}"


def test_missing_api_version_is_404(server: Server) -> None:
    response = azure_post(server, CHAT_PATH, {"messages": USER})
    assert (response.status, response.json()) == (404, NOT_FOUND)
    assert last_request(server)["path"] == CHAT_PATH  # still logged
    plain = OpenAI(base_url=f"{server.url}/openai/deployments/{DEPLOYMENT}", api_key=API_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:  # the plain SDK sends no api-version
        plain.chat.completions.create(model=DEPLOYMENT, messages=USER)
    assert caught.value.body == NOT_FOUND["error"]


def test_unknown_operations_methods_and_versions(server: Server) -> None:
    query = f"?api-version={API_VERSION}"
    for method, path in (("POST", f"/openai/deployments/{DEPLOYMENT}/completions{query}"),
                         ("GET", f"{CHAT_PATH}{query}"), ("POST", f"/openai/deployments{query}")):
        response = server.request(method, path, {"messages": USER} if method == "POST" else None,
                                  {"api-key": API_KEY})
        assert (response.status, response.json()) == (404, NOT_FOUND), path
    response = azure_post(server, f"{CHAT_PATH}?api-version=latest", {"messages": USER})
    assert response.status == 400
    assert response.json() == {"error": {"code": "BadRequest", "message": "API version not supported"}}
    preview = azure_post(server, f"{CHAT_PATH}?api-version=2025-04-01-preview", {"messages": USER})
    assert preview.status == 200


def test_validation_errors_keep_openais_envelope(client: AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=DEPLOYMENT, messages=[])
    body = caught.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}


# --- faults --------------------------------------------------------------------------------------------------------


def test_rate_limit_is_azures_429(server: Server, client: AzureOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=DEPLOYMENT, messages=[
            {"role": "user", "content": "x [sim:status=429] [sim:retry_after=2]"}])
    error = caught.value
    assert error.response.headers["retry-after"] == "2" and isinstance(error.body, dict)
    assert error.body["code"] == "429"
    assert error.body["message"].startswith(
        f"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version {API_VERSION} "
        "have exceeded token rate limit")
    assert "Please retry after 2 seconds." in error.body["message"]
    server.request("POST", "/_sim/faults", {"kind": "status", "status": 429})
    with pytest.raises(openai.RateLimitError) as embedding:
        client.embeddings.create(model="embed", input="a")
    assert isinstance(embedding.value.body, dict) and "Embeddings_Create" in embedding.value.body["message"]


def test_queued_faults_and_directives_apply_on_deployment_paths(server: Server, client: AzureOpenAI) -> None:
    server.request("POST", "/_sim/faults", {"kind": "status", "status": 503})
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=DEPLOYMENT, messages=USER)
    received = []
    messages: Any = [{"role": "user", "content": "tell me [sim:midstream_disconnect=3]"}]
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model=DEPLOYMENT, messages=messages, stream=True):
            received.append(chunk)
    assert len(received) == 3 and received[0].id == ""  # the annotation chunk counts as an event
    with pytest.raises(openai.APIError) as caught:
        list(client.chat.completions.create(model=DEPLOYMENT, stream=True,
                                            messages=[{"role": "user", "content": "[sim:midstream_error=2]"}]))
    assert "server had an error" in caught.value.message
    server.request("POST", "/_sim/faults", {"kind": "disconnect"})
    connection = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=5)
    connection.request("POST", f"{CHAT_PATH}?api-version={API_VERSION}", json.dumps({"messages": USER}),
                       {"api-key": API_KEY})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        connection.getresponse()
    connection.close()
    assert client.chat.completions.create(model=DEPLOYMENT, messages=USER).model == DEPLOYMENT
