"""The Redis backend: one shared set of counters for any number of gateway processes and hosts.

Every admission is one Lua script over all of its scopes' keys (all or nothing), every settlement one more: one
round trip each, by EVALSHA (redis-py loads the script on the first NOSCRIPT, e.g. after a Redis restart). The first
request of a budget period takes two more (the script reports the missing counter; the ledger is read; the script
runs again with the value). The time is the caller's clock, passed in as an argument (so tests can move it; hosts
sharing a Redis should keep their clocks in sync, as a skew of d seconds shifts their windows by d); key TTLs are
relative, so they follow Redis's own clock.

Key layout, under `prefix` (default `yr:`), for a scope such as `key:key_ab12`:

    {prefix}rpm:{scope}                 HASH  unix second -> requests admitted in it; `t` their sum, `o` the oldest
                                              second kept, `n` the newest (expires 120 s after a newer second)
    {prefix}tpm:{scope}                 HASH  the same for tokens (estimates, then their corrections)
    {prefix}inflight:{scope}            ZSET  request id, scored by its expiry (unix ms): the concurrency count
    {prefix}reserved:{scope}            HASH  request id -> reserved nano-USD; field "" holds their sum
    {prefix}spend:{period}:{scope}      STRING committed nano-USD for a budget period ("2025-06-01", "2025-06",
                                               "lifetime"); day/month counters expire a week after the period ends
    {prefix}spendlock:{period}:{scope}  STRING held (PX) by the one instance loading that counter from the ledger

Expired in-flight entries (a crashed instance's requests) are pruned, slot and reservation, by the next script that
touches the scope. A missing spend counter is initialised once from the `SpendSource`: the script that finds it
missing takes the lock for one caller, which reads the ledger and hands the value to its retried admission (set only
if still absent); every other caller, on this instance or another, waits for the counter to appear.

Redis Cluster: a request's scopes must live in one slot for the script to be atomic across them, so give the prefix a
hash tag (`prefix="yr:{limits}:"`); that pins all limit keys to one shard, the price of all-or-nothing."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from yourouter.limits.model import (
    Budget,
    Charge,
    Kind,
    LimitBackendUnavailable,
    LimitExceeded,
    Limits,
    ScopeState,
    SpendSource,
    Ticket,
    WindowState,
)
from yourouter.limits.periods import (
    PeriodCalendar,
    PeriodSpan,
    budget_wait,
    from_nanos,
    limit_nanos,
    reserve_nanos,
    to_nanos,
)
from yourouter.limits.scripts import ADD_SPEND, ADMIT, SETTLE
from yourouter.limits.windows import Failure, pick_failure

SPEND_GRACE_S = 7 * 86400  # a finished period's counter stays this long (late settlements, reports)


class RedisLimitBackend:
    def __init__(self, client: Redis, spend: SpendSource, *, prefix: str = "yr:",
                 clock: Callable[[], float] = time.time, inflight_ttl_s: float = 900.0,
                 init_lock_s: float = 5.0, init_wait_s: float = 10.0) -> None:
        self._redis = client
        self._spend_source = spend
        self._prefix = prefix
        self._clock = clock
        self._ttl_ms = int(inflight_ttl_s * 1000)
        self._lock_ms = int(init_lock_s * 1000)
        self._init_wait_s = init_wait_s
        self._calendar = PeriodCalendar()
        self._admit = client.register_script(ADMIT)
        self._settle = client.register_script(SETTLE)
        self._add_spend = client.register_script(ADD_SPEND)
        self._loading: dict[str, asyncio.Future[int]] = {}  # spend key -> this instance's ledger read in progress

    @classmethod
    def connect(cls, url: str, spend: SpendSource, *, prefix: str = "yr:", max_connections: int = 64,
                timeout_s: float = 2.0, **options: Any) -> RedisLimitBackend:
        """A backend on `url` (redis://, rediss://, unix://). Connects lazily: an unreachable Redis shows as
        `LimitBackendUnavailable` from the calls, never here. `options` go to the constructor."""
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout_s, socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s, decode_responses=True)
        return cls(Redis.from_pool(pool), spend, prefix=prefix, **options)

    async def admit(self, request_id: str, charges: Sequence[Charge]) -> Ticket:
        charges = tuple(charges)
        if not request_id:
            raise ValueError("a request id is required")
        if len({c.scope for c in charges}) != len(charges):
            raise ValueError("each scope may be charged once per request")
        reply, spans, now = await self._run_admit(request_id, charges, dry=False)
        tag = reply[0]
        if tag == "duplicate":
            raise ValueError(f"request {request_id!r} is already in flight")
        if tag == "limited":
            failures: list[Failure] = []
            for index, kind, wait_ms in reply[1]:
                charge, span = charges[index - 1], spans[index - 1]
                seconds = wait_ms / 1000 if wait_ms >= 0 else None
                if kind == "budget" and charge.budget is not None and span is not None:
                    seconds = (None if charge.reserve_usd > charge.budget.limit_usd
                               else budget_wait(charge.budget, span, now))
                failures.append((charge.scope, cast(Kind, kind), seconds))
            raise LimitExceeded(*pick_failure(failures), self._states(charges, reply[2]))
        period_keys = {c.scope: span.key for c, span in zip(charges, spans, strict=True) if span is not None}
        return Ticket(request_id, charges, self._states(charges, reply[1]), period_keys, now)

    async def settle(self, ticket: Ticket, tokens: int, cost_usd: Decimal) -> None:
        now = self._clock()
        cost = to_nanos(cost_usd)
        keys: list[str] = []
        args: list[str | int] = [repr(now), ticket.request_id, int(ticket.admitted_at), tokens, len(ticket.charges)]
        for charge in ticket.charges:
            period = ticket.period_keys.get(charge.scope, "lifetime")
            keys += [self._key("tpm", charge.scope), self._key("inflight", charge.scope),
                     self._key("reserved", charge.scope), self._key(f"spend:{period}", charge.scope)]
            args += [1 if charge.limits.tpm is not None else 0, charge.tokens,
                     cost if charge.scope in ticket.period_keys else -1]
        await self._call(self._settle(keys=keys, args=args))

    async def record_spend(self, scope: str, budget: Budget, cost_usd: Decimal, at: float) -> None:
        if not cost_usd:
            return
        period = self._calendar.span(budget, at).key
        await self._call(self._add_spend(keys=[self._key(f"spend:{period}", scope)], args=[to_nanos(cost_usd)]))

    async def state(self, scope: str, limits: Limits, budget: Budget | None) -> ScopeState:
        charge = Charge(scope, limits, budget=budget)
        reply, _, _ = await self._run_admit("", (charge,), dry=True)
        return self._states((charge,), reply[1])[scope]

    async def close(self) -> None:
        for task in list(self._loading.values()):
            task.cancel()
        await self._redis.aclose()

    async def _run_admit(self, request_id: str, charges: tuple[Charge, ...],
                         dry: bool) -> tuple[list[Any], list[PeriodSpan | None], float]:
        """Run the admission script until no budget counter is missing (normally once)."""
        initial: dict[str, int] = {}  # spend key -> nano-USD from the ledger, for the script to set if absent
        deadline = None
        while True:
            now = self._clock()
            spans = [None if c.budget is None else self._calendar.span(c.budget, now) for c in charges]
            keys: list[str] = []
            args: list[str | int] = [repr(now), request_id, int(now * 1000) + self._ttl_ms, self._lock_ms,
                                     1 if dry else 0, len(charges)]
            for charge, span in zip(charges, spans, strict=True):
                limits, budget = charge.limits, charge.budget
                spend_key = self._key(f"spend:{span.key if span else 'lifetime'}", charge.scope)
                keys += [self._key("rpm", charge.scope), self._key("tpm", charge.scope),
                         self._key("inflight", charge.scope), self._key("reserved", charge.scope), spend_key,
                         self._key(f"spendlock:{span.key if span else 'lifetime'}", charge.scope)]
                lifetime = 0 if span is None or budget is None or budget.period is None else max(
                    1, int(span.end_ts + SPEND_GRACE_S - now))
                args += [_or_none(limits.rpm), _or_none(limits.tpm), _or_none(limits.max_concurrency),
                         charge.tokens, -1 if budget is None else limit_nanos(budget.limit_usd),
                         reserve_nanos(charge.reserve_usd), lifetime, initial.get(spend_key, "")]
            reply = cast(list[Any], await self._call(self._admit(keys=keys, args=args)))
            if reply[0] != "init":
                return reply, spans, now
            deadline = deadline if deadline is not None else time.monotonic() + self._init_wait_s
            waiting = False
            for index, locked in reply[1]:
                charge, span = charges[index - 1], spans[index - 1]
                assert span is not None
                spend_key = keys[(index - 1) * 6 + 4]
                task = self._loading.get(spend_key)
                if task is None and locked:  # this caller holds the lock: read the ledger, for all local callers
                    task = self._loading[spend_key] = asyncio.ensure_future(
                        self._read_ledger(charge.scope, span, keys[(index - 1) * 6 + 5]))
                    task.add_done_callback(functools.partial(self._loaded, spend_key))
                if task is not None:
                    initial[spend_key] = await asyncio.shield(task)  # a cancelled caller leaves the read running
                else:
                    waiting = True  # another instance holds the lock: wait for its counter to appear
            if waiting:
                if time.monotonic() > deadline:
                    raise LimitBackendUnavailable("budget spend counters were not initialised in time")
                await asyncio.sleep(0.02)

    async def _read_ledger(self, scope: str, span: PeriodSpan, lock_key: str) -> int:
        try:
            return to_nanos(await self._spend_source.committed_spend(scope, span.start))
        except Exception:
            try:
                await self._redis.delete(lock_key)  # let the next caller try at once
            except RedisError:
                pass  # the lock expires by itself
            raise

    def _loaded(self, spend_key: str, task: asyncio.Future[int]) -> None:
        self._loading.pop(spend_key, None)
        if not task.cancelled():
            task.exception()  # retrieved here so a failure nobody awaits any more is not logged as lost

    def _states(self, charges: tuple[Charge, ...], rows: list[list[int]]) -> dict[str, ScopeState]:
        states: dict[str, ScopeState] = {}
        for charge, row in zip(charges, rows, strict=True):
            rpm, tpm, budget = charge.limits.rpm, charge.limits.tpm, charge.budget
            states[charge.scope] = ScopeState(
                requests=None if rpm is None else WindowState(rpm, max(0, rpm - row[0]), row[1] / 1000),
                tokens=None if tpm is None else WindowState(tpm, max(0, tpm - row[2]), row[3] / 1000),
                concurrency=row[4],
                spend_usd=None if budget is None else from_nanos(row[5]),
                reserved_usd=None if budget is None else from_nanos(row[6]),
                budget=budget,
            )
        return states

    def _key(self, kind: str, scope: str) -> str:
        return f"{self._prefix}{kind}:{scope}"

    @staticmethod
    async def _call(awaitable: Any) -> Any:
        try:
            return await awaitable
        except RedisError as exc:
            raise LimitBackendUnavailable(f"Redis: {type(exc).__name__}: {exc}") from exc


def _or_none(value: int | None) -> int:
    return -1 if value is None else value
