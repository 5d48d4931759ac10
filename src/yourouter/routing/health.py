"""Per-deployment health: in-flight requests, time-to-first-byte EWMA, and a circuit breaker (cooldown, then a
single half-open probe). Process-local: each instance learns its upstreams' health by itself."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures: int = 3  # failures within `window_s` that open the breaker
    window_s: float = 30.0
    cooldown_s: float = 30.0  # how long an open breaker skips the deployment (a 429's Retry-After may extend it)


class BreakerListener(Protocol):
    """Told when a deployment's breaker opens or closes (to share cooldowns between instances)."""

    def tripped(self, name: str, seconds: float) -> None: ...

    def recovered(self, name: str) -> None: ...


@dataclass(slots=True)
class DeploymentHealth:
    policy: BreakerPolicy
    name: str = ""
    listener: BreakerListener | None = None
    in_flight: int = 0
    #: A cooldown another instance started (monotonic seconds here), learned through the shared store.
    remote_until: float = 0.0
    ttfb_ewma_ms: float | None = None
    cooldown_until: float = 0.0
    probing: bool = False
    failures: deque[float] = field(default_factory=deque)
    #: [second, requests begun in it] for the last minute (the local RPM cap): at most 60 entries, whatever the
    #: rate (one timestamp per request, pruned only when a cap asked, grew ~32 bytes a request without a cap)
    requests: deque[list[int]] = field(default_factory=deque)

    def state(self, now: float) -> str:
        if self.cooldown_until > now or self.remote_until > now:
            return "cooldown"
        return "half-open" if self.cooldown_until else "healthy"

    def available(self, now: float) -> bool:
        """False while cooling down (here or, as another instance reported, elsewhere), and while a half-open probe
        is out (only one request probes)."""
        if self.cooldown_until > now or self.remote_until > now:
            return False
        return not (self.cooldown_until and self.probing)

    def begin(self, now: float) -> None:
        self.in_flight += 1
        second, requests = int(now), self.requests
        if requests and requests[-1][0] == second:
            requests[-1][1] += 1
        else:
            requests.append([second, 1])
            while requests[0][0] <= second - 60:
                requests.popleft()
        if self.cooldown_until and self.cooldown_until <= now:
            self.probing = True  # the first request after a cooldown is the probe

    def end(self) -> None:
        self.in_flight -= 1

    def rpm(self, now: float) -> int:
        """Requests begun in the last 60 whole seconds, this one included."""
        second, requests = int(now), self.requests
        while requests and requests[0][0] <= second - 60:
            requests.popleft()
        return sum(count for _, count in requests)

    def succeeded(self, ttfb_ms: float | None) -> None:
        """Only the half-open probe closes the breaker: a request that began before the breaker opened and
        succeeds while it is open proves nothing. Successes do not forgive failures either: those count within
        the window (`failures` within `window_s` open the breaker, whatever succeeded in between)."""
        if self.probing:
            self.failures.clear()
            self.cooldown_until = 0.0
            self.probing = False
            if self.listener is not None:
                self.listener.recovered(self.name)
        if ttfb_ms is not None:
            self.ttfb_ewma_ms = ttfb_ms if self.ttfb_ewma_ms is None else 0.8 * self.ttfb_ewma_ms + 0.2 * ttfb_ms

    def failed(self, now: float, retry_after_s: float | None = None) -> None:
        if self.probing:  # the probe failed: straight back to cooldown
            self.probing = False
            self._trip(now, max(self.policy.cooldown_s, retry_after_s or 0))
            return
        self.failures.append(now)
        while self.failures and self.failures[0] <= now - self.policy.window_s:
            self.failures.popleft()
        if retry_after_s or len(self.failures) >= self.policy.failures:
            self._trip(now, max(self.policy.cooldown_s if not retry_after_s else 0.0, retry_after_s or 0.0))
            self.failures.clear()

    def _trip(self, now: float, seconds: float) -> None:
        self.cooldown_until = now + seconds
        if self.listener is not None:
            self.listener.tripped(self.name, seconds)


class HealthBoard:
    """Health of every deployment, by name."""

    def __init__(self, policy: BreakerPolicy, listener: BreakerListener | None = None) -> None:
        self._policy = policy
        self._health: dict[str, DeploymentHealth] = {}
        self.listener = listener

    def of(self, name: str) -> DeploymentHealth:
        health = self._health.get(name)
        if health is None:
            health = self._health[name] = DeploymentHealth(self._policy, name, self.listener)
        return health

    def reset(self) -> None:
        """Forget everything learned (tests; an operator after fixing an upstream)."""
        self._health.clear()

    @staticmethod
    def now() -> float:
        return time.monotonic()
