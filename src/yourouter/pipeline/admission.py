"""Admission: a key's rate limits and budget, checked and charged before any upstream is called, settled after.

A request is charged its estimated tokens (prompt size from the body, plus its maximum output) against the key's
TPM window, one request against its RPM window and one slot against its concurrency, and it reserves its worst-case
cost against the budget: that estimate at the highest price among the deployments that may serve it, capped by
`limits.reserve_ceiling_usd`. When it ends, the estimate is replaced by the real tokens and the reservation by the
real cost (0 for errors and zero-completion answers). Keys without limits or budget skip all of this.
"""

from __future__ import annotations

import asyncio
import logging
import re
from decimal import Decimal
from typing import Any, cast

from yourouter.auth.keys import ClientKey
from yourouter.ir.errors import ErrorKind, GatewayError
from yourouter.limits.memory import MemoryLimitBackend
from yourouter.limits.model import (
    Budget,
    Charge,
    LimitBackend,
    LimitBackendUnavailable,
    LimitExceeded,
    Limits,
    ScopeState,
    Ticket,
)
from yourouter.pricing import PriceBook
from yourouter.providers.base import Provider
from yourouter.routing.catalog import Route

log = logging.getLogger("yourouter.limits")
_BASE64 = re.compile(rb"base64,([A-Za-z0-9+/=]+)")
_KEY_LIMITS_CACHED = 10_000  # keys whose Limits/Budget objects are kept; past that the cache starts over
ZERO = Decimal(0)
_MEDIA_TOKENS = 1000  # an inline image or file, whatever its byte size
_KIND_TEXT = {"requests": "requests per minute", "tokens": "tokens per minute", "concurrency": "concurrent requests"}

Headers = list[tuple[bytes, bytes]]


def estimate_prompt_tokens(body: bytes) -> int:
    """About four bytes a token; inline base64 media counts a fixed amount instead of its size."""
    size = len(body)
    if body.find(b"base64,") < 0:  # bytes.find: see codecs/sse.py
        return size // 4 + 1
    media = _BASE64.findall(body)
    return (size - sum(len(m) for m in media)) // 4 + _MEDIA_TOKENS * len(media) + 1


def key_scope(key: ClientKey) -> str:
    return "key:" + key.id


