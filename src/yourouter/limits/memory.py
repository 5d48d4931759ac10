"""The in-process backend: counters in dictionaries, for one gateway process.

Atomic by construction: `admit` checks every scope and charges them with no `await` in between, so no other
request of the event loop can interleave. The only await is the first request of a budget period loading its
committed spend from the `SpendSource` (one call per scope and period, shared by concurrent first requests), and it
happens before the check, never between the check and the charge."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from decimal import Decimal

from yourouter.limits.model import Budget, Charge, LimitExceeded, Limits, ScopeState, SpendSource, Ticket
from yourouter.limits.periods import PeriodCalendar, PeriodSpan, budget_wait
from yourouter.limits.windows import (
    Failure,
    SlidingWindow,
    pick_failure,
    request_state,
    requests_wait,
    token_state,
    tokens_fit,
    tokens_wait,
)

ZERO = Decimal(0)


class _ScopeCounters:
    __slots__ = ("requests", "tokens", "inflight", "reserved", "spend")

    def __init__(self) -> None:
        self.requests = SlidingWindow()
        self.tokens = SlidingWindow()
        # request id -> (expires at, reserved USD); insertion order is expiry order, so pruning looks at the front
        self.inflight: dict[str, tuple[float, Decimal]] = {}
        self.reserved = ZERO
        self.spend: dict[str, Decimal] = {}  # budget period key -> committed USD (only the current period is kept)

    def prune(self, now: float) -> None:
        inflight = self.inflight
        while inflight:
            request_id = next(iter(inflight))
            expires_at, reserved = inflight[request_id]
            if expires_at > now:
                return
            del inflight[request_id]
            self.reserved -= reserved


class MemoryLimitBackend:
    """Limits and budgets for one process. `clock` is wall-clock seconds (UTC budget periods follow it); in-flight
    entries not settled within `inflight_ttl_s` are dropped, freeing their slot and reservation."""

    def __init__(self, spend: SpendSource, *, clock: Callable[[], float] = time.time,
                 inflight_ttl_s: float = 900.0) -> None:
        self._spend_source = spend
        self._clock = clock
        self._ttl = inflight_ttl_s
        self._scopes: dict[str, _ScopeCounters] = {}
        self._calendar = PeriodCalendar()
        self._loading: dict[tuple[str, str], asyncio.Future[None]] = {}

    async def admit(self, request_id: str, charges: Sequence[Charge]) -> Ticket:
        charges = tuple(charges)
        if len(charges) > 1 and len({c.scope for c in charges}) != len(charges):
            raise ValueError("each scope may be charged once per request")
        while True:
            now = self._clock()
            if len(charges) == 1:  # the common case (one key, or one deployment): no per-scope lists
                admitted = self._admit_one(request_id, charges, now)
                if isinstance(admitted, Ticket):
                    return admitted
                if admitted is not None:
                    await self._load_spend(charges[0].scope, admitted)
                    continue
            result = self._admit_now(request_id, charges, now)  # several scopes, or a refusal to explain
            if isinstance(result, Ticket):
                return result
            for scope, span in result:  # budget counters to load first; then check again from scratch
                await self._load_spend(scope, span)

    def _admit_one(self, request_id: str, charges: tuple[Charge, ...], now: float) -> Ticket | PeriodSpan | None:
        """`_admit_now` for one scope: the Ticket, the budget period whose spend must be loaded first, or None when
        a limit refuses (`_admit_now` then builds the refusal: the same checks, in one place)."""
        charge = charges[0]
        sc = self._scopes.get(charge.scope)
        if sc is None:
            sc = self._scopes[charge.scope] = _ScopeCounters()
        sc.prune(now)
        inflight = sc.inflight
        if request_id in inflight:
            raise ValueError(f"request {request_id!r} is already in flight")
        sec = int(now)
        limits = charge.limits
        rpm, tpm, budget = limits.rpm, limits.tpm, charge.budget
        if rpm is not None and sc.requests.used(sec) >= rpm:
            return None
        if tpm is not None and not tokens_fit(sc.tokens.used(sec), tpm, charge.tokens):
            return None
        if limits.max_concurrency is not None and len(inflight) >= limits.max_concurrency:
            return None
        expires_at = now + self._ttl
        if budget is None:
            span = None
            period_keys = {}
            inflight[request_id] = (expires_at, ZERO)
        else:
            span = self._calendar.span(budget, now)
            spend = sc.spend.get(span.key)
            if spend is None:
                return span
            held = spend + sc.reserved
            reserve = charge.reserve_usd
            if held >= budget.limit_usd or held + reserve > budget.limit_usd:
                return None
            inflight[request_id] = (expires_at, reserve)
            sc.reserved += reserve
            period_keys = {charge.scope: span.key}
        if rpm is not None:
            sc.requests.add(sec, 1)
        if tpm is not None and charge.tokens:
            sc.tokens.add(sec, charge.tokens)
        return Ticket(request_id, charges, {charge.scope: self._state(sc, limits, budget, span, now)}, period_keys,
                      now)

    def _admit_now(self, request_id: str, charges: tuple[Charge, ...],
                   now: float) -> Ticket | list[tuple[str, PeriodSpan]]:
        sec = int(now)
        scopes = self._scopes
        counters: list[_ScopeCounters] = []
        spans: list[PeriodSpan | None] = []
        failures: list[Failure] = []
        missing: list[tuple[str, PeriodSpan]] = []
        for charge in charges:
            sc = scopes.get(charge.scope)
            if sc is None:
                sc = scopes[charge.scope] = _ScopeCounters()
            counters.append(sc)
            sc.prune(now)
            if request_id in sc.inflight:
                raise ValueError(f"request {request_id!r} is already in flight")
            limits = charge.limits
            if limits.rpm is not None and sc.requests.used(sec) >= limits.rpm:
                failures.append((charge.scope, "requests", requests_wait(sc.requests, now, limits.rpm)))
            if limits.tpm is not None and not tokens_fit(sc.tokens.used(sec), limits.tpm, charge.tokens):
                failures.append((charge.scope, "tokens", tokens_wait(sc.tokens, now, limits.tpm, charge.tokens)))
            if limits.max_concurrency is not None and len(sc.inflight) >= limits.max_concurrency:
                failures.append((charge.scope, "concurrency", None))
            budget = charge.budget
            if budget is None:
                spans.append(None)
                continue
            span = self._calendar.span(budget, now)
            spans.append(span)
            spend = sc.spend.get(span.key)
            if spend is None:
                missing.append((charge.scope, span))
                continue
            held = spend + sc.reserved
            if held >= budget.limit_usd or held + charge.reserve_usd > budget.limit_usd:
                wait = None if charge.reserve_usd > budget.limit_usd else budget_wait(budget, span, now)
                failures.append((charge.scope, "budget", wait))
        if missing:
            return missing
        if failures:
            states = {c.scope: self._state(sc, c.limits, c.budget, span, now)
                      for c, sc, span in zip(charges, counters, spans, strict=True)}
            raise LimitExceeded(*pick_failure(failures), states)
        expires_at = now + self._ttl
        states = {}
        period_keys = {}
        for charge, sc, charged_span in zip(charges, counters, spans, strict=True):
            limits = charge.limits
            if limits.rpm is not None:
                sc.requests.add(sec, 1)
            if limits.tpm is not None and charge.tokens:
                sc.tokens.add(sec, charge.tokens)
            if charged_span is not None:
                sc.inflight[request_id] = (expires_at, charge.reserve_usd)
                sc.reserved += charge.reserve_usd
                period_keys[charge.scope] = charged_span.key
            else:
                sc.inflight[request_id] = (expires_at, ZERO)
            states[charge.scope] = self._state(sc, limits, charge.budget, charged_span, now)
        return Ticket(request_id, charges, states, period_keys, now)

    async def settle(self, ticket: Ticket, tokens: int, cost_usd: Decimal) -> None:
        now = self._clock()
        sec = int(now)
        for charge in ticket.charges:
            sc = self._scopes.get(charge.scope)
            if sc is None:
                continue
            entry = sc.inflight.pop(ticket.request_id, None)
            if entry is not None:  # else it expired and was pruned, reservation and all
                sc.reserved -= entry[1]
            if charge.limits.tpm is not None:
                delta = tokens - charge.tokens
                if delta > 0:  # used more than estimated: the extra counts from now
                    sc.tokens.add(sec, delta)
                elif delta < 0:  # used less: give it back to the second it was charged in
                    sc.tokens.take_back(int(ticket.admitted_at), sec, -delta)
            period = ticket.period_keys.get(charge.scope)
            if period is not None and cost_usd:
                spend = sc.spend.get(period)
                if spend is not None:  # a period already rolled over is done with (the ledger keeps the row)
                    sc.spend[period] = spend + cost_usd

    async def state(self, scope: str, limits: Limits, budget: Budget | None) -> ScopeState:
        while True:
            now = self._clock()
            sc = self._scopes.get(scope)
            if sc is None:
                sc = self._scopes[scope] = _ScopeCounters()
            span = None if budget is None else self._calendar.span(budget, now)
            if span is not None and span.key not in sc.spend:
                await self._load_spend(scope, span)
                continue
            sc.prune(now)
            sec = int(now)
            sc.requests.used(sec)
            sc.tokens.used(sec)
            return self._state(sc, limits, budget, span, now)

    async def record_spend(self, scope: str, budget: Budget, cost_usd: Decimal, at: float) -> None:
        sc = self._scopes.get(scope)
        if sc is None or not cost_usd:
            return
        period = self._calendar.span(budget, at).key
        spend = sc.spend.get(period)
        if spend is not None:
            sc.spend[period] = spend + cost_usd

    async def close(self) -> None:
        for task in list(self._loading.values()):
            task.cancel()

    @staticmethod
    def _state(sc: _ScopeCounters, limits: Limits, budget: Budget | None, span: PeriodSpan | None,
               now: float) -> ScopeState:
        spend = None if span is None else sc.spend.get(span.key, ZERO)
        return ScopeState(
            requests=None if limits.rpm is None else request_state(sc.requests, now, limits.rpm),
            tokens=None if limits.tpm is None else token_state(sc.tokens, now, limits.tpm),
            concurrency=len(sc.inflight),
            spend_usd=spend,
            reserved_usd=None if span is None else sc.reserved,
            budget=budget,
        )

    async def _load_spend(self, scope: str, span: PeriodSpan) -> None:
        """Initialise the (scope, period) spend counter from the SpendSource once; concurrent callers share the
        call, and a cancelled caller does not cancel it for the others."""
        key = (scope, span.key)
        task = self._loading.get(key)
        if task is None:
            task = self._loading[key] = asyncio.ensure_future(self._fetch_spend(scope, span))
            task.add_done_callback(lambda done: self._loaded(key, done))
        await asyncio.shield(task)

    async def _fetch_spend(self, scope: str, span: PeriodSpan) -> None:
        committed = await self._spend_source.committed_spend(scope, span.start)
        sc = self._scopes.get(scope)
        if sc is None:
            sc = self._scopes[scope] = _ScopeCounters()
        if span.key not in sc.spend:
            sc.spend = {span.key: committed}  # earlier periods are over: only the current one is kept

    def _loaded(self, key: tuple[str, str], task: asyncio.Future[None]) -> None:
        self._loading.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here so a failure nobody awaits any more is not logged as lost
