"""The limit engine, on both backends: sliding RPM/TPM windows, concurrency, budgets with reservations and periods,
all-or-nothing admission, and exact limits under concurrency (for Redis also across instances and processes)."""

from __future__ import annotations

import asyncio
import multiprocessing
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support.services import redis_url, unavailable
from yourouter.limits import (
    Budget,
    Charge,
    LimitBackend,
    LimitBackendUnavailable,
    LimitExceeded,
    Limits,
    MemoryLimitBackend,
    Ticket,
    build_backend,
)
from yourouter.limits.redis import RedisLimitBackend
from yourouter.limits.windows import pick_failure

T0 = 1_717_200_000.0  # 2024-06-01T00:00:00Z


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Ledger:
    """A SpendSource that counts its calls (and can be slow, to widen races)."""

    spend: Decimal = Decimal(0)
    delay_s: float = 0.0
    calls: list[tuple[str, datetime | None]] = field(default_factory=list)

    async def committed_spend(self, scope: str, since: datetime | None) -> Decimal:
        self.calls.append((scope, since))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return self.spend


@dataclass
class Backends:
    """Makes backends of one kind; with `shared`, every backend it makes sees the same counters (Redis: one
    prefix, separate connection pools, like separate gateway instances)."""

    kind: str
    url: str | None = None
    prefix: str = ""

    @property
    def shared(self) -> bool:
        return self.kind == "redis"

    def make(self, ledger: Ledger | None = None, clock: Callable[[], float] | None = None,
             **options: Any) -> LimitBackend:
        spend = ledger or Ledger()
        if self.url is None:
            return MemoryLimitBackend(spend, clock=clock or Clock(), **options)
        return RedisLimitBackend.connect(self.url, spend, prefix=self.prefix, clock=clock or Clock(), **options)


@contextmanager
def redis_backends() -> Iterator[Backends]:
    """Backends on the real Redis under a prefix of their own, deleted afterwards."""
    import redis

    url = redis_url()
    prefix = f"yrtest:{secrets.token_hex(4)}:"
    yield Backends("redis", url, prefix)
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture(params=["memory", "redis"])
def backends(request: pytest.FixtureRequest) -> Iterator[Backends]:
    if request.param == "memory":
        yield Backends("memory")
        return
    with redis_backends() as made:
        yield made


@pytest.fixture
def shared() -> Iterator[Backends]:
    """Redis only: what holds across gateway instances."""
    with redis_backends() as made:
        yield made


