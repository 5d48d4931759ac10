"""Embeddings and Models through a running gateway with the official SDK."""

from __future__ import annotations

import json
import math

import openai
import pytest

from tests.support import oaschema
from tests.support.gateway import LIMITED_KEY, GatewayHandle


@pytest.fixture(autouse=True)
def _spec() -> None:
    oaschema.require_spec()


def test_embeddings_sdk_default_base64(gateway: GatewayHandle) -> None:
    raw = gateway.client().embeddings.with_raw_response.create(model="text-embedding-3-small",
                                                               input=["first text", "second text"], dimensions=8)
    result = raw.parse()
    oaschema.validate_embeddings(json.loads(raw.content))
    assert [item.index for item in result.data] == [0, 1]
    assert all(len(item.embedding) == 8 for item in result.data)
    assert math.isclose(sum(x * x for x in result.data[0].embedding), 1.0, rel_tol=1e-3)
    assert result.data[0].embedding != result.data[1].embedding
    assert gateway.sim_requests("a")[-1]["body"]["encoding_format"] == "base64"  # what the SDK asked, unchanged
    row = gateway.usage_rows(raw.headers["x-request-id"])[0]
    assert row["endpoint"] == "embeddings" and row["prompt_tokens"] == result.usage.prompt_tokens > 0


def test_embeddings_float(gateway: GatewayHandle) -> None:
    response = gateway.post("/v1/embeddings", {"model": "text-embedding-3-small", "input": "hello",
                                               "encoding_format": "float"})
    assert response.status == 200
    body = response.json()
    oaschema.validate(oaschema.EMBEDDINGS, body)
    assert isinstance(body["data"][0]["embedding"][0], float)


@pytest.mark.parametrize("body", [{"model": "text-embedding-3-small"}, {"model": "text-embedding-3-small",
                                                                        "input": ""},
                                  {"input": "x"}, {"model": "text-embedding-3-small", "input": "x",
                                                   "encoding_format": "int8"}])
def test_embeddings_bad_requests(gateway: GatewayHandle, body: dict) -> None:
    response = gateway.post("/v1/embeddings", body)
    assert response.status == 400
    oaschema.validate(oaschema.ERROR, response.json())


def test_models_list_shows_what_the_key_may_use(gateway: GatewayHandle) -> None:
    raw = gateway.get("/v1/models")
    assert raw.status == 200 and raw.headers["x-request-id"]
    oaschema.validate(oaschema.MODELS_LIST, raw.json())
    models = {model.id: model for model in gateway.client().models.list()}
    assert {"gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "only-b"} <= set(models)
    assert models["gpt-4o"].owned_by == "openai" and models["only-b"].owned_by == "azure"
    limited = [model.id for model in gateway.client(key=LIMITED_KEY).models.list()]
    assert limited == ["gpt-4o-mini"]


def test_models_retrieve_and_404(gateway: GatewayHandle) -> None:
    model = gateway.client().models.retrieve("gpt-4o")
    oaschema.validate(oaschema.MODEL, model.model_dump())
    assert model.id == "gpt-4o" and model.owned_by == "openai"
    with pytest.raises(openai.NotFoundError):
        gateway.client().models.retrieve("nope")
    with pytest.raises(openai.NotFoundError):  # exists, but not for this key
        gateway.client(key=LIMITED_KEY).models.retrieve("gpt-4o")
    with pytest.raises(openai.AuthenticationError):
        gateway.client(key="sk-nobody").models.list()


def test_health(gateway: GatewayHandle) -> None:
    response = gateway.get("/health", key=None)
    assert response.status == 200 and response.json()["status"] == "ok"
    assert response.headers["x-request-id"]
