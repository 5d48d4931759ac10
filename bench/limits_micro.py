#!/usr/bin/env python3
"""The limit engine alone: what one admit + settle costs, in process and through Redis, without HTTP.

    .venv/bin/python bench/limits_micro.py --config CONFIG.yaml --key limited [--redis redis://127.0.0.1:6379/0]
                                           [--iterations 5000] [--json out.json]

Run by `bench/limits.py` (with the venv it measures, pinned with taskset to the gateway's CPU) on the same config
the gateways get, so the figures read against the end-to-end ones. For each backend, sequentially (one call in
flight, on uvloop), after a warm-up:

  engine          backend.admit(one Charge) then backend.settle(ticket, tokens, cost): the engine's own cost
  admission       Admission.admit(request id, key, body, max_output, routes) + Admission.settle + rate_headers:
                  what the pipeline calls for a limited key (token estimate, Decimal reservation from the price
                  book, the Charge, the engine, the x-ratelimit-* headers)
  free            Admission.admit for a key without limits (returns None: the free key's whole cost)
  ping (Redis)    one PING through the backend's own client: the floor of a round trip (client + loopback)
  server (Redis)  Redis's own time executing EVALSHA per call (INFO commandstats before/after; shared Redis:
                  other clients' scripts during the loop would count too)

and, for Redis, the same admission cycle with --concurrency loops at once: throughput and this process's CPU per
cycle (the gateway CPU a cycle costs when requests overlap, as at c=10/50).

For Redis the same measurements are repeated (unless --no-alternatives) with the backend as it was before its
own client (`resp.RespClient`) replaced redis-py, to size what the client costs:

  redis-py        `RedisLimitBackend` of --baseline-ref (default c399b26, the last on redis-py: a
                  `BlockingConnectionPool` with `socket_timeout`), its source read with `git show` and loaded as a
                  module beside the installed package (skipped with a note when git or the ref is unavailable)

Each call is timed with perf_counter_ns around its await; figures are median / p90 / p99 in microseconds, and CPU
per cycle (time.process_time over the loop / cycles). --rounds passes over the clients, in an order rotating by one
every pass; every figure is the median over the passes. Redis keys live under a prefix unique to the run
(`yr-bench-micro-<pid>-<time>:`) and are deleted at the end. Prints (and with --json writes) a JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import types
from decimal import Decimal
from pathlib import Path
from typing import Any

from yourouter.auth.keys import KeyStore
from yourouter.config import load_settings
from yourouter.limits import Charge, MemoryLimitBackend
from yourouter.pipeline.admission import Admission, key_scope, rate_headers
from yourouter.pricing import PriceBook
from yourouter.providers.base import CHAT
from yourouter.providers.registry import build_provider
from yourouter.routing.catalog import Catalog

BODY = b'{"model":"m","messages":[{"role":"user","content":"limits-bench 0000000"}]}'
TOKENS, COST = 32, Decimal("0.00023")  # the mock's usage (12 + 20 tokens) at the config's price


def load_baseline(ref: str) -> type | None:
    """`RedisLimitBackend` as of `ref` with its Lua scripts as of `ref` (the scripts' arguments changed since:
    both read with `git show` and loaded as modules of their own), or None."""
    sources = {}
    for name in ("scripts", "redis"):
        path = f"src/yourouter/limits/{name}.py"
        done = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "show", f"{ref}:{path}"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(f"no redis-py baseline ({ref}:{path}): {done.stderr.strip()}", file=sys.stderr)
            return None
        sources[name] = done.stdout
    scripts = types.ModuleType("yourouter.limits._redis_py_baseline_scripts")
    sys.modules[scripts.__name__] = scripts
    exec(compile(sources["scripts"], f"{ref}:src/yourouter/limits/scripts.py", "exec"), scripts.__dict__)
    source = sources["redis"].replace("from yourouter.limits.scripts import", f"from {scripts.__name__} import")
    module = types.ModuleType("yourouter.limits._redis_py_baseline")
    sys.modules[module.__name__] = module
    exec(compile(source, f"{ref}:src/yourouter/limits/redis.py", "exec"), module.__dict__)
    return module.RedisLimitBackend  # type: ignore[no-any-return]


def ping_of(backend):  # type: ignore[no-untyped-def]
    """One PING through the backend's own client (None for the in-process backend)."""
    if hasattr(backend, "_client"):  # resp.RespClient
        return lambda: backend._client.execute("PING")
    if hasattr(backend, "_redis"):  # redis-py
        return backend._redis.ping
    return None


class ZeroSpend:
    async def committed_spend(self, scope, since):  # type: ignore[no-untyped-def]
        return Decimal(0)