def run(backend: LimitBackend, body: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        try:
            await body()
        finally:
            await backend.close()

    asyncio.run(main())


async def refused(backend: LimitBackend, request_id: str, *charges: Charge) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as caught:
        await backend.admit(request_id, charges)
    return caught.value


def test_rpm_is_a_sliding_minute(backends: Backends) -> None:
    clock = Clock(T0 + 0.5)
    backend = backends.make(clock=clock)
    charge = Charge("key:a", Limits(rpm=3))

    async def body() -> None:
        for offset in (0.5, 10.5, 20.5):
            clock.now = T0 + offset
            ticket = await backend.admit(f"r{offset}", [charge])
            await backend.settle(ticket, 0, Decimal(0))  # settling gives no request back
        window = ticket.states["key:a"].requests
        assert window is not None and (window.limit, window.remaining) == (3, 0)
        assert window.reset_s == pytest.approx(39.5)  # the first request leaves at T0+60
        clock.now = T0 + 30.5
        error = await refused(backend, "late", charge)
        assert (error.scope, error.kind, error.retry_after_s) == ("key:a", "requests", pytest.approx(29.5))
        refused_window = error.states["key:a"].requests
        assert refused_window is not None and refused_window.remaining == 0
        assert refused_window.reset_s == pytest.approx(29.5)
        clock.now = T0 + 59.99
        assert (await refused(backend, "late", charge)).retry_after_s == pytest.approx(0.01, abs=1e-3)
        clock.now = T0 + 60.0
        admitted = (await backend.admit("late", [charge])).states["key:a"].requests
        assert admitted is not None and admitted.remaining == 0 and admitted.reset_s == pytest.approx(10.0)
        clock.now = T0 + 200
        fresh = (await backend.state("key:a", charge.limits, None)).requests
        assert fresh is not None and (fresh.remaining, fresh.reset_s) == (3, 0.0)

    run(backend, body)


def test_tpm_window_retry_after_and_oversized_requests(backends: Backends) -> None:
    clock = Clock(T0)
    backend = backends.make(clock=clock)
    limits = Limits(tpm=100)

    async def body() -> None:
        first = await backend.admit("a", [Charge("key:t", limits, tokens=60)])
        tokens = first.states["key:t"].tokens
        assert tokens is not None and (tokens.limit, tokens.remaining, tokens.reset_s) == (100, 40, 60.0)
        assert first.states["key:t"].requests is None  # no rpm limit: no requests window
        clock.now = T0 + 5
        await backend.admit("b", [Charge("key:t", limits, tokens=30)])
        error = await refused(backend, "c", Charge("key:t", limits, tokens=50))
        assert (error.kind, error.retry_after_s) == ("tokens", pytest.approx(55.0))  # once the 60 leave
        state = error.states["key:t"].tokens
        assert state is not None and (state.remaining, state.reset_s) == (10, pytest.approx(55.0))
        too_big = await refused(backend, "d", Charge("key:t", limits, tokens=101))
        assert too_big.kind == "tokens" and too_big.retry_after_s is None  # never fits
        clock.now = T0 + 60
        await backend.admit("c", [Charge("key:t", limits, tokens=50)])

    run(backend, body)


def test_tpm_reconciles_down_into_the_admission_second_and_up_from_now(backends: Backends) -> None:
    clock = Clock(T0)
    backend = backends.make(clock=clock)
    limits = Limits(tpm=100)
    scope = "key:r"

    async def used() -> int:
        tokens = (await backend.state(scope, limits, None)).tokens
        assert tokens is not None
        return tokens.limit - tokens.remaining

    async def body() -> None:
        estimate = await backend.admit("a", [Charge(scope, limits, tokens=80)])
        clock.now = T0 + 1
        await backend.settle(estimate, 20, Decimal(0))  # 60 given back to second T0
        assert await used() == 20
        clock.now = T0 + 2
        second = await backend.admit("b", [Charge(scope, limits, tokens=80)])
        clock.now = T0 + 10
        await backend.settle(second, 90, Decimal(0))  # 10 more, counted from T0+10
        assert await used() == 100  # 110 really; the headers show no less than 0 remaining
        clock.now = T0 + 30
        error = await refused(backend, "c", Charge(scope, limits, tokens=0))  # over the limit: even 0 waits
        assert error.kind == "tokens" and error.retry_after_s == pytest.approx(30.0)  # T0's 20 leave at T0+60
        clock.now = T0 + 60
        assert await used() == 90  # the 80 of T0+2 and the 10 of T0+10
        late = await backend.admit("c", [Charge(scope, limits, tokens=5)])
        clock.now = T0 + 130  # the admission second has left the window: nothing to give back, nothing negative
        await backend.settle(late, 0, Decimal(0))
        assert await used() == 0

    run(backend, body)


def test_concurrency_slots_are_freed_by_settle(backends: Backends) -> None:
    backend = backends.make()
    charge = Charge("key:c", Limits(max_concurrency=2))

    async def body() -> None:
        first = await backend.admit("a", [charge])
        second = await backend.admit("b", [charge])
        assert second.states["key:c"].concurrency == 2
        error = await refused(backend, "c", charge)
        assert (error.kind, error.retry_after_s, error.states["key:c"].concurrency) == ("concurrency", None, 2)
        await backend.settle(first, 0, Decimal(0))
        await backend.settle(first, 0, Decimal(0))  # a second settle frees nothing more
        assert (await backend.admit("c", [charge])).states["key:c"].concurrency == 2
        await backend.settle(second, 0, Decimal(0))
        assert (await backend.state("key:c", charge.limits, None)).concurrency == 1
        with pytest.raises(ValueError):
            await backend.admit("c", [charge])  # still in flight

    run(backend, body)


def test_budget_reservations_are_replaced_by_real_cost(backends: Backends) -> None:
    ledger = Ledger(Decimal("0.4"))
    backend = backends.make(ledger)
    budget = Budget(Decimal(1))

    def charge(reserve: str) -> Charge:
        return Charge("key:b", Limits(), budget=budget, reserve_usd=Decimal(reserve))

    async def body() -> None:
        first = await backend.admit("a", [charge("0.3")])
        state = first.states["key:b"]
        assert (state.spend_usd, state.reserved_usd, state.remaining_usd) == (Decimal("0.4"), Decimal("0.3"),
                                                                              Decimal("0.3"))
        assert first.period_keys == {"key:b": "lifetime"}
        second = await backend.admit("b", [charge("0.3")])  # 0.4 + 0.6 = 1.0: exactly the limit
        error = await refused(backend, "c", charge("0"))  # nothing left: even a free request is refused
        assert (error.kind, error.retry_after_s) == ("budget", None)  # a lifetime budget never resets
        await backend.settle(first, 100, Decimal("0.1"))  # spend 0.5, reserved 0.3
        assert (await refused(backend, "c", charge("0.21"))).kind == "budget"
        third = await backend.admit("c", [charge("0.2")])
        assert third.states["key:b"].remaining_usd == Decimal(0)
        await backend.settle(second, 0, Decimal(0))  # an error costs nothing; its reservation is released
        await backend.settle(third, 50, Decimal("0.25"))  # the real cost may exceed the reservation
        state = await backend.state("key:b", Limits(), budget)
        assert (state.spend_usd, state.reserved_usd, state.concurrency) == (Decimal("0.75"), Decimal(0), 0)
        assert (await refused(backend, "d", charge("2"))).retry_after_s is None  # more than the whole budget
        assert ledger.calls == [("key:b", None)]

    run(backend, body)


def test_nothing_is_charged_when_any_scope_refuses(backends: Backends) -> None:
    backend = backends.make()
    budget = Budget(Decimal(10))
    key = Charge("key:k", Limits(rpm=10, tpm=1000, max_concurrency=10), tokens=100, budget=budget,
                 reserve_usd=Decimal(1))
    deployment = Charge("deployment:d", Limits(max_concurrency=1))

    async def body() -> None:
        await backend.admit("a", [key, deployment])
        error = await refused(backend, "b", key, deployment)
        assert (error.scope, error.kind) == ("deployment:d", "concurrency")
        assert set(error.states) == {"key:k", "deployment:d"}
        state = await backend.state("key:k", key.limits, budget)
        assert state.requests is not None and state.requests.remaining == 9
        assert state.tokens is not None and state.tokens.remaining == 900
        assert (state.concurrency, state.reserved_usd) == (1, Decimal(1))

    run(backend, body)


def test_refusal_reports_budget_first_and_the_longest_wait() -> None:
    assert pick_failure([("k", "requests", 5.0), ("d", "tokens", 30.0)]) == ("d", "tokens", 30.0)
    assert pick_failure([("k", "requests", 5.0), ("k", "budget", 3600.0)]) == ("k", "budget", 3600.0)
    assert pick_failure([("k", "requests", 5.0), ("d", "concurrency", None)]) == ("d", "concurrency", None)


def test_daily_budget_resets_at_the_utc_day_boundary(backends: Backends) -> None:
    ledger = Ledger()
    clock = Clock(datetime(2024, 3, 31, 23, 59, 30, tzinfo=UTC).timestamp())
    backend = backends.make(ledger, clock)
    charge = Charge("key:d", Limits(), budget=Budget(Decimal(1), "day"), reserve_usd=Decimal("0.6"))

    async def body() -> None:
        ticket = await backend.admit("a", [charge])
        assert ticket.period_keys == {"key:d": "2024-03-31"}
        await backend.settle(ticket, 10, Decimal("0.6"))
        error = await refused(backend, "b", charge)
        assert (error.kind, error.retry_after_s) == ("budget", pytest.approx(30.0))  # until midnight UTC
        late = await backend.admit("late", [Charge("key:d", Limits(), budget=charge.budget)])
        clock.now = datetime(2024, 4, 1, 0, 0, 5, tzinfo=UTC).timestamp()
        fresh = await backend.admit("b", [charge])
        assert fresh.period_keys == {"key:d": "2024-04-01"}
        assert fresh.states["key:d"].spend_usd == Decimal(0)
        await backend.settle(late, 10, Decimal("0.3"))  # goes to the day it was admitted in, not today
        state = await backend.state("key:d", Limits(), charge.budget)
        assert (state.spend_usd, state.reserved_usd) == (Decimal(0), Decimal("0.6"))
        assert ledger.calls == [("key:d", datetime(2024, 3, 31, tzinfo=UTC)),
                                ("key:d", datetime(2024, 4, 1, tzinfo=UTC))]

    run(backend, body)


def test_monthly_budget_resets_at_the_utc_month_boundary(backends: Backends) -> None:
    ledger = Ledger(Decimal("4.5"))
    clock = Clock(datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())
    backend = backends.make(ledger, clock)
    charge = Charge("key:m", Limits(), budget=Budget(Decimal(5), "month"), reserve_usd=Decimal(1))

    async def body() -> None:
        error = await refused(backend, "a", charge)
        assert error.retry_after_s == pytest.approx(1.0)
        clock.now = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
        ledger.spend = Decimal(0)
        assert (await backend.admit("a", [charge])).period_keys == {"key:m": "2025-01"}
        assert [since for _, since in ledger.calls] == [datetime(2024, 12, 1, tzinfo=UTC),
                                                        datetime(2025, 1, 1, tzinfo=UTC)]

    run(backend, body)


def test_the_ledger_is_read_once_per_scope_and_period(backends: Backends) -> None:
    ledger = Ledger(Decimal("0.5"), delay_s=0.05)
    instances = [backends.make(ledger) for _ in range(2 if backends.shared else 1)]
    charge = Charge("key:once", Limits(), budget=Budget(Decimal(1), "month"), reserve_usd=Decimal("0.01"))

    async def body() -> None:
        try:
            tickets = await asyncio.gather(*(instances[i % len(instances)].admit(f"r{i}", [charge])
                                             for i in range(40)))
            assert len(ledger.calls) == 1
            ledger.spend = Decimal(100)  # an existing counter is never re-read, nor added to
            await instances[0].settle(tickets[0], 1, Decimal("0.02"))
            state = await instances[-1].state("key:once", Limits(), charge.budget)
            assert state.spend_usd == Decimal("0.52") and len(ledger.calls) == 1
        finally:
            for instance in instances:
                await instance.close()

    asyncio.run(body())


def test_a_failing_ledger_read_is_retried_by_the_next_request(backends: Backends) -> None:
    class Flaky(Ledger):
        async def committed_spend(self, scope: str, since: datetime | None) -> Decimal:
            await super().committed_spend(scope, since)
            if len(self.calls) == 1:
                raise ConnectionError("database down")
            return Decimal(0)

    ledger = Flaky()
    backend = backends.make(ledger)
    charge = Charge("key:f", Limits(), budget=Budget(Decimal(1)))

    async def body() -> None:
        with pytest.raises(ConnectionError):
            await backend.admit("a", [charge])
        await backend.admit("a", [charge])
        assert len(ledger.calls) == 2

    run(backend, body)


async def admitted_count(instances: list[LimitBackend], charges: list[Charge], attempts: int, tag: str = "") -> int:
    async def one(i: int) -> Ticket | None:
        try:
            return await instances[i % len(instances)].admit(f"r{tag}{i}", charges)
        except LimitExceeded:
            return None

    tickets = await asyncio.gather(*(one(i) for i in range(attempts)))
    return sum(ticket is not None for ticket in tickets)


@pytest.mark.parametrize("charge, limit", [
    (Charge("key:x", Limits(rpm=37)), 37),
    (Charge("key:x", Limits(max_concurrency=5)), 5),
    (Charge("key:x", Limits(tpm=1000), tokens=30), 33),
    (Charge("key:x", Limits(), budget=Budget(Decimal(1)), reserve_usd=Decimal("0.07")), 14),
])
def test_concurrent_admissions_admit_exactly_the_limit(backends: Backends, charge: Charge, limit: int) -> None:
    clock = Clock()
    instances = [backends.make(clock=clock) for _ in range(2 if backends.shared else 1)]

    async def body() -> None:
        try:
            assert await admitted_count(instances, [charge], 200) == limit
        finally:
            for instance in instances:
                await instance.close()

    asyncio.run(body())


def _admit_in_process(url: str, prefix: str, attempts: int, tag: str) -> int:
    async def main() -> int:
        backend = RedisLimitBackend.connect(url, Ledger(), prefix=prefix)
        try:
            charges = [Charge("key:proc", Limits(rpm=37)), Charge("deployment:proc", Limits(max_concurrency=150))]
            return await admitted_count([backend], charges, attempts, tag)
        finally:
            await backend.close()

    return asyncio.run(main())


def test_two_processes_share_one_limit(shared: Backends) -> None:
    assert shared.url is not None
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_admit_in_process, [shared.url] * 2, [shared.prefix] * 2, [100, 100], ["a", "b"]))
    assert sum(results) == 37, results


