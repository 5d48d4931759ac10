"""One structured (JSON) log line per request: ids, key name, model, routing, status, latency; never bodies or
secrets."""

from __future__ import annotations

import logging
import sys

import orjson

from yourouter.metering.ledger import UsageRecord

access_log = logging.getLogger("yourouter.access")


def log_request(record: UsageRecord) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    line = {
        "event": "request", "request_id": record.request_id, "endpoint": record.endpoint,
        "key": record.key_name, "model": record.model, "vendor": record.vendor, "deployment": record.deployment,
        "status": record.status, "outcome": record.outcome, "latency_ms": round(record.latency_ms, 2),
        "ttfb_ms": None if record.ttfb_ms is None else round(record.ttfb_ms, 2), "streamed": record.streamed,
        "prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens,
    }
    if record.error_type:
        line["error"] = record.error_type
    access_log.info(orjson.dumps(line).decode())


def configure_logging(level: str = "INFO") -> None:
    """Plain lines on stderr; the access log lines are already JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("yourouter")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
