"""Ordering the deployments that may serve a request: healthy before cooling down or busy, then `priority` (lower
first), then the configured strategy among equals (`cost`: the deployment's input + output price per 1M tokens for
the model, cheapest first, unpriced last)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Literal

from yourouter.pricing import PriceBook
from yourouter.routing.catalog import Route
from yourouter.routing.health import HealthBoard

Strategy = Literal["latency", "least-busy", "weighted", "ordered", "cost"]


class RoutingPolicy:
    def __init__(self, health: HealthBoard, strategy: Strategy = "latency", retry_backoff_s: float = 0.2,
                 max_retry_wait_s: float = 5.0, prices: PriceBook | None = None) -> None:
        self.health = health
        self.strategy = strategy
        self.retry_backoff_s = retry_backoff_s
        self.max_retry_wait_s = max_retry_wait_s
        self.prices = prices if prices is not None else PriceBook()
        self._rates: dict[tuple[str, str, str | None], float] = {}  # a route's price never changes

    def retry_wait(self, attempt: int, retry_after: str | None) -> float | None:
        """Seconds to wait before trying a deployment again: its Retry-After if it gave one (None, give up, when
        that is longer than `max_retry_wait_s`), else jittered exponential backoff."""
        if retry_after:
            try:
                asked = float(retry_after)
            except ValueError:
                asked = 0.0
            return asked if asked <= self.max_retry_wait_s else None
        backoff: float = self.retry_backoff_s * 2.0 ** max(attempt - 2, 0)
        return min(self.max_retry_wait_s, backoff * random.uniform(0.5, 1.5))

    def busy(self, route: Route, now: float) -> bool:
        config = route.provider.config
        health = self.health.of(route.provider.name)
        if config.max_concurrency and health.in_flight >= config.max_concurrency:
            return True
        return bool(config.rpm and health.rpm(now) >= config.rpm)

    def rate(self, route: Route) -> float:
        """The `cost` strategy's key: the deployment's input + output USD per 1M tokens for the route's model (its
        entry's own price, else by upstream name, else by client-facing name); unpriced routes sort last."""
        key = (route.provider.name, route.upstream_model, route.entry.name if route.entry else None)
        rate = self._rates.get(key)
        if rate is None:
            price = self.prices.price_for(route.entry if route.entry is not None else route.upstream_model)
            rate = float(price.token_rate) if price is not None else math.inf
            self._rates[key] = rate
        return rate

    def order(self, routes: Sequence[Route]) -> list[Route]:
        if len(routes) < 2:
            return list(routes)
        now = self.health.now()
        draws = {id(r): random.random() ** (1.0 / max(r.provider.config.weight, 1e-6)) for r in routes} \
            if self.strategy == "weighted" else {}

        def key(indexed: tuple[int, Route]) -> tuple[int, int, int, float, int]:
            position, route = indexed
            health = self.health.of(route.provider.name)
            if self.strategy == "latency":
                score = health.ttfb_ewma_ms or 0.0  # unmeasured deployments get tried (and measured) first
            elif self.strategy == "least-busy":
                score = float(health.in_flight)
            elif self.strategy == "weighted":
                score = -draws[id(route)]
            elif self.strategy == "cost":
                score = self.rate(route)
            else:
                score = 0.0
            return (0 if health.available(now) else 1, 1 if self.busy(route, now) else 0,
                    route.provider.config.priority, score, position)

        return [route for _, route in sorted(enumerate(routes), key=key)]
