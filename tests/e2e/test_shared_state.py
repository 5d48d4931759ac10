"""State shared by many gateway instances: one RPM limit and one budget across two real processes on one Redis,
deployment cooldowns that travel between instances, key changes that reach other instances within seconds, and a
Redis that goes away and comes back (fail closed or open, a log line and a metric, recovery)."""

from __future__ import annotations

import concurrent.futures
import secrets
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gateway import MASTER_KEY, GatewayHandle, HttpResponse, http, start_gateway
from tests.support.process import serve_process, write_config
from tests.support.services import RedisServer, redis_url
from yourouter.config import settings_from_mapping

UPSTREAM_KEY = "sk-upstream-secret-0001"
USER = [{"role": "user", "content": "shared"}]


def _config(sim_a: str, sim_b: str, database_url: str, redis: str | None, tag: str, **extra: Any) -> dict[str, Any]:
    return {
        "database_url": database_url, "redis_url": redis, "master_key": MASTER_KEY, "log_requests": False,
        "usage": {"flush_interval_s": 0.05}, "key_cache_ttl_s": 0.5,
        "prices": {"metered": {"input": 1000, "output": 1000}},
        "routing": {"strategy": "ordered", "cooldown_failures": 2, "cooldown_s": 30},
        "keys": [{"key": f"sk-rpm-{tag}", "name": f"rpm-{tag}", "rpm": 20},
                 {"key": f"sk-budget-{tag}", "name": f"budget-{tag}", "budget_usd": 1.2},
                 {"key": f"sk-free-{tag}", "name": f"free-{tag}"}],
        "providers": [
            {"name": f"first-{tag}", "vendor": "openai", "base_url": f"{sim_a}/v1", "api_key": UPSTREAM_KEY,
             "models": ["plain", "metered"]},
            {"name": f"second-{tag}", "vendor": "azure", "type": "openai", "base_url": f"{sim_b}/v1",
             "api_key": UPSTREAM_KEY, "models": ["plain", "metered"]}],
        **extra,
    }


def _chat(url: str, key: str, text: str = "hi", model: str = "plain", **extra: Any) -> HttpResponse:
    return http("POST", url + "/v1/chat/completions", {"model": model, "messages": [{"role": "user",
                                                                                     "content": text}], **extra},
                {"Authorization": f"Bearer {key}"}, timeout=20)


def test_two_processes_share_one_rpm_limit_and_one_budget(sim_a: str, sim_b: str, tmp_path: Path) -> None:
    tag = secrets.token_hex(4)  # fresh key ids: counters of earlier runs never apply
    config = _config(sim_a, sim_b, f"sqlite:///{tmp_path / 'shared.db'}", redis_url(), tag)
    path = write_config(tmp_path / "gw.yaml", config)
    with serve_process(path) as first, serve_process(path) as second, \
            concurrent.futures.ThreadPoolExecutor(20) as pool:
        urls = [first.url, second.url]
        statuses = list(pool.map(lambda i: _chat(urls[i % 2], f"sk-rpm-{tag}").status, range(60)))
        assert statuses.count(200) == 20 and statuses.count(429) == 40  # limit 20/min, across both processes
    # 50 concurrent requests, each reserving (prompt estimate ~30 + 200 output tokens) x 0.001 USD = ~0.23 USD:
    # a budget of 1.2 USD fits 5 of them
    with serve_process(path) as first, serve_process(path) as second, \
            concurrent.futures.ThreadPoolExecutor(50) as pool:
        urls = [first.url, second.url]
        answers = list(pool.map(lambda i: _chat(urls[i % 2], f"sk-budget-{tag}", f"spend {i:02} [sim:delay_ms=500]",
                                                "metered", max_tokens=200), range(50)))
        admitted = [a for a in answers if a.status == 200]
        assert 1 <= len(admitted) <= 5 and all(a.status in (200, 429) for a in answers)
        spent = sum(Decimal(a.json()["usage"]["total_tokens"]) for a in admitted) / 1000
        reports = [http("GET", url + "/v1/key", None, {"Authorization": f"Bearer sk-budget-{tag}"}).json()
                   for url in urls]
        assert reports[0]["spend_usd"] == reports[1]["spend_usd"] == float(spent)
        assert spent <= Decimal("1.2")  # never beyond the budget: reservations held it


