"""Pricing: the lookup rules, the config's overrides and a deployment's own price, exact cost arithmetic."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from yourouter.config import ConfigError, settings_from_mapping
from yourouter.config.schema import ModelEntry
from yourouter.ir.usage import Usage
from yourouter.pricing import PRICES, Price, PriceBook, lookup_names
from yourouter.pricing.book import price_of

BOOK = PriceBook()


@pytest.mark.parametrize(("model", "entry"), [
    ("gpt-4o", "gpt-4o"),
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("GPT-4o-Mini-2024-07-18", "gpt-4o-mini"),
    ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
    ("o4-mini-2025-04-16", "o4-mini"),
    ("gpt-5-chat-latest", "gpt-5-chat"),
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("claude-sonnet-4-20250514", "claude-sonnet-4"),
    ("claude-opus-4-1-20250805", "claude-opus-4-1"),
    ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
    ("gemini-2.0-flash-001", "gemini-2.0-flash"),
    ("mistral-large-2411", "mistral-large"),
    ("mistral-small-latest", "mistral-small"),
    ("grok-4-0709", "grok-4"),
    ("doubao-seed-1-6-250615", "doubao-seed-1-6"),
    ("doubao-seedance-1-0-pro-250528", "doubao-seedance-1-0-pro"),
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic.claude-3-5-sonnet"),
    ("us.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic.claude-sonnet-4"),
    ("eu.anthropic.claude-haiku-4-5-20251001-v1:0", "anthropic.claude-haiku-4-5"),
    ("apac.amazon.nova-pro-v1:0", "amazon.nova-pro"),
    ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-sonnet-4-5"),
    ("amazon.nova-lite-v1:0", "amazon.nova-lite"),
    ("openai/gpt-4o", "gpt-4o"),  # OpenRouter-style vendor prefix, last resort
    ("google-search", "google-search"),
])
def test_lookup_finds_the_family_entry(model: str, entry: str) -> None:
    assert BOOK.lookup(model) is PRICES[entry]


def test_exact_name_wins_over_its_family() -> None:
    assert BOOK.lookup("gpt-4o-2024-05-13") == Price.of(5, 15)  # the launch snapshot kept its own price
    assert BOOK.lookup("gpt-4o-2024-11-20") == Price.of(2.5, 10, 1.25)
    assert BOOK.lookup("mistral-large-2512") != BOOK.lookup("mistral-large-2411")


@pytest.mark.parametrize("model", ["no-such-model", "gpt-4o-turbo-ultra", "llama3.2", "", "us.", "x/",
                                   "gemini-2.5-flash-preview-05-20"])
def test_unknown_models_have_no_price(model: str) -> None:
    assert BOOK.lookup(model) is None
    assert BOOK.cost(model, Usage(prompt_tokens=10)) is None and BOOK.cost_usd(model, Usage()) is None


def test_lookup_names_order() -> None:
    assert list(lookup_names("us.anthropic.claude-sonnet-4-20250514-v1:0")) == [
        "us.anthropic.claude-sonnet-4-20250514-v1:0", "us.anthropic.claude-sonnet-4-20250514",
        "us.anthropic.claude-sonnet-4", "anthropic.claude-sonnet-4-20250514-v1:0",
        "anthropic.claude-sonnet-4-20250514", "anthropic.claude-sonnet-4"]
    assert list(lookup_names("gpt-4o")) == ["gpt-4o"]
    assert list(lookup_names("openai/gpt-4o-2024-08-06")) == [
        "openai/gpt-4o-2024-08-06", "openai/gpt-4o", "gpt-4o-2024-08-06", "gpt-4o"]


def test_every_preset_vendor_has_prices() -> None:
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3", "o4-mini", "gpt-5", "gpt-5-mini",
                  "text-embedding-3-small", "text-embedding-3-large", "claude-3-5-haiku-20241022",
                  "claude-3-7-sonnet-20250219", "claude-opus-4-20250514", "claude-haiku-4-5-20251001",
                  "claude-opus-4-5-20251101", "gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite",
                  "gemini-2.0-flash-lite", "gemini-embedding-001", "deepseek-chat", "deepseek-reasoner",
                  "mistral-large-latest", "mistral-small-2506", "grok-3", "grok-4", "doubao-seedance-1-0-pro",
                  "amazon.nova-pro-v1:0", "llama-3.3-70b-versatile", "brave", "searxng"):
        assert BOOK.lookup(model) is not None, model
    assert all(name == name.lower() for name in PRICES)
    for price in PRICES.values():
        assert min(price.input, price.output, price.per_query) >= 0
        assert price.cached_input is None or price.cached_input <= price.input


def test_cost_arithmetic_is_exact() -> None:
    gpt4o = BOOK.lookup("gpt-4o")
    assert gpt4o is not None
    # 1,000 prompt tokens of which 400 cached, 500 completion: 600*2.5 + 400*1.25 + 500*10 per 1M = 0.007
    usage = Usage(prompt_tokens=1000, completion_tokens=500, cached_tokens=400)
    assert gpt4o.cost(usage) == Decimal("0.007")
    assert BOOK.cost_usd("gpt-4o-2024-08-06", usage) == 0.007
    # 0.1 + 0.2 in floats is 0.30000000000000004; here each token adds an exact amount.
    tenth = Price.of(0.1, 0.2)
    total = sum((tenth.cost(Usage(prompt_tokens=1, completion_tokens=1)) for _ in range(10_000)), Decimal(0))
    assert total == Decimal("0.003") and float(total) == 0.003
    assert Price.of(input=0.075).cost(Usage(prompt_tokens=3)) == Decimal("0.000000225")


def test_cached_tokens_bill_at_input_price_without_a_cached_price() -> None:
    usage = Usage(prompt_tokens=1_000_000, cached_tokens=1_000_000)
    assert Price.of(3, 15).cost(usage) == Decimal(3)
    assert Price.of(3, 15, 0.3).cost(usage) == Decimal("0.3")
    assert Price.of(3, 15, 0).cost(usage) == 0  # a free cache read is a price, not "unset"
    # More cached than prompt tokens (a confused upstream) never bills negative fresh input.
    assert Price.of(3, 15, 0.3).cost(Usage(prompt_tokens=10, cached_tokens=50)) == Decimal("0.000003")


def test_per_query_and_video_prices() -> None:
    assert BOOK.cost("google-search", queries=1) == Decimal("0.005")
    assert BOOK.cost("brave", queries=3) == Decimal("0.015")
    assert BOOK.cost("searxng", queries=10) == 0
    video = Usage(prompt_tokens=0, completion_tokens=246_000)  # about one 5 s 1080p clip
    assert BOOK.cost("doubao-seedance-1-0-pro-250528", video) == Decimal("0.615")
    assert BOOK.cost("text-embedding-3-small", Usage(prompt_tokens=500_000)) == Decimal("0.01")


def test_overrides_replace_and_extend_the_table() -> None:
    book = PriceBook({"GPT-4o": Price.of(1, 2), "my-model": Price.of(0.5, 0.5), "brave": Price.of(per_query=0.009)})
    assert book.lookup("gpt-4o") == Price.of(1, 2)  # the whole entry is replaced: no cached price left
    assert book.lookup("gpt-4o-2024-08-06") == Price.of(1, 2)
    assert book.lookup("gpt-4o-2024-05-13") == Price.of(5, 15)  # the table's more specific entry still wins
    assert book.lookup("my-model-2025-01-01") == Price.of(0.5, 0.5)
    assert book.cost("brave", queries=1) == Decimal("0.009")
    assert book.lookup("gpt-4o-mini") is PRICES["gpt-4o-mini"]
    assert BOOK.lookup("gpt-4o") == Price.of(2.5, 10, 1.25)  # other books are untouched


def test_price_for_a_model_entry() -> None:
    own = ModelEntry(name="gpt-4o", price={"input": 1, "output": 4})  # type: ignore[arg-type]
    assert BOOK.price_for(own) == Price.of(1, 4)
    by_upstream = ModelEntry(name="house-model", upstream="claude-sonnet-4-5-20250929")
    assert BOOK.price_for(by_upstream) is PRICES["claude-sonnet-4-5"]
    by_name = ModelEntry(name="gpt-4.1", upstream="my-azure-deployment")
    assert BOOK.price_for(by_name) is PRICES["gpt-4.1"]
    assert BOOK.price_for(ModelEntry(name="mystery")) is None
    assert BOOK.cost(own, Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)) == Decimal(5)
    # Remembered per entry object (the request path asks twice per request): same answer, and an entry built
    # later (a reloaded config) is priced by its own fields, even if it reuses a freed object's id.
    assert BOOK.price_for(own) is BOOK.price_for(own)
    for n in range(50):
        entry = ModelEntry(name="gpt-4o", price={"input": n, "output": 0})  # type: ignore[arg-type]
        assert BOOK.price_for(entry) == Price.of(n, 0)
        del entry


def test_config_prices_and_deployment_price() -> None:
    settings = settings_from_mapping({
        "prices": {"gpt-4o": {"input": 2.5, "output": 10, "cached_input": 1.25}, "google-search": {"per_query": 0.004}},
        "routing": {"strategy": "cost"},
        "providers": [{"name": "cheap", "vendor": "openai", "api_key": "k",
                       "models": ["gpt-4o-mini", {"name": "gpt-4o", "price": {"input": 2, "output": 8}}]}],
    }, env={})
    assert settings.routing.strategy == "cost"
    book = PriceBook.from_config(settings.prices)
    assert book.lookup("gpt-4o") == Price.of(2.5, 10, 1.25) and book.cost("google-search", queries=1) == Decimal(
        "0.004")
    mini, gpt4o = settings.providers[0].models
    assert mini.price is None and gpt4o.price is not None and price_of(gpt4o.price) == Price.of(2, 8)
    assert book.price_for(gpt4o) == Price.of(2, 8)
    # A deployment's price and the `prices` map survive the JSON round trip `serve --workers N` makes.
    again = type(settings).model_validate_json(settings.model_dump_json())
    assert again.prices == settings.prices and again.providers[0].models[1].price == gpt4o.price


@pytest.mark.parametrize(("raw", "message"), [
    ({"prices": {"gpt-4o": {"input": -1}}}, "prices.gpt-4o.input"),
    ({"prices": {"gpt-4o": {"inptu": 1}}}, "prices.gpt-4o.inptu: unknown key"),
    ({"prices": {"gpt-4o": {}}}, "prices.gpt-4o: a price needs at least one of"),
    ({"prices": {"gpt-4o": {"output": "cheap"}}}, "prices.gpt-4o.output"),
    ({"prices": {"gpt-4o": {"output": float("inf")}}}, "prices.gpt-4o.output"),
    ({"prices": {"gpt-4o": 2.5}}, "prices.gpt-4o"),
    ({"providers": [{"name": "p", "vendor": "openai", "models": [{"name": "m", "price": {"per_call": 1}}]}]},
     "providers.0.models.0.price.per_call: unknown key"),
    ({"providers": [{"name": "p", "vendor": "openai", "models": [{"name": "m", "price": {"cached_input": -0.1}}]}]},
     "providers.0.models.0.price.cached_input"),
    ({"routing": {"strategy": "cheapest"}}, "routing.strategy"),
])
def test_price_config_errors_name_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(raw, env={})
    assert message in str(caught.value)