def test_expired_in_flight_entries_free_their_slot_and_reservation(backends: Backends) -> None:
    clock = Clock()
    ledger = Ledger()
    backend = backends.make(ledger, clock, inflight_ttl_s=5)
    budget = Budget(Decimal(1))
    charge = Charge("key:e", Limits(max_concurrency=1), budget=budget, reserve_usd=Decimal("0.8"))

    async def body() -> None:
        lost = await backend.admit("crashed", [charge])  # never settled: its instance died
        clock.now += 4.9
        assert (await refused(backend, "b", charge)).kind in ("concurrency", "budget")
        clock.now += 0.2
        state = await backend.state("key:e", charge.limits, budget)
        assert (state.concurrency, state.reserved_usd) == (0, Decimal(0))
        ticket = await backend.admit("b", [charge])
        await backend.settle(lost, 10, Decimal("0.01"))  # late: frees nothing of b's, still costs
        state = await backend.state("key:e", charge.limits, budget)
        assert (state.concurrency, state.reserved_usd, state.spend_usd) == (1, Decimal("0.8"), Decimal("0.01"))
        await backend.settle(ticket, 10, Decimal("0.01"))

    run(backend, body)


def test_scopes_must_be_distinct(backends: Backends) -> None:
    backend = backends.make()
    charge = Charge("key:dup", Limits(rpm=1))

    async def body() -> None:
        with pytest.raises(ValueError):
            await backend.admit("a", [charge, charge])

    run(backend, body)


