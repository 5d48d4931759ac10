"""Every error status of the OpenAI surface, with its envelope, through the SDK and raw HTTP."""

from __future__ import annotations

import openai
import pytest

from tests.support import oaschema
from tests.support.gateway import LIMITED_KEY, MAX_BODY, STATIC_KEY, UPSTREAM_KEY, GatewayHandle, HttpResponse

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def _spec() -> None:
    oaschema.require_spec()


def _envelope(response: HttpResponse, status: int, code: str | None = None) -> dict:
    assert response.status == status, response.body
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    oaschema.validate(oaschema.ERROR, body)
    if code is not None:
        assert body["error"]["code"] == code
    for secret in (UPSTREAM_KEY, STATIC_KEY, "sk-dead"):
        assert secret not in response.body.decode()
    return body["error"]


@pytest.mark.parametrize(("body", "param"), [
    (b"{not json", None),
    (b"[1, 2]", None),
    (b"", None),
    ({"messages": USER}, "model"),
    ({"model": "gpt-4o"}, "messages"),
    ({"model": "gpt-4o", "messages": []}, "messages"),
    ({"model": "gpt-4o", "messages": USER, "stream": "yes"}, "stream"),
])
def test_400_malformed_or_missing_fields(gateway: GatewayHandle, body: object, param: str | None) -> None:
    error = _envelope(gateway.post("/v1/chat/completions", body), 400)
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_400_unknown_model(gateway: GatewayHandle) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.client().chat.completions.create(model="no-such-model", messages=USER)
    assert caught.value.code == "model_not_found" and "no-such-model" in caught.value.message


def test_400_wrong_content_type(gateway: GatewayHandle) -> None:
    response = gateway.post("/v1/chat/completions", b"model=gpt-4o",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert "application/json" in _envelope(response, 400, "unsupported_content_type")["message"]


def test_400_upstream_validation_passes_through(gateway: GatewayHandle) -> None:
    # The simulator is strict where OpenAI is: stream_options without stream is rejected upstream.
    response = gateway.post("/v1/chat/completions", {"model": "gpt-4o", "messages": USER,
                                                     "stream_options": {"include_usage": True}})
    assert _envelope(response, 400)["param"] == "stream_options"


def test_413_oversized_body(gateway: GatewayHandle) -> None:
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * (MAX_BODY + 10)}]}
    _envelope(gateway.post("/v1/chat/completions", big), 413, "request_too_large")


def test_401_missing_and_invalid_key(gateway: GatewayHandle) -> None:
    _envelope(gateway.post("/v1/chat/completions", {"model": "gpt-4o", "messages": USER}, key=None), 401,
              "missing_api_key")
    with pytest.raises(openai.AuthenticationError) as caught:
        gateway.client(key="sk-wrong").chat.completions.create(model="gpt-4o", messages=USER)
    assert caught.value.code == "invalid_api_key"


def test_401_model_not_allowed_for_key(gateway: GatewayHandle) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        gateway.client(key=LIMITED_KEY).chat.completions.create(model="gpt-4o", messages=USER)
    assert "not allowed to use the model `gpt-4o`" in caught.value.message
    assert gateway.client(key=LIMITED_KEY).chat.completions.create(model="gpt-4o-mini", messages=USER).choices


def test_429_upstream_rate_limit_passes_retry_after(gateway: GatewayHandle) -> None:
    gateway.fault("a", kind="status", status=429, retry_after=7, count=1)
    response = gateway.post("/v1/chat/completions", {"model": "only-a", "messages": USER})
    error = _envelope(response, 429, "rate_limit_exceeded")
    assert response.headers["retry-after"] == "7" and "sim-a" in error["message"]
    with pytest.raises(openai.RateLimitError):
        gateway.fault("a", kind="status", status=429, retry_after=9, count=1)  # longer than max_retry_wait_s
        gateway.client().chat.completions.create(model="only-a", messages=USER)


