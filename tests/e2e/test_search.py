"""Custom Search through the gateway: the official `google-api-python-client`, plain HTTP with each auth style,
paging, each engine mapped to Google's shape, failover from a failing engine, cache hits, and what is billed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from tests.support.gateway import GatewayHandle, HttpResponse, http, start_gateway
from yourouter.config import settings_from_mapping
from yourouter.simulators.background import serve_in_thread
from yourouter.simulators.brave import create_app as brave_sim
from yourouter.simulators.google_search import create_app as google_sim
from yourouter.simulators.openai import SimulatorSettings
from yourouter.simulators.searxng import create_app as searxng_sim

KEY, NO_SEARCH_KEY, BUDGET_KEY = "sk-search-key-0001", "sk-search-none-0001", "sk-search-budget-01"
GOOGLE_KEY, BRAVE_KEY = "google-api-key-1", "brave-token-1"


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, str]]:
    with serve_in_thread(google_sim(SimulatorSettings(api_key=GOOGLE_KEY))) as google, \
            serve_in_thread(brave_sim(SimulatorSettings(api_key=BRAVE_KEY))) as brave, \
            serve_in_thread(searxng_sim(SimulatorSettings())) as searxng:
        yield {"google": google, "brave": brave, "searxng": searxng}


def _config(engines: dict[str, str], database_url: str, cache_ttl: float = 0) -> dict[str, Any]:
    return {
        "database_url": database_url,
        "usage": {"flush_interval_s": 0.05},
        "routing": {"strategy": "ordered", "cooldown_failures": 1000},
        "search": {"cache_ttl_s": cache_ttl},
        "prices": {"brave-main": {"per_query": 0.003}},
        "keys": [{"key": KEY, "name": "searcher"}, {"key": NO_SEARCH_KEY, "name": "chat-only", "models": ["gpt-4o"]},
                 {"key": BUDGET_KEY, "name": "thrifty", "budget_usd": 0.012}],
        "providers": [
            {"name": "google-main", "vendor": "google", "type": "google-search", "base_url": engines["google"],
             "api_key": GOOGLE_KEY, "cx": "default-engine"},
            {"name": "brave-main", "vendor": "brave", "base_url": engines["brave"] + "/res/v1",
             "api_key": BRAVE_KEY},
            {"name": "searx", "vendor": "searxng", "base_url": engines["searxng"]},
        ],
    }


@pytest.fixture()
def search(engines: dict[str, str], tmp_path: Path) -> Iterator[GatewayHandle]:
    settings = settings_from_mapping(_config(engines, f"sqlite:///{tmp_path / 'search.db'}"), env={})
    with start_gateway(settings, sims=engines) as gateway:
        yield gateway
    for url in engines.values():
        http("DELETE", url + "/_sim/faults")


def _get(gateway: GatewayHandle, params: dict[str, Any], headers: dict[str, str] | None = None) -> HttpResponse:
    return http("GET", f"{gateway.url}/customsearch/v1?{urlencode(params)}", None, headers or {})


def test_official_client_pages_through_results(search: GatewayHandle) -> None:
    service = build("customsearch", "v1", developerKey=KEY, client_options={"api_endpoint": search.url},
                    static_discovery=True)
    first = service.cse().list(q="python gateway", cx="my-engine", num=5).execute()
    assert first["kind"] == "customsearch#search" and len(first["items"]) == 5
    assert first["queries"]["request"][0]["cx"] == "my-engine" and isinstance(
        first["searchInformation"]["totalResults"], str)
    following = first["queries"]["nextPage"][0]
    second = service.cse().list(q="python gateway", cx="my-engine", num=5, start=following["startIndex"]).execute()
    assert second["queries"]["request"][0]["startIndex"] == 6
    assert {i["link"] for i in first["items"]}.isdisjoint({i["link"] for i in second["items"]})
    seen = search.sim_requests("google")[-1]
    assert f"key={GOOGLE_KEY}" in seen["query"] and KEY not in str(seen)  # the gateway's key, never the client's
    with pytest.raises(HttpError) as bad:
        service.cse().list(q="x", num=11).execute()
    assert bad.value.status_code == 400
    empty = service.cse().list(q="zzzznothing").execute()
    assert "items" not in empty and empty["searchInformation"]["totalResults"] == "0"


@pytest.mark.parametrize("auth", ["bearer", "x-api-key", "key"])
def test_each_auth_style(search: GatewayHandle, auth: str) -> None:
    params: dict[str, Any] = {"q": "rust"}
    headers = {"bearer": {"Authorization": f"Bearer {KEY}"}, "x-api-key": {"x-api-key": KEY}, "key": {}}[auth]
    if auth == "key":
        params["key"] = KEY
    answer = _get(search, params, headers)
    assert answer.status == 200 and answer.json()["items"]
    assert _get(search, {"q": "rust", "key": "sk-wrong"}).json()["error"]["code"] == 401
    refused = _get(search, {"q": "rust", "key": NO_SEARCH_KEY})
    assert refused.status == 401 and refused.json()["error"]["errors"][0]["reason"] == "forbidden"


@pytest.mark.parametrize("engine", ["google", "brave", "searxng"])
def test_each_engine_answers_in_googles_shape(search: GatewayHandle, engine: str) -> None:
    answer = _get(search, {"q": "kubernetes operators", "num": 2, "start": 3, "siteSearch": "github.com",
                           "key": KEY}, {"vendor": engine})
    assert answer.status == 200 and answer.headers["x-yourouter-vendor"] == engine
    body = answer.json()
    assert body["kind"] == "customsearch#search" and len(body["items"]) == 2
    for item in body["items"]:
        assert item["kind"] == "customsearch#result" and item["displayLink"].endswith("github.com")
        assert {"title", "htmlTitle", "link", "snippet", "htmlSnippet", "formattedUrl"} <= item.keys()
    assert body["queries"]["request"][0]["startIndex"] == 3 and body["queries"]["previousPage"][0]["startIndex"] == 1
    images = _get(search, {"q": "cats", "searchType": "image", "num": 3, "key": KEY}, {"vendor": engine}).json()
    assert len(images["items"]) == 3 and all("image" in item and "contextLink" in item["image"]
                                             for item in images["items"])


def test_engines_return_the_same_pages_for_a_query(search: GatewayHandle) -> None:
    links = {engine: [i["link"] for i in _get(search, {"q": "fastapi tutorial", "num": 10, "key": KEY},
                                                {"vendor": engine}).json()["items"]]
             for engine in ("google", "brave", "searxng")}
    assert links["google"] == links["brave"] == links["searxng"]


def test_failover_from_a_failing_engine_and_pinned_failures(search: GatewayHandle) -> None:
    search.fault("google", kind="status", status=503)
    answer = _get(search, {"q": "failover", "key": KEY})
    assert answer.status == 200 and answer.headers["x-yourouter-provider"] == "brave-main"
    assert answer.headers["x-yourouter-attempts"] == "2"
    search.fault("brave", kind="status", status=429, retry_after=7)
    pinned = _get(search, {"q": "failover", "key": KEY}, {"vendor": "brave"})
    assert pinned.status == 429 and pinned.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert _get(search, {"q": "x", "key": KEY}, {"vendor": "bing"}).status == 400


def test_cache_hits_cost_nothing(engines: dict[str, str], tmp_path: Path) -> None:
    settings = settings_from_mapping(_config(engines, f"sqlite:///{tmp_path / 'cache.db'}", cache_ttl=60), env={})
    with start_gateway(settings, sims=engines) as gateway:
        first = _get(gateway, {"q": "cached query", "num": 3, "key": KEY}, {"vendor": "brave"})
        again = _get(gateway, {"q": "cached query", "num": 3, "key": KEY}, {"vendor": "brave"})
        other = _get(gateway, {"q": "cached query", "num": 4, "key": KEY}, {"vendor": "brave"})
        assert (first.headers["x-yourouter-cache"], again.headers["x-yourouter-cache"],
                other.headers["x-yourouter-cache"]) == ("miss", "hit", "miss")
        assert again.body == first.body
        rows = [gateway.usage_rows(a.headers["x-request-id"])[0] for a in (first, again)]
        assert float(rows[0]["cost_usd"]) == pytest.approx(0.003) and float(rows[1]["cost_usd"]) == 0
        assert rows[1]["detail"] == "cache hit"


def test_billing_of_results_empty_and_failed_queries(search: GatewayHandle) -> None:
    paid = _get(search, {"q": "billing", "key": KEY})  # google: the shipped 0.005 USD a query
    empty = _get(search, {"q": "zzzzempty", "key": KEY})
    search.fault("google", kind="status", status=500)
    search.fault("brave", kind="status", status=500)
    search.fault("searxng", kind="status", status=500)
    failed = _get(search, {"q": "billing", "key": KEY})
    assert (paid.status, empty.status, failed.status) == (200, 200, 500)
    costs = [float(search.usage_rows(a.headers["x-request-id"])[0]["cost_usd"]) for a in (paid, empty, failed)]
    assert costs == [pytest.approx(0.005), 0.0, 0.0]
    spent = [_get(search, {"q": f"budget {i}", "key": BUDGET_KEY}).status for i in range(4)]
    assert spent[:2] == [200, 200] and spent[-1] == 429  # 0.012 USD buys two 0.005 queries, not a third


def test_a_redis_cache_is_shared_by_two_instances(engines: dict[str, str], tmp_path: Path) -> None:
    import secrets

    from tests.support.services import redis_url

    config = _config(engines, f"sqlite:///{tmp_path / 'shared-cache.db'}", cache_ttl=60)
    config["search"]["cache_backend"] = redis_url()
    query = {"q": f"shared cache {secrets.token_hex(4)}", "num": 2, "key": KEY}  # fresh: no earlier run's entry
    settings = settings_from_mapping(config, env={})
    with start_gateway(settings, sims=engines) as one, start_gateway(settings, sims=engines) as other:
        first = _get(one, query)
        second = _get(other, query)
        assert (first.headers["x-yourouter-cache"], second.headers["x-yourouter-cache"]) == ("miss", "hit")
        assert second.json() == first.json()