def test_unreachable_redis_is_reported_as_unavailable() -> None:
    backend = RedisLimitBackend.connect("redis://127.0.0.1:1/0", Ledger(), timeout_s=0.5)

    async def body() -> None:
        with pytest.raises(LimitBackendUnavailable):
            await backend.admit("a", [Charge("key:u", Limits(rpm=1))])

    run(backend, body)


def test_build_backend_picks_by_url() -> None:
    assert isinstance(build_backend(None, Ledger()), MemoryLimitBackend)
    redis_backend = build_backend("redis://127.0.0.1:6379/0", Ledger(), prefix="yr:")
    assert isinstance(redis_backend, RedisLimitBackend)
    asyncio.run(redis_backend.close())
    with pytest.raises(ValueError):
        build_backend("memcached://x", Ledger())


def test_redis_key_layout_and_script_reload(shared: Backends) -> None:
    import redis.asyncio

    ledger = Ledger(Decimal(2))
    backend = shared.make(ledger)
    charge = Charge("key:lay", Limits(rpm=5, tpm=500, max_concurrency=3), tokens=40, budget=Budget(Decimal(5), "day"),
                    reserve_usd=Decimal("0.25"))

    async def body() -> None:
        client = redis.asyncio.Redis.from_url(shared.url or "", decode_responses=True)
        try:
            await client.script_flush()  # as after a Redis restart: the scripts are loaded again on NOSCRIPT
            ticket = await backend.admit("r1", [charge])
            p = shared.prefix
            keys = sorted(await client.keys(p + "*"))
            assert keys == sorted([f"{p}rpm:key:lay", f"{p}tpm:key:lay", f"{p}inflight:key:lay",
                                   f"{p}reserved:key:lay", f"{p}spend:2024-06-01:key:lay"])
            assert await client.get(f"{p}spend:2024-06-01:key:lay") == "2000000000"  # nano-USD
            assert await client.hgetall(f"{p}reserved:key:lay") == {"r1": "250000000", "": "250000000"}
            second = str(int(T0))  # buckets by second, with their sum and the oldest and newest second
            assert await client.hgetall(f"{p}tpm:key:lay") == {second: "40", "t": "40", "o": second, "n": second}
            assert 0 < await client.ttl(f"{p}spend:2024-06-01:key:lay") <= 8 * 86400 + 1
            await backend.settle(ticket, 40, Decimal("0.1"))
            assert await client.get(f"{p}spend:2024-06-01:key:lay") == "2100000000"
            assert await client.hgetall(f"{p}reserved:key:lay") == {"": "0"}
            assert await client.zcard(f"{p}inflight:key:lay") == 0
        finally:
            await client.aclose()

    run(backend, body)


