"""Prometheus metrics at `GET /metrics`, read from the gateway's parts when scraped: nothing is counted on the
request path, so metrics cost the hot path nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from yourouter.metering.ledger import UsageLedger
from yourouter.routing.health import HealthBoard

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class GatewayCollector:
    """A custom collector (prometheus-client calls `collect` at scrape time)."""

    def __init__(self, ledger: UsageLedger, health: HealthBoard, deployments: list[str], admission: Any = None,
                 shared: Any = None) -> None:
        self._ledger = ledger
        self._health = health
        self._deployments = deployments
        self._admission = admission
        self._shared = shared

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        ledger = self._ledger
        yield GaugeMetricFamily("yourouter_ledger_queue_depth", "Usage rows waiting to be written.",
                                value=ledger.depth)
        yield GaugeMetricFamily("yourouter_ledger_queue_capacity", "Rows the ledger holds in memory before "
                                "spilling to disk.", value=ledger.capacity)
        for name, value, text in (("written", ledger.written, "written to the database"),
                                  ("spilled", ledger.spilled, "spilled to the local file"),
                                  ("replayed", ledger.replayed, "written from an earlier run's spill file or "
                                   "journal"),
                                  ("dropped", ledger.dropped, "lost (no spill directory)")):
            yield CounterMetricFamily(f"yourouter_ledger_rows_{name}", f"Usage rows {text}.", value=value)
        yield GaugeMetricFamily("yourouter_ledger_journal_ok", "1 while every usage row is journaled until "
                                "committed (a killed process loses none); 0 if the journal is off or unwritable.",
                                value=1.0 if ledger.journal_ok else 0.0)
        in_flight = GaugeMetricFamily("yourouter_deployment_in_flight", "Requests in flight per deployment.",
                                      labels=["deployment"])
        cooling = GaugeMetricFamily("yourouter_deployment_cooling_down", "1 while the breaker skips the "
                                    "deployment.", labels=["deployment"])
        now = self._health.now()
        for name in self._deployments:
            health = self._health.of(name)
            in_flight.add_metric([name], health.in_flight)
            cooling.add_metric([name], 1.0 if health.cooldown_until > now else 0.0)
        yield in_flight
        yield cooling
        if self._admission is not None:
            yield GaugeMetricFamily("yourouter_limits_backend_up", "0 while the limits backend is unreachable.",
                                    value=1.0 if self._admission.backend_up else 0.0)
            yield CounterMetricFamily("yourouter_limits_backend_errors", "Limit checks the backend could not "
                                      "answer.", value=self._admission.backend_errors)
        if self._shared is not None:
            yield GaugeMetricFamily("yourouter_shared_health_up", "0 while shared cooldowns (Redis) are "
                                    "unreachable.", value=1.0 if self._shared.up else 0.0)


class Metrics:
    def __init__(self, ledger: UsageLedger, health: HealthBoard, deployments: list[str], admission: Any = None,
                 shared: Any = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(cast(Any, GatewayCollector(ledger, health, deployments, admission, shared)))

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
