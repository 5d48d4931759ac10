"""Routing: model aliases and upstream names, vendor prefixes, attempts header, the final error's choice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import STATIC_KEY, GatewayHandle, start_gateway
from yourouter.config import settings_from_mapping

UPSTREAM_KEY = "sk-upstream-secret-0001"
USER = [{"role": "user", "content": "route me"}]


@pytest.fixture(scope="module")
def routed(sim_a: str, sim_b: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    db: Path = tmp_path_factory.mktemp("routing") / "gw.db"
    config = {
        "database_url": f"sqlite:///{db}",
        "usage": {"flush_interval_s": 0.05},
        "routing": {"strategy": "ordered", "cooldown_failures": 1000},
        "keys": [{"key": STATIC_KEY, "name": "router", "models": ["*"]}],
        "providers": [
            {"name": "r-a", "vendor": "openai", "base_url": f"{sim_a}/v1", "api_key": UPSTREAM_KEY,
             "models": [{"name": "gpt-4o", "upstream": "gpt-4o-2024-08-06", "aliases": ["gpt4o-latest"]}, "shared"]},
            {"name": "r-b", "vendor": "azure", "type": "openai", "base_url": f"{sim_b}/v1", "api_key": UPSTREAM_KEY,
             "models": ["shared", {"name": "team/model", "upstream": "real-model"}]},
        ],
    }
    with start_gateway(settings_from_mapping(config, env={}), sims={"a": sim_a, "b": sim_b}) as gateway:
        yield gateway


def _chat(gateway: GatewayHandle, model: str) -> tuple[int, dict[str, str], dict]:
    response = gateway.post("/v1/chat/completions", {"model": model, "messages": USER})
    return response.status, response.headers, response.json()


def test_aliases_and_upstream_names(routed: GatewayHandle) -> None:
    for requested in ("gpt-4o", "gpt4o-latest"):
        status, headers, _ = _chat(routed, requested)
        assert status == 200 and headers["x-yourouter-provider"] == "r-a"
        assert routed.sim_requests("a")[-1]["body"]["model"] == "gpt-4o-2024-08-06"
    listed = [m.id for m in routed.client().models.list()]
    assert listed == ["gpt-4o", "shared", "team/model"]  # names, not aliases


def test_vendor_prefix_pins_like_the_header(routed: GatewayHandle) -> None:
    status, headers, _ = _chat(routed, "azure/shared")
    assert status == 200 and headers["x-yourouter-provider"] == "r-b"
    assert routed.sim_requests("b")[-1]["body"]["model"] == "shared"
    status, headers, _ = _chat(routed, "openai/shared")
    assert status == 200 and headers["x-yourouter-provider"] == "r-a"
    status, headers, _ = _chat(routed, "team/model")  # a model whose own name has a slash
    assert status == 200 and routed.sim_requests("b")[-1]["body"]["model"] == "real-model"
    status, _, body = _chat(routed, "openai/team/model")
    assert status == 400 and "does not serve" in body["error"]["message"]
    status, _, body = _chat(routed, "nope/shared")
    assert status == 400 and body["error"]["code"] == "model_not_found"


def test_attempts_header_counts_failover(routed: GatewayHandle) -> None:
    status, headers, _ = _chat(routed, "shared")
    assert status == 200 and headers["x-yourouter-attempts"] == "1"
    routed.fault("a", kind="status", status=500, count=1)
    status, headers, _ = _chat(routed, "shared")
    assert status == 200 and headers["x-yourouter-attempts"] == "2" and headers["x-yourouter-provider"] == "r-b"


def test_final_error_is_the_most_meaningful(routed: GatewayHandle) -> None:
    routed.fault("a", kind="status", status=429, retry_after=50, count=1)  # both longer than max_retry_wait_s
    routed.fault("b", kind="status", status=429, retry_after=30, count=1)
    status, headers, body = _chat(routed, "shared")
    assert status == 429 and headers["retry-after"] == "30" and body["error"]["code"] == "rate_limit_exceeded"
    routed.fault("a", kind="status", status=429, retry_after=50, count=1)
    routed.fault("b", kind="status", status=502, count=2)
    status, _, body = _chat(routed, "shared")
    assert status == 500 and "r-b" in body["error"]["message"]


@pytest.fixture(scope="module")
def breaker(sim_a: str, sim_b: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    db: Path = tmp_path_factory.mktemp("breaker") / "gw.db"
    config = {
        "database_url": f"sqlite:///{db}",
        "usage": {"flush_interval_s": 0.05},
        "keys": [{"key": STATIC_KEY, "name": "router", "models": ["*"]}],
        "routing": {"strategy": "latency", "cooldown_failures": 2, "cooldown_window_s": 10, "cooldown_s": 0.5},
        "providers": [
            {"name": "second", "vendor": "openai", "base_url": f"{sim_b}/v1", "api_key": UPSTREAM_KEY,
             "priority": 1, "models": ["m"]},
            {"name": "first", "vendor": "openai", "base_url": f"{sim_a}/v1", "api_key": UPSTREAM_KEY,
             "priority": 0, "max_concurrency": 1, "models": ["m"]},
            {"name": "slow-start", "vendor": "slowco", "base_url": f"{sim_a}/v1", "api_key": UPSTREAM_KEY,
             "first_byte_timeout_s": 0.3, "models": ["slow"]},
        ],
    }
    with start_gateway(settings_from_mapping(config, env={}), sims={"a": sim_a, "b": sim_b}) as gateway:
        yield gateway


def test_priority_then_cooldown_and_half_open_recovery(breaker: GatewayHandle) -> None:
    import time

    assert _chat(breaker, "m")[1]["x-yourouter-provider"] == "first"  # priority 0 before priority 1
    breaker.fault("a", kind="status", status=500, count=2)
    for _ in range(2):  # two failures within the window open the breaker
        status, headers, _ = _chat(breaker, "m")
        assert status == 200 and headers["x-yourouter-provider"] == "second" and headers["x-yourouter-attempts"] == "2"
    status, headers, _ = _chat(breaker, "m")
    assert headers["x-yourouter-provider"] == "second" and headers["x-yourouter-attempts"] == "1"  # skipped
    time.sleep(0.6)  # cooldown over: the next request probes "first" (half-open) and closes the breaker
    assert _chat(breaker, "m")[1]["x-yourouter-provider"] == "first"
    assert _chat(breaker, "m")[1]["x-yourouter-provider"] == "first"


def test_retry_after_starts_a_cooldown(breaker: GatewayHandle) -> None:
    breaker.fault("a", kind="status", status=429, retry_after=1, count=1)
    assert _chat(breaker, "m")[1]["x-yourouter-attempts"] == "2"
    assert _chat(breaker, "m")[1]["x-yourouter-provider"] == "second"  # cooling down for Retry-After


def test_busy_deployment_goes_last(breaker: GatewayHandle) -> None:
    import concurrent.futures

    slow = {"model": "m", "messages": [{"role": "user", "content": "wait [sim:delay_ms=600]"}]}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(breaker.post, "/v1/chat/completions", slow)
        import time

        time.sleep(0.2)  # "first" (max_concurrency 1) is now at its cap
        assert _chat(breaker, "m")[1]["x-yourouter-provider"] == "second"
        assert pending.result().headers["x-yourouter-provider"] == "first"


def test_first_byte_timeout(breaker: GatewayHandle) -> None:
    import time

    started = time.monotonic()
    response = breaker.post("/v1/chat/completions",
                            {"model": "slow", "messages": [{"role": "user", "content": "x [sim:delay_ms=3000]"}]})
    assert response.status == 500 and response.json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 2


def test_client_disconnect_cancels_a_non_stream_request(breaker: GatewayHandle) -> None:
    import http.client
    import json
    import time

    connection = http.client.HTTPConnection(breaker.url.removeprefix("http://"), timeout=5)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x [sim:delay_ms=4000]"}]})
    connection.request("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {STATIC_KEY}",
                                                              "Content-Type": "application/json"})
    time.sleep(0.3)
    connection.close()  # the client goes away while the upstream is still thinking
    rows = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not rows:
        rows = [r for r in breaker.usage_rows_where("outcome", "cancelled")]
        time.sleep(0.1)
    assert rows and rows[-1]["latency_ms"] < 1500 and rows[-1]["error_type"] == "client_disconnected"
    seen = breaker.sim_requests("a")[-1]  # and the upstream saw the gateway hang up, not wait 4 s
    assert "delay_ms=4000" in str(seen["body"]) and seen["client_gone"] is True and seen["held_s"] < 1.5


def test_client_disconnect_cancels_a_stream_upstream(breaker: GatewayHandle) -> None:
    import http.client
    import json
    import time

    connection = http.client.HTTPConnection(breaker.url.removeprefix("http://"), timeout=5)
    body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "long stream"}]})
    breaker.sim_control(breaker.sims["a"], "POST", "/_sim/faults",
                        {"kind": "timeout", "delay_ms": 4000, "count": 1})  # the upstream holds the first byte
    connection.request("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {STATIC_KEY}",
                                                              "Content-Type": "application/json"})
    time.sleep(0.3)
    connection.close()
    deadline = time.monotonic() + 5
    seen: dict = {}
    while time.monotonic() < deadline and "held_s" not in seen:
        seen = breaker.sim_requests("a")[-1]
        time.sleep(0.1)
    assert seen.get("client_gone") is True and seen["held_s"] < 1.5


def test_model_fallbacks_cross_dialects(matrix: GatewayHandle) -> None:
    from tests.support.dialects import AnthropicClient, OpenAIClient

    raw = OpenAIClient(matrix.url, STATIC_KEY).client.chat.completions.with_raw_response.create(
        model="doomed", messages=USER)
    assert raw.headers["x-yourouter-provider"] == "up-anthropic"  # every deployment of `doomed` failed
    assert raw.parse().choices[0].message.content.endswith("You said: route me")
    row = matrix.usage_rows(raw.headers["x-request-id"])[0]
    assert row["model"] == "doomed" and row["detail"] == "fallback:claude-sim" and row["status"] == 200
    answer = AnthropicClient(matrix.url, STATIC_KEY).text("doomed", "again")  # same dialect: model name rewritten
    assert answer.text.endswith("You said: again")
    seen = [r for r in matrix.sim_control(matrix.sims["anthropic"], "GET", "/_sim/requests").json() if r["body"]]
    assert seen[-1]["body"]["model"] == "claude-sim"
    error = matrix.post("/v1/chat/completions", {"model": "doomed", "messages": USER},
                        headers={"vendor": "deadco"})
    assert error.status == 500 and "up-dead" in error.json()["error"]["message"]  # the pin holds


def test_routes_admin_endpoint_and_cli(breaker: GatewayHandle, tmp_path: Path) -> None:
    from tests.support.gateway import MASTER_KEY, gateway_config, http
    from tests.support.process import write_config, yourouter

    breaker.fault("a", kind="status", status=429, retry_after=30, count=1)
    assert _chat(breaker, "m")[1]["x-yourouter-provider"] == "second"
    # the breaker fixture has no master key: read the live view through the app object instead of HTTP
    from yourouter.surfaces.admin import routes_view

    assert breaker.app is not None
    view = routes_view(breaker.app.catalog, breaker.app.policy)
    first = next(d for m in view["models"] if m["model"] == "m" for d in m["deployments"] if d["name"] == "first")
    assert first["state"] == "cooldown" and 25 < first["cooldown_remaining_s"] <= 30
    assert view["strategy"] == "latency"

    config = gateway_config(breaker.sims["a"], breaker.sims["b"], f"sqlite:///{tmp_path / 'r.db'}")
    path = write_config(tmp_path / "gw.yaml", config)
    static = yourouter("routes", "--config", str(path))
    assert static.returncode == 0 and "sim-a" in static.stdout and "gpt-4o-mini" in static.stdout
    from tests.support.process import serve_process

    with serve_process(path) as running:
        http("POST", running.url + "/v1/chat/completions", {"model": "gpt-4o", "messages": USER},
             {"Authorization": f"Bearer {STATIC_KEY}"})
        denied = http("GET", running.url + "/admin/routes", None, {"Authorization": f"Bearer {STATIC_KEY}"})
        assert denied.status == 401
        live = http("GET", running.url + "/admin/routes", None, {"Authorization": f"Bearer {MASTER_KEY}"}).json()
        gpt4o = next(m for m in live["models"] if m["model"] == "gpt-4o")["deployments"][0]
        assert gpt4o["state"] == "healthy" and gpt4o["ttfb_ewma_ms"] is not None
        shown = yourouter("routes", "--config", str(path), "--url", running.url)
        assert shown.returncode == 0 and "healthy" in shown.stdout


@pytest.fixture(scope="module")
def flaky_vendors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    """Three vendors of three protocols serving one model, two of them failing often, with cross-vendor fallbacks."""
    from yourouter.simulators.anthropic import create_app as anthropic_sim
    from yourouter.simulators.background import serve_in_thread
    from yourouter.simulators.openai import SimulatorSettings
    from yourouter.simulators.openai import create_app as openai_sim

    flaky = SimulatorSettings(api_key=UPSTREAM_KEY, fail_rate=0.5, fail_status=503, seed=7)
    with serve_in_thread(openai_sim(flaky)) as sim_x, serve_in_thread(anthropic_sim(flaky)) as sim_y, \
            serve_in_thread(openai_sim(SimulatorSettings(api_key=UPSTREAM_KEY))) as sim_z:
        db: Path = tmp_path_factory.mktemp("flaky") / "gw.db"
        config = {
            "database_url": f"sqlite:///{db}",
            "usage": {"flush_interval_s": 0.05},
            "routing": {"cooldown_failures": 1000, "retry_backoff_s": 0.01, "fallbacks": {"m": ["spare"]}},
            "keys": [{"key": STATIC_KEY, "name": "pins", "models": ["*"]}],
            "providers": [
                {"name": "x1", "vendor": "xco", "base_url": f"{sim_x}/v1", "api_key": UPSTREAM_KEY,
                 "models": ["m", "spare"]},
                {"name": "y1", "vendor": "yco", "type": "anthropic", "base_url": sim_y, "api_key": UPSTREAM_KEY,
                 "models": ["m"]},
                {"name": "z1", "vendor": "zco", "base_url": f"{sim_z}/v1", "api_key": UPSTREAM_KEY,
                 "models": ["m", "spare"]},
            ],
        }
        with start_gateway(settings_from_mapping(config, env={}),
                           sims={"xco": sim_x, "yco": sim_y, "zco": sim_z}) as gateway:
            yield gateway


def test_no_request_reaches_a_vendor_the_client_did_not_allow(flaky_vendors: GatewayHandle) -> None:
    """Random pins (header, prefix, any case, or none) against failing vendors with failover and fallbacks: every
    answer comes from the pinned vendor, and no pinned request ever reached another vendor's upstream."""
    import random

    rng = random.Random(11)
    asked: dict[str, str | None] = {}
    answered: dict[str, int] = {}
    for number in range(60):
        marker = f"pin-check-{number}"
        pin = rng.choice([None, "auto", "xco", "yco", "zco"])
        body = {"model": "m", "messages": [{"role": "user", "content": marker}], "max_tokens": 20}
        headers = {}
        if pin in ("xco", "yco", "zco") and rng.random() < 0.5:
            body["model"] = f"{pin}/m"
        elif pin is not None:
            headers["vendor"] = pin.upper() if rng.random() < 0.3 else pin
        response = flaky_vendors.post("/v1/chat/completions", body, headers=headers)
        answered[response.headers.get("x-yourouter-vendor", "")] = response.status
        if response.status == 200 and pin not in (None, "auto"):
            assert response.headers["x-yourouter-vendor"] == pin, (marker, pin, response.headers)
        asked[marker] = pin if pin not in (None, "auto") else None
    for vendor in ("xco", "yco", "zco"):
        for seen in flaky_vendors.sim_requests(vendor):
            text = json.dumps(seen.get("body"))
            for marker, pin in asked.items():
                if f'"{marker}"' in text:
                    assert pin in (None, vendor), f"{marker} pinned to {pin} reached {vendor}"
    assert {"xco", "zco"} <= set(answered)  # the flaky vendors both answered some and failed some


def test_failed_requests_leave_no_reference_cycles(routed: GatewayHandle) -> None:
    """A request whose every attempt failed must be freed by reference counting: the raised error must not be held
    by a frame its own traceback holds (exception -> traceback -> frame -> exception), or every failure waits,
    frames and all, for the cyclic collector (a memory soak showed ~30 KB per failed request, pauses of 0.3-0.5 s)."""
    import gc

    from yourouter.ir.errors import GatewayError

    failing = [{"role": "user", "content": "fail please [sim:status=503]"}]
    gc.collect()
    gc.disable()
    try:
        for _ in range(5):
            response = routed.post("/v1/chat/completions", {"model": "shared", "messages": failing})
            assert response.status == 500 and response.headers["x-yourouter-attempts"] == "3"
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        leaked = [o for o in gc.garbage if isinstance(o, GatewayError)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert leaked == []