def test_a_lost_redis_counter_is_read_again_from_the_ledger(shared: Backends) -> None:
    import redis.asyncio

    ledger = Ledger(Decimal(1))
    backend = shared.make(ledger)
    charge = Charge("key:lost", Limits(), budget=Budget(Decimal(5)), reserve_usd=Decimal("0.5"))

    async def body() -> None:
        client = redis.asyncio.Redis.from_url(shared.url or "")
        try:
            ticket = await backend.admit("r1", [charge])
            await client.delete(f"{shared.prefix}spend:lifetime:key:lost")  # Redis restarted without persistence
            await backend.settle(ticket, 10, Decimal("0.5"))  # not written into a counter that no longer exists
            assert await client.exists(f"{shared.prefix}spend:lifetime:key:lost") == 0
            ledger.spend = Decimal("1.5")  # the ledger has the row by now
            state = await backend.state("key:lost", Limits(), charge.budget)
            assert state.spend_usd == Decimal("1.5") and len(ledger.calls) == 2
        finally:
            await client.aclose()

    run(backend, body)


def _same_state(memory: dict[str, Any], redis_side: dict[str, Any]) -> bool:
    if memory.keys() != redis_side.keys():
        return False
    for scope, mine in memory.items():
        theirs = redis_side[scope]
        for window in ("requests", "tokens"):
            a, b = getattr(mine, window), getattr(theirs, window)
            if (a is None) != (b is None) or a is not None and (
                    (a.limit, a.remaining) != (b.limit, b.remaining) or abs(a.reset_s - b.reset_s) > 1e-3):
                return False
        if (mine.concurrency, mine.spend_usd, mine.reserved_usd) != (
                theirs.concurrency, theirs.spend_usd, theirs.reserved_usd):
            return False
    return True


