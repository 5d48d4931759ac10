"""Key limits and budgets through the gateway: RPM/TPM/concurrency 429s with OpenAI's rate-limit headers, budget
reservations that hold under concurrency, zero-completion insurance, `GET /v1/key`, the other dialects' envelopes,
and limits shared by two gateway instances through Redis."""

from __future__ import annotations

import concurrent.futures
import secrets
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gtypes

from tests.support.gateway import GatewayHandle, HttpResponse, start_gateway
from tests.support.services import redis_url
from yourouter.config import settings_from_mapping

UPSTREAM_KEY = "sk-upstream-secret-0001"
RPM_KEY, TPM_KEY, CONC_KEY, BUDGET_KEY, FREE_KEY = (f"sk-limits-{name}-0001" for name in
                                                    ("rpm", "tpm", "conc", "budget", "free"))
#: 1,000 USD per 1M tokens in and out: a token costs 0.001 USD, so budgets are easy to reason about.
PRICE = {"input": 1000, "output": 1000}


def _config(sim: str, database_url: str, backend: str | None = None) -> dict[str, Any]:
    return {
        "database_url": database_url,
        "usage": {"flush_interval_s": 0.05},
        "routing": {"strategy": "ordered", "cooldown_failures": 1000, "retry_backoff_s": 0.01},
        "max_attempts": 1,
        "prices": {"metered": PRICE},
        "limits": {"backend": backend, "reserve_ceiling_usd": 1, "default_max_output_tokens": 100},
        "keys": [
            {"key": RPM_KEY, "name": "rpm", "rpm": 3},
            {"key": TPM_KEY, "name": "tpm", "tpm": 400},
            {"key": CONC_KEY, "name": "conc", "max_concurrency": 2},
            {"key": BUDGET_KEY, "name": "budget", "budget_usd": 1.0, "budget_period": "day"},
            {"key": FREE_KEY, "name": "free"},
        ],
        "providers": [{"name": "sim", "vendor": "openai", "base_url": f"{sim}/v1", "api_key": UPSTREAM_KEY,
                       "models": ["metered", "plain"]}],
    }


@pytest.fixture()
def limited(sim_a: str, tmp_path: Path) -> Iterator[GatewayHandle]:
    settings = settings_from_mapping(_config(sim_a, f"sqlite:///{tmp_path / 'limits.db'}"), env={})
    with start_gateway(settings, sims={"a": sim_a}) as gateway:
        yield gateway


def _chat(gateway: GatewayHandle, key: str, text: str = "hi", model: str = "plain", **extra: Any) -> HttpResponse:
    return gateway.post("/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": text}],
                                                 **extra}, key=key)


def test_rpm_refuses_the_fourth_request_with_headers_and_retry_after(limited: GatewayHandle) -> None:
    answers = [_chat(limited, RPM_KEY) for _ in range(5)]
    assert [a.status for a in answers] == [200, 200, 200, 429, 429]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers[:3]] == ["2", "1", "0"]
    assert all(a.headers["x-ratelimit-limit-requests"] == "3" for a in answers)
    refused = answers[3]
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    row = limited.usage_rows(refused.headers["x-request-id"])[0]
    assert row["outcome"] == "rate_limited" and row["status"] == 429 and float(row["cost_usd"]) == 0
    assert "x-ratelimit-limit-requests" not in _chat(limited, FREE_KEY).headers  # an unlimited key has none


def test_tpm_charges_the_estimate_and_reconciles_with_real_usage(limited: GatewayHandle) -> None:
    first = _chat(limited, TPM_KEY, max_tokens=150)
    assert first.status == 200 and first.headers["x-ratelimit-limit-tokens"] == "400"
    estimate = 400 - int(first.headers["x-ratelimit-remaining-tokens"])
    assert estimate > 150  # prompt estimate plus the 150 allowed output tokens
    usage = first.json()["usage"]
    report = limited.get("/v1/key", key=TPM_KEY).json()
    assert report["rate_limit_tokens"]["remaining"] == 400 - usage["total_tokens"]  # settled to the real count
    assert _chat(limited, TPM_KEY, max_tokens=390).status == 429  # the estimate alone would not fit


