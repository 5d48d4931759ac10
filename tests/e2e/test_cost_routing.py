"""`routing.strategy: cost`: of two deployments of one model, the one with the lower `price` serves; the dearer
one is the failover."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import STATIC_KEY, UPSTREAM_KEY, GatewayHandle, start_gateway
from yourouter.config import settings_from_mapping

USER = [{"role": "user", "content": "the cheap one, please"}]


@pytest.fixture(scope="module")
def priced(sim_a: str, sim_b: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    db: Path = tmp_path_factory.mktemp("cost-routing") / "gw.db"
    config = {
        "database_url": f"sqlite:///{db}",
        "usage": {"flush_interval_s": 0.05},
        "routing": {"strategy": "cost", "cooldown_failures": 1000},
        "keys": [{"key": STATIC_KEY, "name": "cost", "models": ["*"]}],
        "providers": [  # the dearer deployment first, so config order alone would pick it
            {"name": "dear", "vendor": "openai", "base_url": f"{sim_a}/v1", "api_key": UPSTREAM_KEY,
             "models": [{"name": "gpt-4o", "price": {"input": 5, "output": 15}}]},
            {"name": "thrifty", "vendor": "azure", "type": "openai", "base_url": f"{sim_b}/v1", "api_key": UPSTREAM_KEY,
             "models": [{"name": "gpt-4o", "upstream": "gpt-4o-2024-08-06",
                         "price": {"input": 2, "output": 8, "cached_input": 1}}]},
        ],
    }
    with start_gateway(settings_from_mapping(config, env={}), sims={"a": sim_a, "b": sim_b}) as gateway:
        yield gateway


def test_the_cheaper_deployment_serves(priced: GatewayHandle) -> None:
    for _ in range(3):
        response = priced.post("/v1/chat/completions", {"model": "gpt-4o", "messages": USER})
        assert response.status == 200 and response.headers["x-yourouter-provider"] == "thrifty"
        assert response.headers["x-yourouter-attempts"] == "1"
        assert priced.sim_requests("b")[-1]["body"]["model"] == "gpt-4o-2024-08-06"
    raw = priced.client().chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)  # type: ignore[arg-type]
    assert raw.headers["x-yourouter-provider"] == "thrifty" and raw.parse().choices[0].message.content


def test_the_dearer_deployment_is_the_failover(priced: GatewayHandle) -> None:
    priced.fault("b", kind="status", status=500, count=1)
    response = priced.post("/v1/chat/completions", {"model": "gpt-4o", "messages": USER})
    assert response.status == 200 and response.headers["x-yourouter-provider"] == "dear"
    assert response.headers["x-yourouter-attempts"] == "2"