Outcome = Ticket | LimitExceeded


async def lockstep(rng: Any, clock: Clock, pair: tuple[LimitBackend, LimitBackend], steps: int,
                   ask: Callable[[], tuple[list[Charge], list[Charge]]],
                   check: Callable[[int, Outcome, Outcome], None]) -> dict[str, int]:
    """Random traffic on two backends in lockstep: at each step the clock moves, then either a random open pair of
    tickets is settled on both (random tokens and cost), or both admit what `ask()` gives each and `check` judges
    the two outcomes. Returns how many admissions were admitted and refused on the first backend."""
    open_tickets: list[tuple[Ticket, Ticket]] = []
    seen = {"admitted": 0, "refused": 0}
    try:
        for step in range(steps):
            clock.now += rng.choice([0.0, 0.2, 0.7, 1.0, 3.3, 9.0])
            if open_tickets and rng.random() < 0.45:
                first, second = open_tickets.pop(rng.randrange(len(open_tickets)))
                tokens, cost = rng.randrange(0, 400), Decimal(rng.randrange(0, 150_000)) / 1_000_000
                await pair[0].settle(first, tokens, cost)
                await pair[1].settle(second, tokens, cost)
                continue
            outcomes: list[Outcome] = []
            for backend, asked in zip(pair, ask(), strict=True):
                try:
                    outcomes.append(await backend.admit(f"s{step}", asked))
                except LimitExceeded as refusal:
                    outcomes.append(refusal)
            one, two = outcomes
            check(step, one, two)
            if isinstance(one, Ticket) and isinstance(two, Ticket):
                open_tickets.append((one, two))
            seen["admitted" if isinstance(one, Ticket) else "refused"] += 1
    finally:
        for backend in pair:
            await backend.close()
    return seen


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_memory_and_redis_agree_on_random_traffic(shared: Backends, seed: int) -> None:
    """The same traffic, decision by decision and header by header, on both backends (the Lua scripts and the
    Python code implement one set of rules)."""
    import random

    rng = random.Random(seed)
    clock = Clock(datetime(2024, 6, 30, 23, 59, 0, tzinfo=UTC).timestamp())
    memory = MemoryLimitBackend(Ledger(Decimal("0.5")), clock=clock, inflight_ttl_s=40)
    redis_backend = shared.make(Ledger(Decimal("0.5")), clock, inflight_ttl_s=40)
    key_budget = Budget(Decimal(5), "day")
    deployment_budget = Budget(Decimal(8))

    def ask() -> tuple[list[Charge], list[Charge]]:
        key = Charge("key:k", Limits(rpm=12, tpm=2500, max_concurrency=6), tokens=rng.randrange(0, 300),
                     budget=key_budget, reserve_usd=Decimal(rng.randrange(0, 200_000)) / 1_000_000)
        deployment = Charge("deployment:d", Limits(rpm=20, tpm=3000, max_concurrency=4), tokens=key.tokens,
                            budget=deployment_budget, reserve_usd=key.reserve_usd)
        asked = rng.choice([[key], [deployment], [key, deployment]])
        return asked, asked

    def check(step: int, mine: Outcome, theirs: Outcome) -> None:
        if isinstance(mine, Ticket):
            assert isinstance(theirs, Ticket), (step, theirs)
            assert _same_state(mine.states, theirs.states), step
            assert mine.period_keys == theirs.period_keys
            return
        assert isinstance(theirs, LimitExceeded), (step, mine)
        assert (mine.scope, mine.kind) == (theirs.scope, theirs.kind)
        if mine.retry_after_s is None or theirs.retry_after_s is None:
            assert mine.retry_after_s == theirs.retry_after_s
        else:
            assert theirs.retry_after_s == pytest.approx(mine.retry_after_s, abs=1e-3)
        assert _same_state(mine.states, theirs.states), step

    asyncio.run(lockstep(rng, clock, (memory, redis_backend), 250, ask, check))