def summary(ns: list[int]) -> dict[str, float]:
    xs = sorted(ns)
    n = len(xs)

    def q(p: float) -> float:
        return xs[min(n - 1, int(p * n))] / 1000

    return {"n": n, "p50_us": q(0.5), "p90_us": q(0.9), "p99_us": q(0.99), "mean_us": statistics.fmean(xs) / 1000}


async def cycle_engine(backend, charge: Charge, rid: str, t: dict[str, list[int]]) -> None:  # type: ignore[no-untyped-def]
    a = time.perf_counter_ns()
    ticket = await backend.admit(rid, (charge,))
    b = time.perf_counter_ns()
    await backend.settle(ticket, TOKENS, COST)
    c = time.perf_counter_ns()
    t["admit"].append(b - a)
    t["settle"].append(c - b)
    t["cycle"].append(c - a)


async def cycle_admission(admission: Admission, key, routes, rid: str, t: dict[str, list[int]]) -> None:  # type: ignore[no-untyped-def]
    a = time.perf_counter_ns()
    ticket = await admission.admit(rid, key, BODY, None, routes)
    assert ticket is not None
    rate_headers(ticket.states.get(key_scope(key)))
    b = time.perf_counter_ns()
    await admission.settle(ticket, TOKENS, COST)
    c = time.perf_counter_ns()
    t["admit"].append(b - a)
    t["settle"].append(c - b)
    t["cycle"].append(c - a)


def new_timings() -> dict[str, list[int]]:
    return {"admit": [], "settle": [], "cycle": []}