def format_reset(seconds: float) -> str:
    """OpenAI's reset format: `20ms`, `1s`, `6m0s`, `1h2m3s`."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = int(seconds + 0.999)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


_REQUESTS = (b"x-ratelimit-limit-requests", b"x-ratelimit-remaining-requests", b"x-ratelimit-reset-requests")
_TOKENS = (b"x-ratelimit-limit-tokens", b"x-ratelimit-remaining-tokens", b"x-ratelimit-reset-tokens")
_RESETS: dict[int, bytes] = {}  # format_reset's answers by what it rounds to: ms below 1 s, else -(whole seconds)


def _reset_bytes(seconds: float) -> bytes:
    rounded = max(0, round(seconds * 1000)) if seconds < 1 else -int(seconds + 0.999)
    text = _RESETS.get(rounded)
    if text is None:
        text = format_reset(seconds).encode()
        if len(_RESETS) < 8192:  # ~1,000 ms values, plus the whole seconds of the waits seen
            _RESETS[rounded] = text
    return text


def rate_headers(state: ScopeState | None) -> Headers:
    """`x-ratelimit-{limit,remaining,reset}-{requests,tokens}` for the windows the key has."""
    if state is None:
        return []
    headers: Headers = []
    for names, window in ((_REQUESTS, state.requests), (_TOKENS, state.tokens)):
        if window is not None:
            remaining = window.remaining
            headers += ((names[0], b"%d" % window.limit), (names[1], b"%d" % (remaining if remaining > 0 else 0)),
                        (names[2], _reset_bytes(window.reset_s)))
    return headers


class Admission:
    def __init__(self, backend: LimitBackend, prices: PriceBook, *, reserve_ceiling_usd: Decimal,
                 default_max_output_tokens: int, fail_open: bool = False) -> None:
        self.backend = backend
        self._prices = prices
        self._ceiling = reserve_ceiling_usd
        self._default_output = default_max_output_tokens
        self._fail_open = fail_open
        self.backend_up = True
        self.backend_errors = 0
        #: The in-process backend settles without suspending, so awaiting it cannot be interrupted by a
        #: cancellation; a networked one runs on as its own task (`Pipeline.settle`).
        self.settles_in_process = isinstance(backend, MemoryLimitBackend)
        self._settle_soon = getattr(backend, "settle_soon", None)  # the Redis backend's, without a Task
        self._key_limits: dict[str, tuple[ClientKey, Limits, Budget | None, str]] = {}

    def _unavailable(self, exc: Exception) -> GatewayError | None:
        """A backend failure: logged once when it starts, counted; refused (fail closed) unless `fail_open`."""
        self.backend_errors += 1
        if self.backend_up:
            log.error("limits backend unreachable (%s): limited keys are %s until it answers", exc,
                      "let through unchecked" if self._fail_open else "refused")
        self.backend_up = False
        if self._fail_open:
            return None
        return GatewayError(500, ErrorKind.GATEWAY, "The gateway could not check this key's limits (backend "
                            "unreachable).", code="limits_unavailable")

    def _available(self) -> None:
        if not self.backend_up:
            log.warning("limits backend reachable again")
            self.backend_up = True

    def limits_of(self, key: ClientKey) -> tuple[Limits, Budget | None]:
        """The key's limits as the engine takes them; built once per key object (a changed key is a new object)."""
        _, limits, budget, _ = self._key_entry(key)
        return limits, budget

    def _key_entry(self, key: ClientKey) -> tuple[ClientKey, Limits, Budget | None, str]:
        known = self._key_limits.get(key.id)
        if known is not None and known[0] is key:
            return known
        budget = None if key.budget_usd is None else Budget(key.budget_usd, key.budget_period)  # type: ignore[arg-type]
        if len(self._key_limits) >= _KEY_LIMITS_CACHED:
            self._key_limits.clear()
        entry = self._key_limits[key.id] = (key, Limits(key.rpm, key.tpm, key.max_concurrency), budget,
                                             key_scope(key))
        return entry

    def _reservation(self, routes: list[Route], prompt: int, output: int) -> Decimal:
        """The worst case over the candidates: `Price.tokens_cost` of (prompt, output), without a `Usage` per
        route."""
        worst = ZERO
        for route in routes:
            price = self._prices.price_for(route.entry if route.entry is not None else route.upstream_model)
            if price is not None:
                cost = price.tokens_cost(prompt, output)
                if cost > worst:
                    worst = cost
        return min(worst, self._ceiling)

    async def admit(self, request_id: str, key: ClientKey, body: bytes, max_output: int | None,
                    routes: list[Route], reserve_usd: Decimal | None = None) -> Ticket | None:
        """Charges the key for the request, or raises a 429 (`insufficient_quota` for an exhausted budget).
        `reserve_usd` replaces the token-priced reservation (things billed per call)."""
        if not key.limited:
            return None
        _, limits, budget, scope = self._key_entry(key)
        prompt = estimate_prompt_tokens(body) if body else 0
        output = max_output if max_output is not None else self._default_output
        if budget is None:
            reserve = ZERO
        elif reserve_usd is not None:
            reserve = min(reserve_usd, self._ceiling)
        else:
            reserve = self._reservation(routes, prompt, output)
        charge = Charge(scope, limits, prompt + output if limits.tpm else 0, budget, reserve)
        try:
            ticket = await self.backend.admit(request_id, (charge,))
        except LimitExceeded as refused:
            self._available()
            raise _refusal(refused, key) from None
        except LimitBackendUnavailable as exc:
            error = self._unavailable(exc)
            if error is None:
                return None
            raise error from None
        self._available()
        return ticket

    @staticmethod
    def deployment_limited(provider: Provider) -> bool:
        config = provider.config
        return bool(config.rpm or config.tpm or config.max_concurrency)

    async def admit_deployment(self, request_id: str, provider: Provider, body: bytes,
                               max_output: int | None) -> Ticket | None:
        """Charges an attempt to a deployment's own limits; a deployment at a limit is a 429 the pipeline treats
        like an upstream rate limit (the next candidate is tried)."""
        config = provider.config
        limits = Limits(config.rpm, config.tpm, config.max_concurrency)
        tokens = estimate_prompt_tokens(body) + (max_output if max_output is not None else self._default_output)
        charge = Charge("deployment:" + provider.name, limits, tokens=tokens if config.tpm else 0)
        try:
            return await self.backend.admit(request_id, (charge,))
        except LimitExceeded as refused:
            retry = _retry_after(refused)
            raise GatewayError(429, ErrorKind.RATE_LIMIT, f"Deployment {provider.name} is at its "
                               f"{_KIND_TEXT.get(refused.kind, refused.kind)} limit.",
                               code="rate_limit_exceeded", retry_after=retry) from None
        except LimitBackendUnavailable as exc:
            error = self._unavailable(exc)
            if error is None:
                return None
            raise error from None

    async def settle(self, ticket: Ticket, tokens: int, cost: Decimal) -> None:
        await self.backend.settle(ticket, tokens, cost)

    def settle_soon(self, ticket: Ticket, tokens: int, cost: Decimal) -> asyncio.Future[Any]:
        """The settlement started now and left running (for a networked backend): its future."""
        if self._settle_soon is not None:
            return cast("asyncio.Future[Any]", self._settle_soon(ticket, tokens, cost))
        return asyncio.ensure_future(self.backend.settle(ticket, tokens, cost))

    async def state(self, key: ClientKey) -> ScopeState:
        limits, budget = self.limits_of(key)
        return await self.backend.state(key_scope(key), limits, budget)


def _retry_after(refused: LimitExceeded) -> str | None:
    """Whole seconds until the request could fit; a concurrency cap frees at no known time, so 1 s is the hint;
    a lifetime budget or an ask larger than the limit never fits (no header)."""
    if refused.retry_after_s is None:
        return "1" if refused.kind == "concurrency" else None
    return str(max(1, int(refused.retry_after_s + 0.999)))


def _refusal(refused: LimitExceeded, key: ClientKey) -> GatewayError:
    retry = _retry_after(refused)
    error: GatewayError
    if refused.kind == "budget":
        period = {"day": "today's", "month": "this month's"}.get(key.budget_period or "", "its")
        error = GatewayError(429, ErrorKind.QUOTA, f"This API key has used {period} budget of "
                             f"${key.budget_usd} (or the request's reserved cost would exceed it).",
                             code="insufficient_quota", retry_after=retry)
    else:
        limit = {"requests": key.rpm, "tokens": key.tpm, "concurrency": key.max_concurrency}[refused.kind]
        error = GatewayError(429, ErrorKind.RATE_LIMIT, f"Rate limit reached for {_KIND_TEXT[refused.kind]} on "
                             f"this API key: limit {limit}.", code="rate_limit_exceeded", retry_after=retry)
    error.headers = rate_headers(refused.states.get(key_scope(key)))
    return error