@pytest.mark.parametrize("seed", [4, 5])
def test_the_one_scope_fast_path_decides_as_the_general_one(seed: int) -> None:
    """In process, a request charging one scope takes a path of its own (no per-scope lists); the same traffic
    with an unlimited second scope added takes the general one. Decisions, waits and states must be the same."""
    import random

    rng = random.Random(seed)
    clock = Clock(datetime(2024, 6, 30, 23, 59, 0, tzinfo=UTC).timestamp())
    fast = MemoryLimitBackend(Ledger(Decimal("0.5")), clock=clock, inflight_ttl_s=40)
    general = MemoryLimitBackend(Ledger(Decimal("0.5")), clock=clock, inflight_ttl_s=40)
    pad = Charge("pad", Limits())

    def ask() -> tuple[list[Charge], list[Charge]]:
        budget = rng.choice([None, Budget(Decimal(5), "day"), Budget(Decimal(3))])
        charge = Charge("key:k", Limits(rpm=rng.choice([None, 12]), tpm=rng.choice([None, 2500]),
                                        max_concurrency=rng.choice([None, 6])),
                        tokens=rng.randrange(0, 300), budget=budget,
                        reserve_usd=Decimal(rng.randrange(0, 200_000)) / 1_000_000)
        return [charge], [charge, pad]

    def check(step: int, one: Outcome, two: Outcome) -> None:
        if isinstance(one, Ticket):
            assert isinstance(two, Ticket), (step, two)
            assert one.states["key:k"] == two.states["key:k"], step
            assert one.period_keys == two.period_keys
            return
        assert isinstance(two, LimitExceeded), (step, one)
        assert (one.scope, one.kind, one.retry_after_s) == (two.scope, two.kind, two.retry_after_s)
        assert one.states["key:k"] == two.states["key:k"], step

    seen = asyncio.run(lockstep(rng, clock, (fast, general), 300, ask, check))
    assert seen["admitted"] > 20 and seen["refused"] > 20, seen  # both paths' answers exercised


def test_a_redis_restart_is_survived(tmp_path: Path) -> None:
    """A Redis of its own, stopped and started again: calls fail as unavailable meanwhile, then work again (scripts
    reloaded, budget counters read again from the ledger, as the new server is empty)."""
    server = shutil.which("redis-server")
    if server is None:
        unavailable("redis-server is not installed")
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(tmp_path)]

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            with socket.socket() as attempt:
                if attempt.connect_ex(("127.0.0.1", port)) == 0:
                    return process
            time.sleep(0.05)
        process.kill()
        raise AssertionError("redis-server did not start")

    ledger = Ledger(Decimal("0.5"))
    charge = Charge("key:restart", Limits(rpm=100), budget=Budget(Decimal(1)), reserve_usd=Decimal("0.1"))
    process = start()
    backend = RedisLimitBackend.connect(f"redis://127.0.0.1:{port}/0", ledger, timeout_s=0.5)

    async def body() -> None:
        nonlocal process
        await backend.admit("a", [charge])
        process.terminate()
        process.wait(10)
        with pytest.raises(LimitBackendUnavailable):
            await backend.admit("b", [charge])
        process = start()
        ticket = await backend.admit("b", [charge])
        assert ticket.states["key:restart"].concurrency == 1 and len(ledger.calls) == 2

    try:
        run(backend, body)
    finally:
        process.terminate()
        process.wait(10)