async def measure(name: str, backend, admission: Admission, key, free_key, routes,  # type: ignore[no-untyped-def]
                  iterations: int, warmup: int, concurrency: int, ping=None,  # type: ignore[no-untyped-def]
                  server_stats=None) -> dict[str, object]:  # type: ignore[no-untyped-def]
    out: dict[str, object] = {}
    limits, budget = admission.limits_of(key)
    reserve = admission._reservation(routes, len(BODY) // 4 + 1, 4096)  # what Admission.admit reserves
    charge = Charge(key_scope(key), limits, tokens=len(BODY) // 4 + 1 + 4096, budget=budget, reserve_usd=reserve)
    seq = 0

    def rid() -> str:
        nonlocal seq
        seq += 1
        return f"{name}-{seq}"

    for label, run in (("engine", lambda t: cycle_engine(backend, charge, rid(), t)),
                       ("admission", lambda t: cycle_admission(admission, key, routes, rid(), t))):
        scratch = new_timings()
        for _ in range(warmup):
            await run(scratch)
        t = new_timings()
        server0 = server_stats() if server_stats else None
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        for _ in range(iterations):
            await run(t)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        out[label] = {k: summary(v) for k, v in t.items()} | {
            "cpu_us_per_cycle": cpu / iterations * 1e6, "wall_us_per_cycle": wall / iterations * 1e6}
        if server0 is not None:
            calls, usec = (b - a for a, b in zip(server0, server_stats(), strict=True))
            # Redis's own time executing EVALSHA (INFO commandstats; other clients' scripts count too if any run)
            out[label]["server_evalsha_calls_per_cycle"] = calls / iterations
            out[label]["server_us_per_evalsha"] = usec / calls if calls else float("nan")

    if server_stats is not None:  # Redis's time for the admission script alone, then the settlement script alone
        n = min(iterations, 1000)
        s0 = server_stats()
        tickets = [await backend.admit(rid(), (charge,)) for _ in range(n)]
        s1 = server_stats()
        for ticket in tickets:
            await backend.settle(ticket, TOKENS, COST)
        s2 = server_stats()
        engine = out["engine"]
        assert isinstance(engine, dict)
        engine["server_us_admit"] = (s1[1] - s0[1]) / max(1, s1[0] - s0[0])
        engine["server_us_settle"] = (s2[1] - s1[1]) / max(1, s2[0] - s1[0])

    t = {"admit": []}
    for _ in range(warmup):
        await admission.admit(rid(), free_key, BODY, None, routes)
    for _ in range(iterations):
        a = time.perf_counter_ns()
        await admission.admit(rid(), free_key, BODY, None, routes)
        t["admit"].append(time.perf_counter_ns() - a)
    out["free"] = {"admit": summary(t["admit"])}

    if ping is not None:
        pings: list[int] = []
        for _ in range(warmup):
            await ping()
        for _ in range(iterations):
            a = time.perf_counter_ns()
            await ping()
            pings.append(time.perf_counter_ns() - a)
        out["ping"] = summary(pings)

    if concurrency > 1:
        per_loop = max(1, iterations // concurrency)
        t = new_timings()

        async def loop() -> None:
            for _ in range(per_loop):
                await cycle_admission(admission, key, routes, rid(), t)

        await asyncio.gather(*(loop() for _ in range(concurrency)))  # warm-up of the pool's connections
        t = new_timings()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        cycles = per_loop * concurrency
        out[f"admission_c{concurrency}"] = {k: summary(v) for k, v in t.items()} | {
            "cycles_per_s": cycles / wall, "cpu_us_per_cycle": cpu / cycles * 1e6}
    return out


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    settings = load_settings(args.config)
    providers = [build_provider(c) for c in settings.providers]
    catalog = Catalog(providers)
    prices = PriceBook.from_config(settings.prices)
    static = KeyStore(settings.keys, None, 0).static_keys
    keys = {k.name: k for k in (static() if callable(static) else static)}
    key, free_key = keys[args.key], keys[args.free_key]
    routes = catalog.candidates(args.model, None, CHAT)
    limits = settings.limits
    results: dict[str, object] = {"iterations": args.iterations, "concurrency": args.concurrency,
                                  "python": sys.version.split()[0], "pid": os.getpid(),
                                  "affinity": sorted(os.sched_getaffinity(0))}

    def admission_for(backend) -> Admission:  # type: ignore[no-untyped-def]
        return Admission(backend, prices, reserve_ceiling_usd=limits.reserve_ceiling_usd,
                         default_max_output_tokens=limits.default_max_output_tokens, fail_open=False)

    clients: list[tuple[str, Any]] = [("memory", lambda: MemoryLimitBackend(ZeroSpend()))]
    prefix = f"yr-bench-micro-{os.getpid()}-{int(time.time())}:"
    if args.redis:
        from redis.asyncio import Redis

        from yourouter.limits.redis import RedisLimitBackend

        results["redis_prefix"] = prefix
        clients.append(("redis", lambda: RedisLimitBackend.connect(args.redis, ZeroSpend(), prefix=prefix)))
        baseline = None if args.no_alternatives else load_baseline(args.baseline_ref)
        if baseline is not None:
            results["baseline_ref"] = args.baseline_ref
            clients.append(("redis-py", lambda: baseline.connect(args.redis, ZeroSpend(), prefix=prefix)))
    server_stats = None
    if args.redis:
        import redis as redis_sync

        stats_client = redis_sync.Redis.from_url(args.redis, socket_timeout=5)

        def server_stats() -> tuple[int, int]:
            info = stats_client.info("commandstats").get("cmdstat_evalsha", {})
            return int(info.get("calls", 0)), int(info.get("usec", 0))

    per_round: dict[str, list[dict]] = {name: [] for name, _ in clients}
    try:
        for rnd in range(args.rounds):
            shift = rnd % len(clients)
            for name, make in clients[shift:] + clients[:shift]:  # a different order every round
                backend = make()
                if asyncio.iscoroutine(backend):
                    backend = await backend
                try:
                    per_round[name].append(await measure(
                        f"{name}-{rnd}", backend, admission_for(backend), key, free_key, routes,
                        args.iterations * (4 if name == "memory" else 1), args.warmup,
                        1 if name == "memory" else args.concurrency, ping=ping_of(backend),
                        server_stats=server_stats if name != "memory" else None))
                finally:
                    await backend.close()
        for name, rounds in per_round.items():
            results[name] = median_of(rounds)
        results["rounds"] = args.rounds
    finally:
        if args.redis:
            cleanup = Redis.from_url(args.redis)
            try:
                names = [k async for k in cleanup.scan_iter(match=prefix + "*", count=1000)]
                if names:
                    await cleanup.delete(*names)
                results["redis_keys_deleted"] = len(names)
            finally:
                await cleanup.aclose()
    return results


def median_of(rounds: list[dict]) -> dict:
    """The rounds' results merged: every number the median over the rounds (nested dicts alike)."""
    out: dict = {}
    for k, v in rounds[0].items():
        if isinstance(v, dict):
            out[k] = median_of([r[k] for r in rounds])
        elif isinstance(v, (int, float)):
            out[k] = statistics.median(r[k] for r in rounds)
        else:
            out[k] = v
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="a gateway config with the keys below and model --model")
    p.add_argument("--key", default="limited", help="name of the limited static key (limited)")
    p.add_argument("--free-key", default="free", help="name of the key without limits (free)")
    p.add_argument("--model", default="m")
    p.add_argument("--redis", help="redis:// URL (omit: in-process backend only)")
    p.add_argument("--iterations", type=int, default=2000, help="cycles per measurement and round (memory: 4×) "
                   "(2000)")
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=10, help="concurrent admission loops for Redis (10)")
    p.add_argument("--no-alternatives", action="store_true", help="only the product's Redis backend")
    p.add_argument("--baseline-ref", default="c399b26", help="git revision whose RedisLimitBackend (on redis-py) "
                   "is measured beside the product's (c399b26)")
    p.add_argument("--rounds", type=int, default=3, help="rounds over the clients, in a rotating order; figures are "
                   "medians over rounds (3)")
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results = asyncio.run(main_async(args))
    text = json.dumps(results, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
