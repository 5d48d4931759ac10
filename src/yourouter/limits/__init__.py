"""Rate limits (RPM, TPM, concurrency) and budgets with reservations, per scope (a key, a deployment), enforced
all-or-nothing across the scopes of one request: in process (`MemoryLimitBackend`) or shared by every gateway
instance through Redis (`RedisLimitBackend`)."""

from __future__ import annotations

import time
from collections.abc import Callable

from yourouter.limits.memory import MemoryLimitBackend
from yourouter.limits.model import (
    Budget,
    Charge,
    Kind,
    LimitBackend,
    LimitBackendUnavailable,
    LimitExceeded,
    Limits,
    ScopeState,
    SpendSource,
    Ticket,
    WindowState,
)

__all__ = [
    "Budget", "Charge", "Kind", "LimitBackend", "LimitBackendUnavailable", "LimitExceeded", "Limits",
    "MemoryLimitBackend", "ScopeState", "SpendSource", "Ticket", "WindowState", "build_backend",
]


def build_backend(url: str | None, spend: SpendSource, *, prefix: str = "yr:",
                  clock: Callable[[], float] = time.time, inflight_ttl_s: float = 900.0) -> LimitBackend:
    """None -> in-process counters; `redis://`, `rediss://` or `unix://` -> Redis, keys under `prefix`. In-flight
    entries not settled within `inflight_ttl_s` free their slot and reservation."""
    if url is None:
        return MemoryLimitBackend(spend, clock=clock, inflight_ttl_s=inflight_ttl_s)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from yourouter.limits.redis import RedisLimitBackend  # redis-py is only imported when used

        return RedisLimitBackend.connect(url, spend, prefix=prefix, clock=clock, inflight_ttl_s=inflight_ttl_s)
    raise ValueError(f"unsupported limits backend URL {url!r}: expected redis://, rediss:// or unix://")