def test_costs_outside_tickets_add_to_a_loaded_counter_only(backends: Backends) -> None:
    ledger = Ledger(Decimal("0.5"))
    clock = Clock()
    backend = backends.make(ledger, clock=clock)
    budget = Budget(Decimal(1), "day")

    async def body() -> None:
        now = clock()
        await backend.record_spend("key:v", budget, Decimal("0.2"), now)  # no counter yet: the ledger has it
        state = await backend.state("key:v", Limits(), budget)  # loads 0.5 from the ledger
        assert state.spend_usd == Decimal("0.5")
        await backend.record_spend("key:v", budget, Decimal("0.25"), now)  # a video task billed at its end
        assert (await backend.state("key:v", Limits(), budget)).spend_usd == Decimal("0.75")
        await backend.record_spend("key:v", budget, Decimal(0), now)
        assert (await backend.state("key:v", Limits(), budget)).spend_usd == Decimal("0.75")

    run(backend, body)


def test_settlements_of_one_loop_iteration_go_in_one_call_before_the_next_admission(shared: Backends) -> None:
    """`settle_soon` batches: what one event-loop iteration settles is one SETTLE call (256 at most), written
    before any later admission, so the slots and reservations it frees count for that admission."""
    backend = shared.make(Ledger())
    assert isinstance(backend, RedisLimitBackend)
    key_limits, team_limits = Limits(max_concurrency=300, tpm=100_000), Limits(max_concurrency=300)
    budget = Budget(Decimal(10), "day")
    calls: list[int] = []
    joined_payload = backend._settle.joined_payload

    def counting(key_count: int, keys: bytes, arg_count: int, args: bytes) -> bytes:
        calls.append(key_count)
        return joined_payload(key_count, keys, arg_count, args)

    backend._settle.joined_payload = counting  # type: ignore[method-assign]

    def charges(reserve: str) -> list[Charge]:
        return [Charge("key:s", key_limits, tokens=10, budget=budget, reserve_usd=Decimal(reserve)),
                Charge("team:s", team_limits)]

    async def body() -> None:
        tickets = [await backend.admit(f"r{i}", charges("0.01")) for i in range(300)]
        assert tickets[-1].states["key:s"].reserved_usd == Decimal("3")
        futures = [backend.settle_soon(t, 4 if i % 2 else 16, Decimal("0.001")) for i, t in enumerate(tickets)]
        assert calls == [256 * 8]  # a full batch is sent at once
        after = await backend.admit("next", charges("0"))  # the other 44 are written before this admission
        assert calls == [256 * 8, 44 * 8]
        state = after.states["key:s"]
        assert (state.concurrency, after.states["team:s"].concurrency) == (1, 1)
        assert (state.spend_usd, state.reserved_usd) == (Decimal("0.3"), Decimal(0))
        assert state.tokens is not None and state.tokens.remaining == 100_000 - 301 * 10  # estimates: 10 each
        assert len(set(futures)) == 2 and futures[0] is futures[255] and futures[256] is futures[-1]
        assert [await futures[0], await futures[-1]] == [256, 44]  # settlements per call
        # the corrections landed too: half used 4 tokens (6 back), half 16 (6 more), net zero
        tokens = (await backend.state("key:s", key_limits, budget)).tokens
        assert tokens is not None and tokens.remaining == 100_000 - 301 * 10
        last = backend.settle_soon(after, 0, Decimal(0))  # alone in its iteration: sent when the loop turns
        assert calls == [256 * 8, 44 * 8]
        assert await last == 1 and calls[-1] == 8
        await backend.settle(after, 0, Decimal(0))  # awaited: the same path, nothing more to free
        final = await backend.state("key:s", key_limits, budget)
        assert (final.concurrency, final.spend_usd, final.reserved_usd) == (0, Decimal("0.3"), Decimal(0))

    run(backend, body)


def test_settlements_not_sent_yet_are_sent_when_the_backend_closes(shared: Backends) -> None:
    first, second = shared.make(), shared.make()
    assert isinstance(first, RedisLimitBackend)
    charge = Charge("key:close", Limits(max_concurrency=5))

    async def body() -> None:
        ticket = await first.admit("a", [charge])
        settling = first.settle_soon(ticket, 0, Decimal(0))
        await first.close()  # in the same iteration: the batch had not gone out yet
        assert settling.done() and await settling == 1
        assert (await second.state("key:close", charge.limits, None)).concurrency == 0

    run(second, body)
