"""The catalog's candidate selection and the key store's cache (pure, with an in-memory repository)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from yourouter.auth.keys import ClientKey, KeyStore, hash_key
from yourouter.config import StaticKey, settings_from_mapping
from yourouter.ir.errors import GatewayError
from yourouter.providers.registry import build_provider
from yourouter.routing.catalog import Catalog
from yourouter.storage.repositories import StoredKey


def _catalog() -> Catalog:
    settings = settings_from_mapping({"providers": [
        {"name": "a", "vendor": "openai", "base_url": "http://a/v1", "models": ["m1", "m2"]},
        {"name": "b", "vendor": "azure", "base_url": "http://b/v1", "models": ["m1"]},
        {"name": "c", "vendor": "azure", "base_url": "http://c/v1", "models": ["m1"]},
    ]}, env={})
    return Catalog(build_provider(p) for p in settings.providers)


def test_candidates_in_config_order_and_vendor_pinning() -> None:
    catalog = _catalog()
    assert [r.provider.name for r in catalog.candidates("m1", None, "chat")] == ["a", "b", "c"]
    assert [r.provider.name for r in catalog.candidates("m1", "AUTO", "chat")] == ["a", "b", "c"]
    assert [r.provider.name for r in catalog.candidates("m1", "Azure", "chat")] == ["b", "c"]
    assert catalog.models() == [("m1", ("openai", "azure")), ("m2", ("openai",))]


@pytest.mark.parametrize(("model", "vendor", "code"), [
    ("nope", None, "model_not_found"), ("m1", "aws", "unknown_vendor"), ("m2", "azure", "vendor_mismatch")])
def test_candidates_errors(model: str, vendor: str | None, code: str) -> None:
    with pytest.raises(GatewayError) as caught:
        _catalog().candidates(model, vendor, "chat")
    assert caught.value.status == 400 and caught.value.code == code


def test_key_model_patterns() -> None:
    key = ClientKey(id="k", name="n", models=("gpt-4o*", "text-embedding-3-small"), source="static")
    assert key.allows("gpt-4o") and key.allows("gpt-4o-mini") and key.allows("text-embedding-3-small")
    assert not key.allows("o3") and ClientKey("k", "n", ("*",), "static").allows("anything")


class MemoryKeys:
    def __init__(self) -> None:
        self.rows: dict[str, StoredKey] = {}
        self.reads = 0

    async def by_hash(self, key_hash: str) -> StoredKey | None:
        self.reads += 1
        await asyncio.sleep(0.01)
        return self.rows.get(key_hash)


def test_key_store_caches_and_coalesces_reads() -> None:
    repo = MemoryKeys()
    digest = hash_key("sk-db-key")
    repo.rows[digest] = StoredKey("key_1", "db", digest, "sk-db", ("*",), dt.datetime.now(dt.UTC), None)
    store = KeyStore([StaticKey(key="sk-static-1", name="s")], repo, ttl_s=60)  # type: ignore[arg-type]

    async def run() -> None:
        found = await asyncio.gather(*(store.authenticate("sk-db-key") for _ in range(20)))
        assert {k.id for k in found if k} == {"key_1"} and repo.reads == 1
        assert (await store.authenticate("sk-db-key")).name == "db" and repo.reads == 1
        assert (await store.authenticate("sk-static-1")).source == "static" and repo.reads == 1
        assert await store.authenticate("sk-unknown") is None
        assert await store.authenticate("sk-unknown") is None and repo.reads == 2  # negative cache

    asyncio.run(run())


def test_breaker_counts_failures_in_the_window_and_only_the_probe_closes_it() -> None:
    from yourouter.routing.health import BreakerPolicy, DeploymentHealth

    health = DeploymentHealth(BreakerPolicy(failures=3, window_s=30, cooldown_s=10))
    for at in (0.0, 1.0):
        health.failed(at)
        health.succeeded(5.0)  # successes in between do not forgive failures within the window
    health.failed(2.0)
    assert health.state(2.0) == "cooldown" and not health.available(2.0)
    health.succeeded(5.0)  # a request that began before the breaker opened succeeds: still open
    assert health.state(3.0) == "cooldown"
    assert health.available(12.5) and health.state(12.5) == "half-open"
    health.begin(12.5)  # the probe
    assert not health.available(12.6)  # one probe at a time
    health.succeeded(4.0)
    health.end()
    assert health.state(13.0) == "healthy" and health.available(13.0)
    health.failed(50.0)
    health.failed(100.0)
    health.failed(150.0)  # three failures, but never three within 30 s
    assert health.state(150.0) == "healthy"


def test_deployment_request_counts_stay_bounded_and_count_the_last_minute() -> None:
    """The local RPM counter keeps per-second counts for one minute, whatever the rate: it used to keep one
    timestamp per request, pruned only when a deployment had an `rpm` cap to check (a ~1 MB/min leak at 300
    req/s in the memory soak)."""
    from yourouter.routing.health import BreakerPolicy, DeploymentHealth

    health = DeploymentHealth(BreakerPolicy())
    for tick in range(100 * 300):  # 300 requests a second for 100 s, never asking for the rpm
        health.begin(1000.0 + tick / 300)
        health.end()
    assert len(health.requests) <= 61
    assert health.rpm(1099.99) == 60 * 300  # seconds 1040..1099
    assert health.rpm(1130.0) == 29 * 300  # 1071..1099 are within the minute ending at 1130
    assert health.rpm(1200.0) == 0 and len(health.requests) == 0