def test_concurrency_cap_admits_exactly_the_cap(limited: GatewayHandle) -> None:
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: _chat(limited, CONC_KEY, "slow [sim:delay_ms=400]"), range(6)))
    assert sorted(a.status for a in answers) == [200, 200, 429, 429, 429, 429]
    assert all(a.headers.get("retry-after") == "1" for a in answers if a.status == 429)
    assert _chat(limited, CONC_KEY).status == 200  # slots are freed when requests end


def test_budget_reservations_hold_under_concurrency_and_then_refuse(limited: GatewayHandle) -> None:
    # each request reserves (prompt estimate + 100 output tokens) x 0.001 USD, about 0.12 USD: at most ~8 of
    # 20 concurrent requests fit in the 1 USD budget, and what they really cost never exceeds it
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda i: _chat(limited, BUDGET_KEY, f"spend {i} [sim:delay_ms=200]",
                                                model="metered", max_tokens=100), range(20)))
    admitted = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status == 429]
    assert admitted and refused and len(admitted) + len(refused) == 20
    assert {a.json()["error"]["code"] for a in refused} == {"insufficient_quota"}
    assert {a.json()["error"]["type"] for a in refused} == {"insufficient_quota"}
    costs = [Decimal(str(limited.usage_rows(a.headers["x-request-id"])[0]["cost_usd"])) for a in admitted]
    assert sum(costs) <= Decimal(1)
    rows = limited.usage_rows(refused[0].headers["x-request-id"])
    assert rows[0]["outcome"] == "budget_exceeded" and rows[0]["budget_period"]
    report = limited.get("/v1/key", key=BUDGET_KEY).json()
    assert Decimal(str(report["spend_usd"])) == sum(costs) and report["budget_usd"] == 1.0
    assert report["remaining_usd"] == pytest.approx(1.0 - float(sum(costs)), abs=1e-9)
    assert report["requests"] >= len(admitted) and report["period"] == rows[0]["budget_period"]
    while _chat(limited, BUDGET_KEY, "more", model="metered", max_tokens=5).status == 200:
        pass  # spend what is left, a little at a time
    report = limited.get("/v1/key", key=BUDGET_KEY).json()
    assert report["spend_usd"] <= 1.0
    with pytest.raises(openai.RateLimitError) as caught:
        limited.client(key=BUDGET_KEY).chat.completions.create(model="metered", max_tokens=5,
                                                                 messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "insufficient_quota"


def test_failed_and_empty_answers_cost_nothing(limited: GatewayHandle) -> None:
    failed = _chat(limited, BUDGET_KEY, "boom [sim:status=500]", model="metered")
    assert failed.status == 500
    row = limited.usage_rows(failed.headers["x-request-id"])[0]
    assert float(row["cost_usd"]) == 0 and row["outcome"] == "upstream_error"
    paid = _chat(limited, FREE_KEY, "pay", model="metered")
    paid_row = limited.usage_rows(paid.headers["x-request-id"])[0]
    usage = paid.json()["usage"]
    assert Decimal(str(paid_row["cost_usd"])) == Decimal(usage["total_tokens"]) / 1000
    unknown = limited.usage_rows(_chat(limited, FREE_KEY).headers["x-request-id"])[0]
    assert unknown["unpriced"] and float(unknown["cost_usd"]) == 0  # `plain` has no price


def test_other_dialects_get_their_own_429s(limited: GatewayHandle) -> None:
    for _ in range(3):
        _chat(limited, RPM_KEY)
    client = anthropic.Anthropic(base_url=limited.url, api_key=RPM_KEY, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.create(model="plain", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert refused.value.response.headers["x-ratelimit-limit-requests"] == "3"
    gemini = genai.Client(api_key=RPM_KEY, http_options=gtypes.HttpOptions(base_url=limited.url))
    with pytest.raises(genai_errors.ClientError) as exhausted:
        gemini.models.generate_content(model="plain", contents="x")
    assert exhausted.value.code == 429 and exhausted.value.status == "RESOURCE_EXHAUSTED"


def test_key_report(limited: GatewayHandle) -> None:
    report = limited.get("/v1/key", key=RPM_KEY).json()
    assert report["name"] == "rpm" and report["rpm"] == 3 and report["tpm"] is None
    assert report["budget_usd"] is None and report["remaining_usd"] is None and report["spend_usd"] == 0
    assert RPM_KEY not in str(report) and report["requests"] == 0
    assert limited.get("/v1/key", key="sk-nope").status == 401


@pytest.fixture()
def two_instances(sim_a: str, tmp_path: Path) -> Iterator[tuple[GatewayHandle, GatewayHandle]]:
    url = redis_url()  # skips (or fails, when services are required) without Redis
    database_url = f"sqlite:///{tmp_path / 'shared.db'}"
    config = _config(sim_a, database_url, url)
    tag = secrets.token_hex(4)  # fresh key ids: counters from earlier runs never apply
    for key in config["keys"]:
        key["name"] = f"{key['name']}-{tag}"
    settings = settings_from_mapping(config, env={})
    with start_gateway(settings, sims={"a": sim_a}) as first, start_gateway(settings, sims={"a": sim_a}) as second:
        yield first, second


def test_redis_limits_hold_across_two_instances(two_instances: tuple[GatewayHandle, GatewayHandle]) -> None:
    first, second = two_instances
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda i: _chat((first, second)[i % 2], RPM_KEY), range(10)))
    assert sorted(a.status for a in answers).count(200) == 3  # rpm 3, across both instances
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        spent = list(pool.map(lambda i: _chat((first, second)[i % 2], BUDGET_KEY, f"s{i} [sim:delay_ms=200]",
                                              model="metered", max_tokens=100), range(20)))
    admitted = [a for a in spent if a.status == 200]
    assert admitted and any(a.status == 429 for a in spent)
    gateways = {id(first): first, id(second): second}
    costs = []
    for answer in admitted:
        rows = next(g.usage_rows(answer.headers["x-request-id"]) for g in gateways.values())
        costs.append(Decimal(str(rows[0]["cost_usd"])))
    assert sum(costs) <= Decimal(1)
    one, other = (g.get("/v1/key", key=BUDGET_KEY).json() for g in (first, second))
    assert one["spend_usd"] == other["spend_usd"] == float(sum(costs))


def test_deployment_limits_move_traffic_on_then_answer_429(sim_a: str, sim_b: str, tmp_path: Path) -> None:
    config = _config(sim_a, f"sqlite:///{tmp_path / 'deployments.db'}")
    config["providers"] = [
        {"name": "capped", "vendor": "openai", "base_url": f"{sim_a}/v1", "api_key": UPSTREAM_KEY, "rpm": 2,
         "models": ["plain"]},
        {"name": "spare", "vendor": "azure", "type": "openai", "base_url": f"{sim_b}/v1", "api_key": UPSTREAM_KEY,
         "models": ["plain"]},
    ]
    config["max_attempts"] = 2
    with start_gateway(settings_from_mapping(config, env={})) as gateway:
        served = [_chat(gateway, FREE_KEY).headers["x-yourouter-provider"] for _ in range(4)]
        assert served == ["capped", "capped", "spare", "spare"]
        pinned = gateway.post("/v1/chat/completions", {"model": "plain", "messages": [{"role": "user",
                                                                                        "content": "x"}]},
                              key=FREE_KEY, headers={"vendor": "openai"})
        assert pinned.status == 429 and "capped" in pinned.json()["error"]["message"]
        assert 1 <= int(pinned.headers["retry-after"]) <= 60
