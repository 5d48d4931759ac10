"""`GET /metrics`: Prometheus text with the ledger's queue and the deployments' state."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.support.gateway import GatewayHandle, http


def test_metrics_expose_the_ledger_queue_and_deployments(gateway: GatewayHandle) -> None:
    gateway.post("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "m"}]})
    response = http("GET", gateway.url + "/metrics")
    assert response.status == 200 and response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.body.decode())}
    assert families["yourouter_ledger_queue_capacity"].samples[0].value == gateway.settings.usage.max_pending
    assert families["yourouter_ledger_queue_depth"].samples[0].value >= 0
    assert families["yourouter_ledger_rows_written"].samples[0].value >= 0
    assert families["yourouter_ledger_journal_ok"].samples[0].value == 1.0  # a database file: rows are journaled
    deployments = {s.labels["deployment"] for s in families["yourouter_deployment_in_flight"].samples}
    assert {"sim-a", "sim-b"} <= deployments