def test_500_upstream_error_names_the_upstream(gateway: GatewayHandle) -> None:
    gateway.fault("a", kind="status", status=503, count=3)  # every attempt (the retries too) fails
    error = _envelope(gateway.post("/v1/chat/completions", {"model": "only-a", "messages": USER}), 500,
                      "upstream_error")
    assert "sim-a" in error["message"] and "503" in error["message"]


def test_500_connection_refused(gateway: GatewayHandle) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        gateway.client().chat.completions.create(model="dead-model", messages=USER)
    assert caught.value.code == "upstream_unreachable" and "dead" in caught.value.message


def test_500_timeout(gateway: GatewayHandle) -> None:
    response = gateway.post("/v1/chat/completions",
                            {"model": "slow-model", "messages": [{"role": "user", "content": "[sim:delay_ms=3000]"}]})
    assert "timed out" in _envelope(response, 500, "upstream_timeout")["message"]


def test_500_upstream_rejecting_gateway_credentials(gateway: GatewayHandle) -> None:
    gateway.fault("a", kind="status", status=401, count=3)
    error = _envelope(gateway.post("/v1/chat/completions", {"model": "only-a", "messages": USER}), 500,
                      "upstream_auth_failed")
    assert "sim-a" in error["message"]


def test_failover_to_next_deployment_before_first_byte(gateway: GatewayHandle) -> None:
    gateway.fault("a", kind="status", status=500, count=1)
    raw = gateway.client().chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=USER)
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-yourouter-provider"] == "sim-b"
    row = gateway.usage_rows(raw.headers["x-request-id"])[0]
    assert row["attempts"] == 2 and row["deployment"] == "sim-b"


def test_vendor_header_pins_and_validates(gateway: GatewayHandle) -> None:
    client = gateway.client()
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=USER,
                                                           extra_headers={"vendor": "Azure"})
    assert raw.headers["x-yourouter-provider"] == "sim-b" and raw.headers["x-yourouter-vendor"] == "azure"
    auto = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=USER,
                                                            extra_headers={"vendor": "auto"})
    assert auto.headers["x-yourouter-provider"] == "sim-a"
    with pytest.raises(openai.BadRequestError) as unknown:
        client.chat.completions.create(model="gpt-4o-mini", messages=USER, extra_headers={"vendor": "nope"})
    assert "Unknown vendor" in unknown.value.message and "azure" in unknown.value.message
    with pytest.raises(openai.BadRequestError) as mismatch:
        client.chat.completions.create(model="gpt-4o", messages=USER, extra_headers={"vendor": "azure"})
    assert "does not serve" in mismatch.value.message and "openai" in mismatch.value.message


def test_unknown_path_and_method(gateway: GatewayHandle) -> None:
    _envelope(gateway.get("/v1/nothing-here"), 404, "not_found")
    _envelope(gateway.get("/v1/chat/completions"), 405, "method_not_allowed")


def test_error_rows_are_recorded(gateway: GatewayHandle) -> None:
    response = gateway.post("/v1/chat/completions", {"model": "dead-model", "messages": USER})
    row = gateway.usage_rows(response.headers["x-request-id"])[0]
    assert row["status"] == 500 and row["outcome"] == "upstream_error" and row["completion_tokens"] == 0
    response = gateway.post("/v1/chat/completions", {"model": "gpt-4o", "messages": USER}, key="sk-bad")
    row = gateway.usage_rows(response.headers["x-request-id"])[0]
    assert row["status"] == 401 and row["outcome"] == "auth_error" and row["key_id"] is None


def test_single_deployment_is_retried_with_backoff(gateway: GatewayHandle) -> None:
    gateway.fault("a", kind="status", status=500, count=2)
    response = gateway.post("/v1/chat/completions", {"model": "only-a", "messages": USER})
    assert response.status == 200 and response.headers["x-yourouter-attempts"] == "3"
    gateway.fault("a", kind="status", status=429, retry_after=1, count=1)  # a short Retry-After is waited out
    response = gateway.post("/v1/chat/completions", {"model": "only-a", "messages": USER})
    assert response.status == 200 and response.headers["x-yourouter-attempts"] == "2"
