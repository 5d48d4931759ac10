"""AWS Bedrock behind the gateway: routing (vendor `aws`, pins and prefixes), failover from Bedrock's exceptions,
SigV4 credentials that Bedrock refuses, mid-stream exceptions, image URLs fetched into bytes, and Bedrock API keys.
(The matrix in test_translation_matrix.py runs every client dialect against the Bedrock simulator.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from tests.e2e.test_dialect_surfaces import image_server  # noqa: F401  (a fixture)
from tests.support.gateway import STATIC_KEY, GatewayHandle, start_gateway
from yourouter.config import settings_from_mapping
from yourouter.simulators.background import serve_in_thread
from yourouter.simulators.bedrock import ACCESS_KEY_ID
from yourouter.simulators.bedrock import create_app as bedrock_sim
from yourouter.simulators.openai import SimulatorSettings
from yourouter.simulators.openai import create_app as openai_sim

SECRET = "bedrock-sim-secret"
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
USER = [{"role": "user", "content": "hello bedrock"}]


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    settings = SimulatorSettings(api_key=SECRET)
    with serve_in_thread(bedrock_sim(settings)) as sim_b, serve_in_thread(openai_sim(settings)) as sim_o:
        db: Path = tmp_path_factory.mktemp("bedrock") / "gw.db"
        signed = {"base_url": sim_b, "region": "us-east-1", "aws_access_key_id": ACCESS_KEY_ID,
                  "aws_secret_access_key": SECRET}
        config = {
            "database_url": f"sqlite:///{db}",
            "usage": {"flush_interval_s": 0.05},
            "routing": {"strategy": "ordered", "cooldown_failures": 1000},
            "media": {"allow_private_networks": True},
            "keys": [{"key": STATIC_KEY, "name": "aws-tests", "models": ["*"]}],
            "providers": [
                {"name": "bedrock-east", "vendor": "aws", **signed,
                 "models": [{"name": "claude-sonnet", "upstream": MODEL}]},
                {"name": "openai-backup", "vendor": "openai", "base_url": f"{sim_o}/v1", "api_key": SECRET,
                 "models": ["claude-sonnet"]},
                {"name": "bedrock-badkey", "vendor": "aws", **signed, "aws_secret_access_key": "not-the-secret",
                 "models": ["bad-key-model"]},
                {"name": "bedrock-apikey", "vendor": "aws", "base_url": sim_b, "region": "us-east-1",
                 "api_key": SECRET, "models": ["api-key-model"]},
            ],
        }
        with start_gateway(settings_from_mapping(config, env={}), sims={"bedrock": sim_b, "openai": sim_o}) as gw:
            yield gw


def _last(gateway: GatewayHandle, sim: str) -> dict:
    return gateway.sim_requests(sim)[-1]


def test_served_by_bedrock_with_signed_requests_and_no_client_key(aws: GatewayHandle) -> None:
    response = aws.post("/v1/chat/completions", {"model": "claude-sonnet", "messages": USER, "max_tokens": 64})
    assert response.status == 200, response.body
    assert response.headers["x-yourouter-vendor"] == "aws"
    assert response.headers["x-yourouter-provider"] == "bedrock-east"
    assert response.json()["choices"][0]["message"]["content"].endswith("You said: hello bedrock")
    seen = _last(aws, "bedrock")
    assert seen["path"] == f"/model/{MODEL}/converse" and seen["body"]["inferenceConfig"] == {"maxTokens": 64}
    assert seen["headers"]["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/")
    assert STATIC_KEY not in str(seen)
    rows = aws.usage_rows(response.headers["x-request-id"])
    assert rows[0]["deployment"] == "bedrock-east" and rows[0]["completion_tokens"] > 0


def test_vendor_pin_and_prefix(aws: GatewayHandle) -> None:
    pinned = aws.post("/v1/chat/completions", {"model": "claude-sonnet", "messages": USER},
                      headers={"vendor": "AWS"})
    assert pinned.status == 200 and pinned.headers["x-yourouter-provider"] == "bedrock-east"
    prefixed = aws.post("/v1/chat/completions", {"model": "openai/claude-sonnet", "messages": USER})
    assert prefixed.status == 200 and prefixed.headers["x-yourouter-provider"] == "openai-backup"


@pytest.mark.parametrize("status", [429, 503, 424, 500])
def test_bedrock_exceptions_fail_over_to_the_next_deployment(aws: GatewayHandle, status: int) -> None:
    aws.fault("bedrock", kind="status", status=status)
    response = aws.post("/v1/chat/completions", {"model": "claude-sonnet", "messages": USER})
    assert response.status == 200, response.body
    assert response.headers["x-yourouter-provider"] == "openai-backup"
    assert response.headers["x-yourouter-attempts"] == "2"


def test_pinned_throttling_comes_back_as_429(aws: GatewayHandle) -> None:
    aws.fault("bedrock", kind="status", status=429, count=3)
    client = aws.client()
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="claude-sonnet", messages=USER,  # type: ignore[arg-type]
                                       extra_headers={"vendor": "aws"})


def test_refused_credentials_are_a_gateway_error_naming_no_secret(aws: GatewayHandle) -> None:
    response = aws.post("/v1/chat/completions", {"model": "bad-key-model", "messages": USER})
    assert response.status == 500
    error = response.json()["error"]
    assert error["code"] == "upstream_auth_failed" and "bedrock-badkey" in error["message"]
    assert "not-the-secret" not in response.body.decode()


def test_validation_errors_pass_to_the_client_as_400(aws: GatewayHandle) -> None:
    response = aws.post("/v1/chat/completions", {"model": "claude-sonnet",
                                                 "messages": [{"role": "user", "content": "   "}]})
    assert response.status == 400
    assert "is blank" in response.json()["error"]["message"]


def test_mid_stream_exception_ends_the_clients_stream_with_an_error(aws: GatewayHandle) -> None:
    client = anthropic.Anthropic(base_url=aws.url, api_key=STATIC_KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError):  # the SDK raises the stream's `error` event
        with client.messages.stream(model="claude-sonnet", max_tokens=100, messages=[
                {"role": "user", "content": "stream please [sim:midstream_error=3]"}]) as stream:
            for _ in stream.text_stream:
                pass


def test_stream_through_the_openai_sdk_has_usage(aws: GatewayHandle) -> None:
    chunks = list(aws.client().chat.completions.create(
        model="claude-sonnet", messages=USER, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True}, extra_headers={"vendor": "aws"}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith("You said: hello bedrock")
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0
    assert _last(aws, "bedrock")["path"] == f"/model/{MODEL}/converse-stream"


def test_image_urls_are_fetched_into_bytes(aws: GatewayHandle, image_server: str) -> None:  # noqa: F811
    content = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": image_server + "/cat.png"}}]
    reply = aws.client().chat.completions.create(model="claude-sonnet", extra_headers={"vendor": "aws"},
                                                 messages=[{"role": "user", "content": content}])  # type: ignore
    assert "1 image" in (reply.choices[0].message.content or "")
    blocks = _last(aws, "bedrock")["body"]["messages"][0]["content"]
    assert blocks[1]["image"]["format"] == "png" and blocks[1]["image"]["source"]["bytes"]


def test_bedrock_api_key_as_bearer(aws: GatewayHandle) -> None:
    response = aws.post("/v1/chat/completions", {"model": "api-key-model", "messages": USER})
    assert response.status == 200, response.body
    assert _last(aws, "bedrock")["headers"]["authorization"] == f"Bearer {SECRET}"
