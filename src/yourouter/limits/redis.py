"""The Redis backend: one shared set of counters for any number of gateway processes and hosts.

Every admission is one Lua script over all of its scopes' keys (all or nothing); the settlements made in one
event-loop iteration are one more, all together (`settle_soon`). Each is one round trip, by EVALSHA through the lean
pipelined client of `resp.py` (not redis-py: see there why), which loads the script again on NOSCRIPT, e.g. after a
Redis restart. Key names are encoded once per scope. The first request of a budget period takes two more (the
script reports the missing counter; the ledger is read; the script runs again with the value). The time is the
caller's clock, passed in as an argument (so tests can move it; hosts sharing a Redis should keep their clocks in
sync, as a skew of d seconds shifts their windows by d); key TTLs are relative, so they follow Redis's own clock.

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
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

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
from yourouter.limits.resp import Bulk, RespClient, RespError, bulk, bulk_int, bulk_str, command
from yourouter.limits.scripts import ADD_SPEND, ADMIT, SETTLE
from yourouter.limits.windows import Failure, pick_failure

SPEND_GRACE_S = 7 * 86400  # a finished period's counter stays this long (late settlements, reports)
_CACHE_MAX = 10_000  # scopes whose encoded key names are kept; all dropped at once beyond (bounded memory)
_EMPTY, _ZERO, _ONE, _NONE = bulk(""), bulk(0), bulk(1), bulk(-1)
_DEL = bulk("DEL")
_BATCH_MAX = 256  # settlements per SETTLE call at most (a fuller batch is sent at once)


@dataclass(slots=True)
class _Batch:
    """Settlements made in one event-loop iteration: one SETTLE call's keys and arguments (the first, the time,
    is set when it is sent) and the future they share."""

    future: asyncio.Future[Any]
    keys: list[bytes] = field(default_factory=list)  # each settlement's, joined
    key_count: int = 0
    args: list[bytes] = field(default_factory=lambda: [_ZERO])  # encoded
    count: int = 0


@dataclass(slots=True)
class _PeriodKeys:
    """A scope's keys for one budget period ("lifetime" without a budget or period), encoded and joined once: the
    spend counter and its init lock, an admission's six keys and a settlement's four; and the first five arguments
    of an admission for the limits and budget last charged here (they rarely change), joined too."""

    spend: Bulk
    lock: Bulk
    admit_keys: bytes
    settle_keys: bytes
    charged: tuple[Limits, Budget | None] | None = None
    encoded_head: bytes = b""

    def head(self, limits: Limits, budget: Budget | None, span: PeriodSpan | None) -> bytes:
        """rpm, tpm, max concurrency, budget limit (each -1: none) and when the spend counter expires (0: never)."""
        charged = self.charged
        if charged is None or (charged[0] is not limits or charged[1] is not budget) and charged != (limits, budget):
            expires = 0 if span is None or math.isinf(span.end_ts) else int(span.end_ts) + SPEND_GRACE_S
            self.encoded_head = b"".join((
                _int_or_none(limits.rpm), _int_or_none(limits.tpm), _int_or_none(limits.max_concurrency),
                _NONE if budget is None else bulk_int(limit_nanos(budget.limit_usd)), bulk_int(expires)))
            self.charged = (limits, budget)
        return self.encoded_head


@dataclass(slots=True)
class _ScopeKeys:
    """One scope's key names, encoded once."""

    prefix: str
    scope: str
    keys: bytes  # rpm, tpm, in-flight, reserved
    settle_keys: bytes  # tpm, in-flight, reserved
    periods: dict[str, _PeriodKeys] = field(default_factory=dict)

    @classmethod
    def of(cls, prefix: str, scope: str) -> _ScopeKeys:
        tpm, inflight = bulk_str(f"{prefix}tpm:{scope}"), bulk_str(f"{prefix}inflight:{scope}")
        reserved = bulk_str(f"{prefix}reserved:{scope}")
        return cls(prefix, scope, bulk_str(f"{prefix}rpm:{scope}") + tpm + inflight + reserved,
                   tpm + inflight + reserved)

    def period(self, name: str) -> _PeriodKeys:
        keys = self.periods.get(name)
        if keys is None:
            if len(self.periods) >= 8:  # yesterday's and last month's names
                self.periods.clear()
            spend = bulk_str(f"{self.prefix}spend:{name}:{self.scope}")
            lock = bulk_str(f"{self.prefix}spendlock:{name}:{self.scope}")
            keys = self.periods[name] = _PeriodKeys(spend, lock, self.keys + spend + lock, self.settle_keys + spend)
        return keys


