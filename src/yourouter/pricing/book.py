"""The price book: the shipped table under the config's `prices`, a deployment's own price over both, and the
rules that find a dated, versioned or regional model id's entry."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from decimal import Decimal

from yourouter.config.schema import ModelEntry, PriceConfig
from yourouter.ir.usage import Usage
from yourouter.pricing.price import Price
from yourouter.pricing.table import PRICES

#: Bedrock cross-region inference profiles: `us.anthropic.claude-…`, `global.anthropic.claude-…`.
_REGION = re.compile(r"^(?:us|us-gov|eu|apac|jp|au|ca|global)\.")
#: One trailing date or version: -latest, -2024-08-06, -20250929 (Anthropic), -250615 (Volcengine),
#: -0709 / -2411 (xAI, Mistral), -001 (Gemini), -v1:0 (Bedrock).
_SUFFIX = re.compile(r"-(?:latest|\d{4}-\d{2}-\d{2}|\d{3,8}|v\d+:\d+)$")
_MEMO_LIMIT = 10_000


def lookup_names(model: str) -> Iterator[str]:
    """The names a model is looked up by, in order, lower-cased: the name itself, then with trailing date or
    version suffixes taken off one at a time (`gpt-4o-2024-08-06` -> `gpt-4o`); then the same for a Bedrock id
    without its region prefix (`us.anthropic.claude-sonnet-4-20250514-v1:0` -> `anthropic.claude-sonnet-4`);
    last, for a `vendor/model` id (OpenRouter's `openai/gpt-4o`), the part after the last slash, by the same
    rules."""
    name = model.strip().lower()
    seen: set[str] = set()
    for whole in (name, name.rpartition("/")[2]):
        for base in (whole, _REGION.sub("", whole, count=1)):
            while base and base not in seen:
                seen.add(base)
                yield base
                base = _SUFFIX.sub("", base, count=1)


def price_of(config: PriceConfig) -> Price:
    """A config file's price as a `Price`."""
    return Price.of(config.input, config.output, config.cached_input, config.per_query)


class PriceBook:
    """Prices by model (or search provider) name: the config's `prices` over the shipped table.

    Unknown models have no price (None): callers count them as costing 0 and flag them."""

    def __init__(self, overrides: Mapping[str, Price] | None = None, table: Mapping[str, Price] = PRICES) -> None:
        self._prices = {name.lower(): price for name, price in table.items()}
        self._prices.update((name.lower(), price) for name, price in (overrides or {}).items())
        self._memo: dict[str, Price | None] = {}
        self._entries: dict[int, tuple[ModelEntry, Price | None]] = {}  # by id(): config entries are not hashable

    @classmethod
    def from_config(cls, prices: Mapping[str, PriceConfig], table: Mapping[str, Price] = PRICES) -> PriceBook:
        """The book for a config's top-level `prices` map."""
        return cls({name: price_of(config) for name, config in prices.items()}, table)

    def lookup(self, model: str) -> Price | None:
        """The price of `model` by name (see `lookup_names` for the rules); None when unknown."""
        if model in self._memo:
            return self._memo[model]
        found = next((self._prices[name] for name in lookup_names(model) if name in self._prices), None)
        if len(self._memo) < _MEMO_LIMIT:  # names come from the config's catalog; the cap guards odd callers
            self._memo[model] = found
        return found

    def price_for(self, model: str | ModelEntry) -> Price | None:
        """A model's price. For a deployment's model entry: the entry's own `price` when it has one, else the
        book's price for its upstream name, else for its client-facing name."""
        if isinstance(model, str):
            return self.lookup(model)
        known = self._entries.get(id(model))
        if known is not None and known[0] is model:
            return known[1]
        price = price_of(model.price) if model.price is not None else (
            self.lookup(model.upstream_name) or self.lookup(model.name))
        if len(self._entries) < _MEMO_LIMIT:  # entries come from the config; the object is kept with its price
            self._entries[id(model)] = (model, price)
        return price

    def cost(self, model: str | ModelEntry, usage: Usage | None = None, queries: int = 0) -> Decimal | None:
        """The exact USD cost of `usage` (and `queries` billed calls) on `model`; None when it has no price."""
        price = self.price_for(model)
        return None if price is None else price.cost(usage, queries)

    def cost_usd(self, model: str | ModelEntry, usage: Usage | None = None, queries: int = 0) -> float | None:
        """`cost` as a float, rounded once from the exact amount (for storing and reporting)."""
        amount = self.cost(model, usage, queries)
        return None if amount is None else float(amount)