@pytest.fixture()
def pair(sim_a: str, sim_b: str, tmp_path: Path) -> Iterator[tuple[GatewayHandle, GatewayHandle, str]]:
    tag = secrets.token_hex(4)
    config = _config(sim_a, sim_b, f"sqlite:///{tmp_path / 'pair.db'}", redis_url(), tag)
    settings = settings_from_mapping(config, env={})
    with start_gateway(settings, sims={"a": sim_a, "b": sim_b}) as one, \
            start_gateway(settings, sims={"a": sim_a, "b": sim_b}) as other:
        yield one, other, tag
    http("DELETE", sim_a + "/_sim/faults")


def test_a_cooldown_one_instance_starts_is_honoured_by_the_other(
        pair: tuple[GatewayHandle, GatewayHandle, str]) -> None:
    one, other, tag = pair
    assert _chat(other.url, f"sk-free-{tag}").headers["x-yourouter-provider"] == f"first-{tag}"
    one.fault("a", kind="status", status=500, count=2)
    for _ in range(2):  # two failures on `one` open its breaker for `first`
        assert _chat(one.url, f"sk-free-{tag}").headers["x-yourouter-provider"] == f"second-{tag}"
    deadline = time.monotonic() + 5
    while _chat(other.url, f"sk-free-{tag}").headers["x-yourouter-provider"] != f"second-{tag}":
        assert time.monotonic() < deadline, "the other instance never learned of the cooldown"
        time.sleep(0.2)
    routes = http("GET", other.url + "/admin/routes", None, {"Authorization": f"Bearer {MASTER_KEY}"}).json()
    states = {d["name"]: d["state"] for m in routes["models"] if m["model"] == "plain" for d in m["deployments"]}
    assert states[f"first-{tag}"] == "cooldown"


def test_key_changes_reach_the_other_instance_within_seconds(pair: tuple[GatewayHandle, GatewayHandle, str]) -> None:
    one, other, _ = pair
    created = http("POST", one.url + "/admin/keys", {"name": "roaming"}, {"Authorization": f"Bearer {MASTER_KEY}"})
    key, key_id = created.json()["key"], created.json()["id"]
    assert _chat(other.url, key).status == 200
    http("PATCH", one.url + f"/admin/keys/{key_id}", {"disabled": True}, {"Authorization": f"Bearer {MASTER_KEY}"})
    assert _chat(one.url, key).status == 401  # at once where the change was made
    deadline = time.monotonic() + 3
    while _chat(other.url, key).status != 401:
        assert time.monotonic() < deadline, "the other instance still accepts the disabled key"
        time.sleep(0.1)


def _metric(url: str, name: str) -> float:
    text = http("GET", url + "/metrics").body.decode()
    family = next(f for f in text_string_to_metric_families(text) if f.name == name)
    return float(family.samples[0].value)


@pytest.mark.parametrize("fail_open", [False, True])
def test_redis_going_away_and_coming_back(sim_a: str, sim_b: str, tmp_path: Path, fail_open: bool,
                                         caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer(str(tmp_path))
    server.start()
    tag = secrets.token_hex(4)
    config = _config(sim_a, sim_b, f"sqlite:///{tmp_path / 'outage.db'}", server.url, tag,
                     limits={"fail_open": fail_open})
    try:
        with start_gateway(settings_from_mapping(config, env={})) as gateway:
            limited, free = f"sk-rpm-{tag}", f"sk-free-{tag}"
            assert _chat(gateway.url, limited).status == 200
            server.stop()
            down = _chat(gateway.url, limited)
            if fail_open:
                assert down.status == 200  # let through unchecked
            else:
                assert down.status == 500 and down.json()["error"]["code"] == "limits_unavailable"
            assert _chat(gateway.url, free).status == 200  # keys without limits never touch Redis
            assert _metric(gateway.url, "yourouter_limits_backend_up") == 0
            assert any("limits backend unreachable" in r.getMessage() for r in caplog.records)
            server.start()
            deadline = time.monotonic() + 10
            while _chat(gateway.url, limited).status != 200:
                assert time.monotonic() < deadline, "no recovery after Redis came back"
                time.sleep(0.2)
            assert _metric(gateway.url, "yourouter_limits_backend_up") == 1
    finally:
        server.stop()