class RedisLimitBackend:
    def __init__(self, client: RespClient, spend: SpendSource, *, prefix: str = "yr:",
                 clock: Callable[[], float] = time.time, inflight_ttl_s: float = 900.0,
                 init_lock_s: float = 5.0, init_wait_s: float = 10.0) -> None:
        self._client = client
        self._spend_source = spend
        self._prefix = prefix
        self._clock = clock
        self._ttl_ms = int(inflight_ttl_s * 1000)
        self._lock_ms = bulk(int(init_lock_s * 1000))
        self._init_wait_s = init_wait_s
        self._calendar = PeriodCalendar()
        self._admit = client.script(ADMIT)
        self._settle = client.script(SETTLE)
        self._add_spend = client.script(ADD_SPEND)
        self._scopes: dict[str, _ScopeKeys] = {}
        self._loading: dict[Bulk, asyncio.Future[int]] = {}  # spend key -> this instance's ledger read in progress
        self._batch: _Batch | None = None  # settlements not sent yet

    @classmethod
    def connect(cls, url: str, spend: SpendSource, *, prefix: str = "yr:", max_connections: int = 64,
                timeout_s: float = 2.0, **options: Any) -> RedisLimitBackend:
        """A backend on `url` (redis://, rediss://, unix://). Connects lazily: an unreachable Redis shows as
        `LimitBackendUnavailable` from the calls, never here. `timeout_s` bounds connecting and every call.
        `max_connections` is accepted for compatibility and unused: calls are pipelined over one connection.
        `options` go to the constructor."""
        return cls(RespClient.from_url(url, timeout_s=timeout_s), spend, prefix=prefix, **options)

    async def admit(self, request_id: str, charges: Sequence[Charge]) -> Ticket:
        charges = tuple(charges)
        if not request_id:
            raise ValueError("a request id is required")
        if len(charges) > 1 and len({c.scope for c in charges}) != len(charges):
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
        try:
            await asyncio.shield(self.settle_soon(ticket, tokens, cost_usd))  # shared: a cancelled caller leaves it
        except RespError as exc:
            raise _unavailable(exc) from exc

    def settle_soon(self, ticket: Ticket, tokens: int, cost_usd: Decimal) -> asyncio.Future[Any]:
        """`settle` for a caller that does not wait for it (the pipeline, once the answer is sent), with no
        coroutine or Task per request: the settlement joins this event-loop iteration's batch, sent as one SETTLE
        call at the end of the iteration, or before the next admission if that comes first (so a settlement is
        never written after a later admission). The future returned, shared by the batch, gets the outcome (a
        `RespError` on failure)."""
        batch = self._batch
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._batch = _Batch(loop.create_future())
            loop.call_soon(self._flush_settlements)
        charges = ticket.charges
        cost = b"%d" % to_nanos(cost_usd) if cost_usd else b"0"
        numbers = b"%d %d %d" % (int(ticket.admitted_at), tokens, len(charges))
        for charge in charges:
            name = ticket.period_keys.get(charge.scope)
            batch.keys.append(self._scope(charge.scope).period(name or "lifetime").settle_keys)
            numbers += b" %d %d %b" % (charge.limits.tpm is not None, charge.tokens, b"-1" if name is None else cost)
        batch.args += (bulk_str(ticket.request_id), b"$%d\r\n%b\r\n" % (len(numbers), numbers))
        batch.key_count += 4 * len(charges)
        batch.count += 1
        if batch.count >= _BATCH_MAX:
            self._flush_settlements()
        return batch.future

    def _flush_settlements(self) -> None:
        batch, self._batch = self._batch, None
        if batch is not None:
            batch.args[0] = bulk_int(math.floor(self._clock()))  # the script only takes the second
            self._settle.start(self._settle.joined_payload(batch.key_count, b"".join(batch.keys), len(batch.args),
                                                           b"".join(batch.args)), batch.future)

    async def record_spend(self, scope: str, budget: Budget, cost_usd: Decimal, at: float) -> None:
        if not cost_usd:
            return
        period = self._calendar.span(budget, at).key
        try:
            await self._add_spend([self._scope(scope).period(period).spend], [bulk_int(to_nanos(cost_usd))])
        except RespError as exc:
            raise _unavailable(exc) from exc

    async def state(self, scope: str, limits: Limits, budget: Budget | None) -> ScopeState:
        charge = Charge(scope, limits, budget=budget)
        reply, _, _ = await self._run_admit("", (charge,), dry=True)
        return self._states((charge,), reply[1])[scope]

    async def close(self) -> None:
        for task in list(self._loading.values()):
            task.cancel()
        batch = self._batch
        if batch is not None:  # settlements of this very iteration: sent and answered (or failed) before closing
            self._flush_settlements()
            await asyncio.wait([batch.future])  # bounded: every call has the client's timeout
        await self._client.close()

    async def _run_admit(self, request_id: str, charges: tuple[Charge, ...],
                         dry: bool) -> tuple[list[Any], list[PeriodSpan | None], float]:
        """Run the admission script until no budget counter is missing (normally once)."""
        initial: dict[Bulk, int] = {}  # spend key -> nano-USD from the ledger, for the script to set if absent
        deadline = None
        count = len(charges)
        while True:
            now = self._clock()
            spans = [None if c.budget is None else self._calendar.span(c.budget, now) for c in charges]
            periods = [self._scope(c.scope).period("lifetime" if span is None else span.key)
                       for c, span in zip(charges, spans, strict=True)]
            times = b"%r %d" % (now, int(now * 1000) + self._ttl_ms)  # two numbers to an argument: see ADMIT
            args = [b"$%d\r\n%b\r\n" % (len(times), times), bulk_str(request_id), self._lock_ms,
                    _ONE if dry else _ZERO, bulk_int(count)]
            for charge, span, period in zip(charges, spans, periods, strict=True):
                loaded = initial.get(period.spend) if initial else None
                ask = b"%d %d" % (charge.tokens, reserve_nanos(charge.reserve_usd) if charge.reserve_usd else 0)
                args += (period.head(charge.limits, charge.budget, span), b"$%d\r\n%b\r\n" % (len(ask), ask),
                         _EMPTY if loaded is None else bulk_int(loaded))
            if self._batch is not None:
                self._flush_settlements()  # settlements before admissions: the slots they free count at once
            payload = self._admit.joined_payload(
                6 * count, periods[0].admit_keys if count == 1 else b"".join(p.admit_keys for p in periods),
                5 + 7 * count, b"".join(args))
            try:
                reply = cast(list[Any], await self._admit.run(payload))
            except RespError as exc:
                raise _unavailable(exc) from exc
            if reply[0] != "init":
                return reply, spans, now
            deadline = deadline if deadline is not None else time.monotonic() + self._init_wait_s
            waiting = False
            for index, locked in reply[1]:
                charge, span, period = charges[index - 1], spans[index - 1], periods[index - 1]
                assert span is not None
                task = self._loading.get(period.spend)
                if task is None and locked:  # this caller holds the lock: read the ledger, for all local callers
                    task = self._loading[period.spend] = asyncio.ensure_future(
                        self._read_ledger(charge.scope, span, period.lock))
                    task.add_done_callback(functools.partial(self._loaded, period.spend))
                if task is not None:
                    initial[period.spend] = await asyncio.shield(task)  # a cancelled caller leaves the read running
                else:
                    waiting = True  # another instance holds the lock: wait for its counter to appear
            if waiting:
                if time.monotonic() > deadline:
                    raise LimitBackendUnavailable("budget spend counters were not initialised in time")
                await asyncio.sleep(0.02)

    async def _read_ledger(self, scope: str, span: PeriodSpan, lock_key: Bulk) -> int:
        try:
            return to_nanos(await self._spend_source.committed_spend(scope, span.start))
        except Exception:
            try:
                await self._client.execute_encoded(command(_DEL, lock_key))  # let the next caller try at once
            except RespError:
                pass  # the lock expires by itself
            raise

    def _loaded(self, spend_key: Bulk, task: asyncio.Future[int]) -> None:
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

    def _scope(self, scope: str) -> _ScopeKeys:
        keys = self._scopes.get(scope)
        if keys is None:
            if len(self._scopes) >= _CACHE_MAX:
                self._scopes.clear()
            keys = self._scopes[scope] = _ScopeKeys.of(self._prefix, scope)
        return keys


def _int_or_none(value: int | None) -> Bulk:
    return _NONE if value is None else bulk_int(value)


def _unavailable(exc: RespError) -> LimitBackendUnavailable:
    return LimitBackendUnavailable(f"Redis: {type(exc).__name__}: {exc}")
