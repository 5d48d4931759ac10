"""The `cost` routing strategy: among equals (health, busy, priority), the cheapest deployment of the model first."""

from __future__ import annotations

from typing import Any

from yourouter.config import settings_from_mapping
from yourouter.pricing import PriceBook
from yourouter.providers.registry import build_provider
from yourouter.routing.catalog import Catalog
from yourouter.routing.health import BreakerPolicy, HealthBoard
from yourouter.routing.policy import RoutingPolicy


def _deployment(name: str, *models: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "vendor": "openai", "base_url": f"http://{name}/v1", "models": list(models), **extra}


def _policy(providers: list[dict[str, Any]], prices: dict[str, Any] | None = None) -> tuple[Catalog, RoutingPolicy]:
    settings = settings_from_mapping({"providers": providers, "prices": prices or {},
                                      "routing": {"strategy": "cost"}}, env={})
    catalog = Catalog(build_provider(p) for p in settings.providers)
    policy = RoutingPolicy(HealthBoard(BreakerPolicy()), settings.routing.strategy,
                           prices=PriceBook.from_config(settings.prices))
    return catalog, policy


def _order(catalog: Catalog, policy: RoutingPolicy, model: str) -> list[str]:
    return [route.provider.name for route in policy.order(catalog.candidates(model, None, "chat"))]


def test_cheapest_first_unpriced_last() -> None:
    catalog, policy = _policy([
        _deployment("table-4o", {"name": "house", "upstream": "gpt-4o"}),  # 2.5 + 10
        _deployment("unpriced", {"name": "house", "upstream": "secret-llm"}),  # no price at all
        _deployment("table-mini", {"name": "house", "upstream": "gpt-4o-mini-2024-07-18"}),  # 0.15 + 0.6
        _deployment("own-price", {"name": "house", "upstream": "gpt-4o", "price": {"input": 0.1, "output": 0.2}}),
        _deployment("same-4o", {"name": "house", "upstream": "gpt-4o-2024-08-06"}),  # ties keep config order
    ])
    assert _order(catalog, policy, "house") == ["own-price", "table-mini", "table-4o", "same-4o", "unpriced"]
    assert policy.rate(catalog.candidates("house", None, "chat")[1]) == float("inf")


def test_client_facing_name_and_config_prices() -> None:
    catalog, policy = _policy([
        _deployment("azure-41", {"name": "gpt-4.1", "upstream": "my-deployment"}),  # by client name: 2 + 8
        _deployment("mini-41", {"name": "gpt-4.1", "upstream": "gpt-4.1-mini"}),  # 0.4 + 1.6
        _deployment("discounted", {"name": "gpt-4.1", "upstream": "contract-41"}),  # from `prices`: 0.5 + 0.5
    ], prices={"contract-41": {"input": 0.5, "output": 0.5}})
    assert _order(catalog, policy, "gpt-4.1") == ["discounted", "mini-41", "azure-41"]


def test_health_and_priority_come_before_price() -> None:
    catalog, policy = _policy([
        _deployment("cheap", {"name": "m", "price": {"input": 0.1}}),
        _deployment("mid", {"name": "m", "price": {"input": 1}}),
        _deployment("dear", {"name": "m", "price": {"input": 10}}),
        _deployment("favoured", {"name": "m", "price": {"input": 100}}, priority=-1),
    ])
    assert _order(catalog, policy, "m") == ["favoured", "cheap", "mid", "dear"]
    policy.health.of("cheap").cooldown_until = policy.health.now() + 60
    policy.health.of("favoured").cooldown_until = policy.health.now() + 60
    assert _order(catalog, policy, "m") == ["mid", "dear", "favoured", "cheap"]


def test_other_strategies_ignore_price() -> None:
    catalog, policy = _policy([_deployment("dear", {"name": "m", "price": {"input": 10}}),
                               _deployment("cheap", {"name": "m", "price": {"input": 1}})])
    policy.strategy = "ordered"
    assert _order(catalog, policy, "m") == ["dear", "cheap"]
