#!/usr/bin/env python3
"""What N gateway instances on one Redis and one PostgreSQL cost those two, per request (issue #8, docs/scaling.md).

    .venv/bin/python bench/scaling.py                          # 3 instances, 4,000 requests per phase (~35 s)
    .venv/bin/python bench/scaling.py --instances 1 --requests 2000
    .venv/bin/python bench/scaling.py --redis-url redis://127.0.0.1:6379/0    # the machine's Redis, not our own

Set-up. The shared mock upstream (`../shared/bench/mock_upstream.py`: a fixed chat.completion, usage 12 + 20
tokens, no delay), a redis-server of our own on a free port (no persistence; `--redis-url` uses another), a fresh
PostgreSQL database `yourouter_bench_<hex>` on the machine's server (dropped at the end unless `--keep-db`), and
`--instances` `yourouter serve --log-level warning` processes with one config: `redis_url` (limits, cooldowns,
search cache), `database_url` (keys, usage ledger), `log_requests: false`, the ledger's defaults (batches of up to
500 rows, flushed every 0.5 s), one deployment `mock` of model `m` with a price, and two static keys:

    limited   rpm 10,000,000, tpm 10,000,000,000 and a daily budget of 1,000,000 USD: never refused, but every
              request is admitted (one EVALSHA) and settled (one more) in Redis, with a budget reservation
    free      no limits: admission skips Redis altogether

The client (aiohttp, closed loop, `--concurrency` workers in all) sends request i to instance i mod N, as a
round-robin load balancer would. Nothing is pinned: the machine has 2 cores, so throughput here says little; what
is measured is what each request costs, which does not depend on how many cores there are.

Phases, in one gateway lifetime: `--warmup` requests of each key (connections, the Lua scripts, the budget's spend
counter), then `--requests` of `limited`, then `--requests` of `free`. Every response is checked (HTTP 200, a
chat.completion). Around each phase:

    Redis       INFO commandstats (calls and usec per command; our own INFO calls excluded), INFO stats
                (total_commands_processed, net input/output bytes), INFO cpu (used_cpu_user + used_cpu_sys of the
                server, and of its main thread). redis-py sends one command per round trip (the gateway uses no
                pipelines or MULTI), so commands = round trips.
    gateways    CPU time of every instance (its threads' run time, /proc/<pid>/task/*/schedstat; utime + stime
                from /proc/<pid>/stat kept too)
    PostgreSQL  CPU of the gateways' backends (pids from pg_stat_activity, /proc/<pid>/stat)

Over the whole lifetime (PostgreSQL's cumulative statistics reach pg_stat_database when a backend goes idle, or up
to 10 s later, but always when it exits, so they are read after the instances stopped): xact_commit,
xact_rollback and tup_inserted of the bench database, less those of a control lifetime (the same instances started
and stopped with no requests: migrations check, connection set-up). Ledger batches are counted exactly: the bench
adds a column `ledger_xid xid8 DEFAULT pg_current_xact_id()` to `usage` (the gateway names its columns when it
inserts, so it never sees it), and every row carries the transaction that wrote it; rows per transaction = batch
size. The ledger must be complete: one row per request sent, by key.

Writes bench/results/scaling-<stamp>/{data.json, configs, logs} and bench/SCALING.md (unless --no-md); prints a
summary. Only 127.0.0.1; every process it starts is ended on exit, error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from chaos import Proc, cpu_seconds, free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = Path(os.environ.get("SHARED_BENCH", ROOT.parent / "shared" / "bench"))
HZ = os.sysconf("SC_CLK_TCK")
NAN = float("nan")
LIMITS = {"rpm": 10_000_000, "tpm": 10_000_000_000}
BUDGET_USD = 1_000_000
PRICE = {"input": 2.5, "output": 10}  # USD per 1M tokens
POSTGRES_ADMIN_URL = os.environ.get("YOUROUTER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_fetched", "tup_returned", "blks_hit",
               "blks_read")


# ----------------------------------------------------------------------------------------------- processes

def stat_cpu(pid: int) -> float:
    """utime + stime of a process (all threads), seconds (clock ticks); NaN when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ
    except (OSError, IndexError, ValueError):
        return NAN


def upstream_python() -> str:
    bench_venv = Path("/tmp/bench-venv/bin/python")
    return str(bench_venv) if bench_venv.exists() else sys.executable


def wait_http(url: str, timeout: float, proc: Proc) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        if not proc.alive():
            raise RuntimeError(f"{proc.argv} exited:\n{proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not ready after {timeout} s:\n{proc.tail()}")
        time.sleep(0.05)


class RedisServer:
    def __init__(self, work: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (or pass --redis-url)")
        self.port = free_port()
        self.proc = Proc([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                          "no", "--dir", str(work)], work / "redis.log", None)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url, socket_timeout=1).ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline or not self.proc.alive():
                    raise RuntimeError(f"redis-server did not start:\n{self.proc.tail()}") from None
                time.sleep(0.05)


class Instances:
    """`count` gateway processes on one config, started together."""

    def __init__(self, config: Path, count: int, work: Path, label: str) -> None:
        self.ports = [free_port() for _ in range(count)]
        self.procs = [Proc([sys.executable, "-m", "yourouter", "serve", "--config", str(config), "--port", str(port),
                            "--log-level", "warning"], work / f"{label}-gw{i}.log", None)
                      for i, port in enumerate(self.ports)]
        try:
            for proc, port in zip(self.procs, self.ports, strict=True):
                wait_http(f"http://127.0.0.1:{port}/health", 60, proc)
        except BaseException:
            self.stop()
            raise
        self.urls = [f"http://127.0.0.1:{port}/v1/chat/completions" for port in self.ports]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> list[int | None]:
        """SIGTERM (graceful: the ledger drains), all at once; their exit codes."""
        for proc in self.procs:
            if proc.alive():
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                pass
        codes = [p.p.poll() for p in self.procs]
        for proc in self.procs:
            proc.stop()
        return codes


# ----------------------------------------------------------------------------------------------- PostgreSQL

async def pg_admin(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def database_url(name: str) -> str:
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


async def prepare_database(url: str) -> None:
    """The gateway's migrations, then the bench's column: the transaction that wrote each usage row."""
    import asyncpg

    from yourouter.storage.db import create_engine, migrate

    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute("ALTER TABLE usage ADD COLUMN ledger_xid xid8 DEFAULT pg_current_xact_id()")
    finally:
        await connection.close()


async def pg_counters(name: str) -> dict[str, int]:
    """The database's cumulative counters, read from the admin database (so reading them never counts)."""
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await connection.execute("SELECT pg_stat_clear_snapshot()")
        row = await connection.fetchrow(f"SELECT {', '.join(PG_COUNTERS)} FROM pg_stat_database WHERE datname = $1",
                                        name)
        return {k: int(row[k]) for k in PG_COUNTERS}
    finally:
        await connection.close()


async def pg_backends(name: str) -> list[int]:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        rows = await connection.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> "
                                      "pg_backend_pid()", name)
        return [int(r["pid"]) for r in rows]
    finally:
        await connection.close()


async def ledger_facts(url: str, windows: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """Rows by key, duplicates, batch sizes (rows per writing transaction), and per phase: the INSERT transactions
    that carried the rows of requests started in it, per instance (a request id starts with its process's prefix)."""
    import datetime as dt

    import asyncpg

    connection = await asyncpg.connect(url, timeout=5)
    try:
        by_key = {r["key_name"]: int(r["n"]) for r in await connection.fetch(
            "SELECT key_name, count(*) AS n FROM usage GROUP BY key_name")}
        statuses = {int(r["status"]): int(r["n"]) for r in await connection.fetch(
            "SELECT status, count(*) AS n FROM usage GROUP BY status")}
        duplicates = int(await connection.fetchval(
            "SELECT count(*) FROM (SELECT request_id FROM usage GROUP BY request_id HAVING count(*) > 1) d"))
        batches = [int(r["n"]) for r in await connection.fetch(
            "SELECT count(*) AS n FROM usage GROUP BY ledger_xid ORDER BY min(id)")]
        size = int(await connection.fetchval("SELECT pg_total_relation_size('usage')"))
        phases = {}
        for name, (start, end) in windows.items():
            rows = await connection.fetch(
                "SELECT left(request_id, 16) AS instance, count(DISTINCT ledger_xid) AS tx, count(*) AS n FROM usage"
                " WHERE created_at >= $1 AND created_at <= $2 GROUP BY 1 ORDER BY 1",
                dt.datetime.fromtimestamp(start, dt.UTC), dt.datetime.fromtimestamp(end, dt.UTC))
            phases[name] = {"seconds": end - start,
                            "instances": [{"tx": int(r["tx"]), "rows": int(r["n"])} for r in rows]}
        return {"rows_by_key": by_key, "statuses": statuses, "duplicate_request_ids": duplicates, "batches": batches,
                "usage_bytes": size, "phases": phases}
    finally:
        await connection.close()


def pg_cpu(pids: list[int]) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in pids}


# ----------------------------------------------------------------------------------------------- Redis

def redis_snapshot(client: Any) -> dict[str, Any]:
    info = client.info("all")
    commands = {name[len("cmdstat_"):]: {"calls": int(v["calls"]), "usec": int(v["usec"])}
                for name, v in info.items() if name.startswith("cmdstat_")}
    commands.pop("info", None)  # ours
    commands.pop("dbsize", None)
    return {"commands": commands, "total_commands_processed": int(info["total_commands_processed"]),
            "net_in": int(info["total_net_input_bytes"]), "net_out": int(info["total_net_output_bytes"]),
            "cpu": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            "cpu_main": float(info.get("used_cpu_user_main_thread", NAN))
            + float(info.get("used_cpu_sys_main_thread", NAN)),
            "connections_received": int(info["total_connections_received"]),
            "connected_clients": int(info["connected_clients"]), "keys": int(client.dbsize()),
            "used_memory": int(info["used_memory"]), "pid": int(info["process_id"])}


def redis_delta(before: dict[str, Any], after: dict[str, Any], own_info_calls: int) -> dict[str, Any]:
    commands = {}
    for name, v in after["commands"].items():
        b = before["commands"].get(name, {"calls": 0, "usec": 0})
        calls = v["calls"] - b["calls"]
        if calls:
            commands[name] = {"calls": calls, "usec": v["usec"] - b["usec"]}
    return {"commands": commands, "total": sum(c["calls"] for c in commands.values()),
            "total_commands_processed": after["total_commands_processed"] - before["total_commands_processed"]
            - own_info_calls,
            "net_in": after["net_in"] - before["net_in"], "net_out": after["net_out"] - before["net_out"],
            "cpu_s": after["cpu"] - before["cpu"], "cpu_main_s": after["cpu_main"] - before["cpu_main"],
            "connections": after["connections_received"] - before["connections_received"],
            "connected_clients": after["connected_clients"], "keys": after["keys"],
            "used_memory": after["used_memory"]}


# ----------------------------------------------------------------------------------------------- load

@dataclass
class Load:
    sent: int = 0
    errors: int = 0
    first_error: str = ""
    latencies_ns: list[int] = field(default_factory=list)


async def drive(session: aiohttp.ClientSession, urls: list[str], key: str, requests: int, concurrency: int,
                stream_share: float, start_index: int, timeout_s: float) -> Load:
    load = Load()
    numbers = iter(range(start_index, start_index + requests))
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    stream_every = round(1 / stream_share) if stream_share > 0 else 0
    hard_end = time.monotonic() + timeout_s

    async def worker() -> None:
        for n in numbers:
            if time.monotonic() > hard_end:
                return
            stream = bool(stream_every) and n % stream_every == 0
            body = (b'{"model":"m","stream":%s,"messages":[{"role":"user","content":"scaling %07d"}]}'
                    % (b"true" if stream else b"false", n))
            t0 = time.perf_counter_ns()
            try:
                async with session.post(urls[n % len(urls)], data=body, headers=headers) as response:
                    payload = await response.read()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                payload, status = f"{type(exc).__name__}: {exc}".encode(), -1
            load.latencies_ns.append(time.perf_counter_ns() - t0)
            load.sent += 1
            ok = status == 200 and (b"[DONE]" in payload if stream else b'"chat.completion"' in payload)
            if not ok:
                load.errors += 1
                load.first_error = load.first_error or f"HTTP {status}: {payload[:300]!r}"

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return load


@dataclass
class Phase:
    name: str
    requests: int
    wall_s: float
    started_at: float  # epoch seconds (the ledger's created_at is the request's start)
    ended_at: float
    load: Load
    gateway_cpu_s: float
    gateway_stat_cpu_s: float
    postgres_cpu_s: float
    redis: dict[str, Any]


async def measure(name: str, session: aiohttp.ClientSession, instances: Instances, key: str, args: argparse.Namespace,
                  rclient: Any, db_name: str, start_index: int) -> Phase:
    backends = await pg_backends(db_name)
    pg0 = pg_cpu(backends)
    r0 = redis_snapshot(rclient)
    cpu0 = [cpu_seconds(pid) for pid in instances.pids]
    stat0 = [stat_cpu(pid) for pid in instances.pids]
    t0, started_at = time.perf_counter(), time.time()
    load = await drive(session, instances.urls, key, args.requests, args.concurrency, args.stream_share,
                       start_index, args.phase_timeout)
    wall, ended_at = time.perf_counter() - t0, time.time()
    cpu = sum(cpu_seconds(pid) - c for pid, c in zip(instances.pids, cpu0, strict=True))
    stat = sum(stat_cpu(pid) - c for pid, c in zip(instances.pids, stat0, strict=True))
    await asyncio.sleep(args.settle_wait)  # the last settlements and the ledger's next flush (0.5 s)
    r1 = redis_snapshot(rclient)
    backends = sorted(set(backends) | set(await pg_backends(db_name)))
    pg1 = pg_cpu(backends)
    pg = sum(pg1[p] - pg0.get(p, 0.0) for p in backends if pg1[p] == pg1[p])
    return Phase(name, load.sent, wall, started_at, ended_at, load, cpu, stat, pg,
                 redis_delta(r0, r1, own_info_calls=2))


async def monitor_sample(session: aiohttp.ClientSession, instances: Instances, args: argparse.Namespace,
                         redis_url: str, tag: str, start_index: int) -> dict[str, dict[str, Any]]:
    """`--monitor-requests` more requests per key with MONITOR on (not measured for CPU: MONITOR costs Redis):
    which commands each request sends (round trips) and which its scripts run inside Redis (client `lua`)."""
    import threading

    import redis

    marker = f"scaling-bench-{tag}"
    events: list[tuple[str, str]] = []
    ready = threading.Event()

    def listen() -> None:
        client: Any = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            with client.monitor() as monitor:
                ready.set()
                for command in monitor.listen():
                    text = str(command["command"])
                    name = text.split(" ", 1)[0].strip('"').lower()
                    if name == "echo" and marker in text:
                        events.append(("mark", text.split(marker, 1)[1].strip('"')))
                        if text.endswith(":stop"):
                            return
                    else:
                        events.append((str(command["client_type"]), name))
        finally:
            client.close()

    thread = threading.Thread(target=listen, name="redis-monitor", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("MONITOR did not start")
    echo = redis.Redis.from_url(redis_url, socket_timeout=5)
    index = start_index
    try:
        for role in ("limited", "free"):
            echo.echo(f"{marker}:start:{role}")
            load = await drive(session, instances.urls, f"sk-scaling-{role}-{tag}", args.monitor_requests,
                               args.concurrency, args.stream_share, index, args.phase_timeout)
            index += args.monitor_requests
            if load.errors:
                raise RuntimeError(f"errors in the MONITOR sample ({role}): {load.first_error}")
            await asyncio.sleep(args.settle_wait)
            echo.echo(f"{marker}:end:{role}")
        echo.echo(f"{marker}:stop")
    finally:
        echo.close()
    thread.join(30)
    out: dict[str, dict[str, Any]] = {}
    current: str | None = None  # the key whose sample the events belong to
    for kind, name in events:
        if kind == "mark":
            _, what, *rest = name.split(":")
            current = rest[0] if what == "start" and rest else None
            continue
        if current is None:
            continue
        sample = out.setdefault(current, {"requests": args.monitor_requests, "client": {}, "lua": {}})
        bucket = sample["lua" if kind == "lua" else "client"]
        bucket[name] = bucket.get(name, 0) + 1
    return out


# ----------------------------------------------------------------------------------------------- report

def pct(ns: list[int], q: float) -> float:
    if not ns:
        return NAN
    xs = sorted(ns)
    return xs[min(len(xs) - 1, max(0, int(q / 100 * len(xs) + 0.999999) - 1))] / 1e6


def per(x: float, n: int, scale: float = 1.0) -> float:
    return x / n * scale if n else NAN


def phase_row(p: Phase) -> dict[str, Any]:
    n = p.requests
    r = p.redis
    evalsha = r["commands"].get("evalsha", {"calls": 0, "usec": 0})
    return {
        "phase": p.name, "requests": n, "errors": p.load.errors, "rps": n / p.wall_s if p.wall_s else NAN,
        "p50_ms": pct(p.load.latencies_ns, 50), "p99_ms": pct(p.load.latencies_ns, 99),
        "gateway_cpu_us": per(p.gateway_cpu_s, n, 1e6), "gateway_stat_cpu_us": per(p.gateway_stat_cpu_s, n, 1e6),
        "redis_commands": per(r["total"], n), "redis_total_commands_processed": per(r["total_commands_processed"], n),
        "redis_evalsha": per(evalsha["calls"], n),
        "redis_evalsha_usec_per_call": evalsha["usec"] / evalsha["calls"] if evalsha["calls"] else NAN,
        "redis_cpu_us": per(r["cpu_s"], n, 1e6), "redis_cpu_main_us": per(r["cpu_main_s"], n, 1e6),
        "redis_net_in_bytes": per(r["net_in"], n), "redis_net_out_bytes": per(r["net_out"], n),
        "redis_by_command": {k: per(v["calls"], n) for k, v in sorted(r["commands"].items())},
        "redis_commands_absolute": {k: v["calls"] for k, v in sorted(r["commands"].items())},
        "postgres_backend_cpu_us": per(p.postgres_cpu_s, n, 1e6),
    }


def fmt(x: float, spec: str = ".2f") -> str:
    return "–" if x != x else format(x, spec)


def ledger_phase(ledger: dict[str, Any], name: str) -> dict[str, float]:
    """INSERT transactions per second (per instance, and all), rows per transaction, during a phase."""
    phase = ledger["phases"].get(name)
    if not phase or not phase["instances"] or phase["seconds"] <= 0:
        return {"tx_per_s": NAN, "tx_per_s_instance": NAN, "rows_per_tx": NAN, "tx_per_request": NAN}
    tx = sum(i["tx"] for i in phase["instances"])
    rows = sum(i["rows"] for i in phase["instances"])
    return {"tx_per_s": tx / phase["seconds"], "tx_per_s_instance": tx / phase["seconds"] / len(phase["instances"]),
            "rows_per_tx": rows / tx if tx else NAN, "tx_per_request": tx / rows if rows else NAN}


def report(meta: dict[str, Any], rows: list[dict[str, Any]], pg: dict[str, Any], ledger: dict[str, Any],
           sample: dict[str, Any]) -> str:
    lines = [
        "# Scaling out: what each request costs Redis and PostgreSQL",
        "",
        "Generated by `bench/scaling.py` (the method is its docstring, summarised below); the figures feed",
        "[docs/scaling.md](../docs/scaling.md). Re-run it to refresh them.",
        "",
        f"* when: {meta['when']}; commit {meta['commit']}",
        f"* command: `{meta['command']}`",
        f"* machine: {meta['machine']}; Redis {meta['redis_version']} ({meta['redis_where']}), "
        f"PostgreSQL {meta['postgres_version']}",
        f"* {meta['instances']} instances (`yourouter serve --log-level warning`, `log_requests: false`, ledger "
        f"defaults), client concurrency {meta['concurrency']} in all (round robin), {meta['requests']} requests "
        f"per phase after {meta['warmup']} warm-up requests per key; streams: {meta['stream_share']:.0%} of "
        f"requests. Nothing pinned: the gateways, the client, the mock, Redis and PostgreSQL share "
        f"{os.cpu_count()} cores, so throughput and latency below are not capacity figures; the per-request "
        "costs are (though CPU per request is inflated by the crowding).",
        "",
        "## Redis round trips per request (MONITOR sample)",
        "",
        "| key | requests | round trips (commands the gateway sent) | run inside those scripts |",
        "|---|---|---|---|",
    ]
    for role in ("limited", "free"):
        got = sample.get(role, {"requests": 0, "client": {}, "lua": {}})
        n = got["requests"]

        def listing(bucket: dict[str, int], n: int = n) -> str:
            total = sum(bucket.values())
            parts = ", ".join(f"`{k}` {v / n:.2f}" for k, v in sorted(bucket.items(), key=lambda kv: -kv[1]))
            return f"{total / n:.3f}" + (f" ({parts})" if parts else "") if n else "–"

        lines.append(f"| {role} | {n} | {listing(got['client'])} | {listing(got['lua'])} |")
    lines += [
        "",
        "## Per request, by phase",
        "",
        "| | limited key (rpm + tpm + daily budget) | free key (no limits) |",
        "|---|---|---|",
    ]
    by = {r["phase"]: r for r in rows}
    lim, free = by.get("limited", {}), by.get("free", {})

    def line(label: str, name: str, spec: str = ".2f") -> None:
        lines.append(f"| {label} | {fmt(lim.get(name, NAN), spec)} | {fmt(free.get(name, NAN), spec)} |")

    line("Redis commands executed (INFO commandstats: includes the scripts' inner calls)", "redis_commands", ".2f")
    line("… EVALSHA (round trips of the limits engine)", "redis_evalsha", ".3f")
    line("EVALSHA µs per call (in-script time, commandstats)", "redis_evalsha_usec_per_call", ".1f")
    line("Redis CPU µs (server process, INFO cpu)", "redis_cpu_us", ".1f")
    line("Redis CPU µs (main thread)", "redis_cpu_main_us", ".1f")
    line("Redis bytes in (requests to Redis)", "redis_net_in_bytes", ".0f")
    line("Redis bytes out (replies)", "redis_net_out_bytes", ".0f")
    line("gateway CPU µs (all instances, schedstat)", "gateway_cpu_us", ".0f")
    line("gateway CPU µs (utime + stime)", "gateway_stat_cpu_us", ".0f")
    line("PostgreSQL CPU µs (the gateways' backends)", "postgres_backend_cpu_us", ".1f")
    lp, fp = ledger_phase(ledger, "limited"), ledger_phase(ledger, "free")
    lines.append(f"| ledger INSERT transactions per request | {fmt(lp['tx_per_request'], '.4f')} | "
                 f"{fmt(fp['tx_per_request'], '.4f')} |")
    lines.append(f"| ledger rows per INSERT transaction | {fmt(lp['rows_per_tx'], '.1f')} | "
                 f"{fmt(fp['rows_per_tx'], '.1f')} |")
    lines.append(f"| ledger INSERT transactions per second, per instance | {fmt(lp['tx_per_s_instance'], '.1f')} | "
                 f"{fmt(fp['tx_per_s_instance'], '.1f')} |")
    line("throughput, req/s (all instances)", "rps", ".0f")
    lines.append(f"| latency p50 / p99, ms | {fmt(lim.get('p50_ms', NAN))} / {fmt(lim.get('p99_ms', NAN))} | "
                 f"{fmt(free.get('p50_ms', NAN))} / {fmt(free.get('p99_ms', NAN))} |")
    lines += ["", "Redis commands executed per phase (absolute, INFO commandstats):", ""]
    for r in rows:
        lines.append(f"* {r['phase']}: " + ", ".join(f"`{k}` {v}" for k, v in r["redis_commands_absolute"].items()))
    batches = ledger["batches"]
    total = sum(batches)
    commits = pg["run"]["xact_commit"] - pg["control"]["xact_commit"]
    rollbacks = pg["run"]["xact_rollback"] - pg["control"]["xact_rollback"]
    lines += [
        "",
        "## PostgreSQL, over the whole run",
        "",
        f"Requests sent: {pg['requests']} (warm-up and MONITOR sample included); ledger rows: {total} "
        f"({'complete' if pg['ledger_complete'] else 'INCOMPLETE'}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(ledger["rows_by_key"].items()))
        + f"; duplicate request ids {ledger['duplicate_request_ids']}).",
        "",
        "| | run | control (start + stop, no requests) | run − control | per request |",
        "|---|---|---|---|---|",
    ]
    for name in ("xact_commit", "xact_rollback", "tup_inserted"):
        run, control = pg["run"][name], pg["control"][name]
        lines.append(f"| {name} | {run} | {control} | {run - control} | "
                     f"{fmt(per(run - control, pg['requests']), '.4f')} |")
    lines += [
        "",
        f"* ledger INSERT transactions (distinct `ledger_xid`): {len(batches)}, i.e. "
        f"{fmt(per(len(batches), pg['requests']), '.4f')} per request; other commits: {commits - len(batches)}",
        f"* rows per INSERT transaction (batch size): mean {fmt(statistics.mean(batches) if batches else NAN, '.1f')}, "
        f"median {fmt(statistics.median(batches) if batches else NAN, '.0f')}, max {max(batches, default=0)}, "
        f"min {min(batches, default=0)}",
        f"* rollbacks: {rollbacks} (SQLAlchemy's pool pre-ping runs `BEGIN; ; ROLLBACK` on every checkout, so every "
        "ledger INSERT comes with one; reads, such as the budget's first ledger sum, end in a rollback too)",
        f"* `usage` table + indexes: {ledger['usage_bytes'] / 1024:.0f} KiB for {total} rows "
        f"(~{ledger['usage_bytes'] / max(1, total):.0f} bytes a row)",
        "",
        "## Method",
        "",
        "See the docstring of `bench/scaling.py`. In short: Redis counters are INFO deltas around each phase (our own",
        "INFO calls excluded) on a redis-server only this run uses (unless `--redis-url`); round trips come from a",
        "separate MONITOR sample (commands from the gateways' connections, against those Lua scripts ran). Gateway",
        "CPU is the instances' threads' run time. PostgreSQL counters come from `pg_stat_database` for a database only",
        "this run uses, read after the instances exited (backends report their statistics when idle, with up to 10 s",
        "delay, and always at exit), less a control lifetime with no requests; ledger batches are counted exactly",
        "from a `ledger_xid` column the bench adds to `usage` (default `pg_current_xact_id()`); a phase's batches",
        "are those carrying rows of requests that started in it, per instance by the request id's process prefix.",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- main

def write_config(work: Path, db_url: str, redis_url: str, upstream_port: int, tag: str) -> Path:
    limits = ", ".join(f"{k}: {v}" for k, v in LIMITS.items())
    path = work / "scaling.yaml"
    path.write_text(f"""\
host: 127.0.0.1
database_url: "{db_url}"
redis_url: "{redis_url}"
log_requests: false
usage: {{spill_dir: "{work}/spill"}}
prices: {{m: {{input: {PRICE['input']}, output: {PRICE['output']}}}}}
keys:
  - {{key: "sk-scaling-free-{tag}", name: "free-{tag}"}}
  - {{key: "sk-scaling-limited-{tag}", name: "limited-{tag}", {limits}, budget_usd: {BUDGET_USD},
      budget_period: day}}
providers:
  - {{name: mock-{tag}, vendor: mock, type: openai, base_url: "http://127.0.0.1:{upstream_port}/v1", api_key: sk-up,
      models: [m]}}
""")
    return path


async def run(args: argparse.Namespace, work: Path, config: Path, db_name: str, db_url: str, redis_url: str,
              tag: str) -> tuple[list[Phase], dict[str, Any], dict[str, Any], list[int | None]]:
    import redis

    rclient = redis.Redis.from_url(redis_url, socket_timeout=5, decode_responses=True)
    try:
        # control: the same lifetime, no requests
        c0 = await pg_counters(db_name)
        Instances(config, args.instances, work, "control").stop()
        await asyncio.sleep(args.stats_wait)
        c1 = await pg_counters(db_name)
        s0 = await pg_counters(db_name)
        instances = Instances(config, args.instances, work, "run")
        try:
            timeout = aiohttp.ClientTimeout(total=args.request_timeout)
            connector = aiohttp.TCPConnector(limit=args.concurrency, limit_per_host=0)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
                index = 0
                for role in ("limited", "free"):
                    warm = await drive(session, instances.urls, f"sk-scaling-{role}-{tag}", args.warmup,
                                       args.concurrency, args.stream_share, index, args.phase_timeout)
                    index += args.warmup
                    if warm.errors:
                        raise RuntimeError(f"warm-up errors ({role}): {warm.first_error}")
                phases = []
                for role in ("limited", "free"):
                    phase = await measure(role, session, instances, f"sk-scaling-{role}-{tag}", args, rclient,
                                          db_name, index)
                    index += args.requests
                    phases.append(phase)
                    row = phase_row(phase)
                    print(f"{role:8s} {phase.requests} requests in {phase.wall_s:.1f} s ({row['rps']:.0f}/s), errors "
                          f"{phase.load.errors}; Redis {row['redis_commands']:.3f} commands "
                          f"({row['redis_evalsha']:.3f} EVALSHA), {row['redis_cpu_us']:.1f} µs CPU; gateway "
                          f"{row['gateway_cpu_us']:.0f} µs CPU per request", flush=True)
                    if phase.load.errors:
                        print(f"  first error: {phase.load.first_error}", file=sys.stderr)
                sample = await monitor_sample(session, instances, args, redis_url, tag, index)
                index += 2 * args.monitor_requests
        finally:
            codes = instances.stop()
        await asyncio.sleep(args.stats_wait)
        s1 = await pg_counters(db_name)
        pg = {"control": {k: c1[k] - c0[k] for k in PG_COUNTERS}, "run": {k: s1[k] - s0[k] for k in PG_COUNTERS},
              "requests": index}
        return phases, pg, sample, codes
    finally:
        rclient.close()


def cleanup_redis(url: str, tag: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        names = list(client.scan_iter(match=f"yr:*{tag}", count=1000))
        if names:
            client.delete(*names)
    finally:
        client.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instances", type=int, default=3, help="gateway processes (3)")
    p.add_argument("--requests", "-n", type=int, default=4000, help="measured requests per phase (4000)")
    p.add_argument("--concurrency", "-c", type=int, default=48, help="client workers in all (48)")
    p.add_argument("--warmup", type=int, default=300, help="warm-up requests per key (300)")
    p.add_argument("--monitor-requests", type=int, default=300, help="requests per key in the MONITOR sample "
                   "(round trips; 300)")
    p.add_argument("--stream-share", type=float, default=0.0, help="share of streaming requests (0)")
    p.add_argument("--redis-url", help="an existing Redis (default: a redis-server of our own on a free port; "
                   "other users of a shared Redis would be counted too)")
    p.add_argument("--keep-db", action="store_true", help="keep the bench database")
    p.add_argument("--request-timeout", type=float, default=30.0)
    p.add_argument("--phase-timeout", type=float, default=120.0, help="upper bound per phase, s (120)")
    p.add_argument("--settle-wait", type=float, default=0.8, help="after a phase, before its last snapshot (0.8)")
    p.add_argument("--stats-wait", type=float, default=1.0, help="after the instances exit, before reading "
                   "pg_stat_database (1.0)")
    p.add_argument("--out", help="output dir (default bench/results/scaling-<stamp>)")
    p.add_argument("--md", default=str(HERE / "SCALING.md"), help="the report (bench/SCALING.md)")
    p.add_argument("--no-md", action="store_true", help="do not write the report")
    args = p.parse_args()
    if args.instances < 1 or args.requests < 1 or args.concurrency < 1:
        p.error("--instances, --requests and --concurrency must be positive")

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"], capture_output=True,
                           text=True).stdout.strip()
    commit += " + uncommitted src/ changes" if dirty else " (src/ clean)"
    out = Path(args.out).resolve() if args.out else HERE / "results" / f"scaling-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=out))

    def on_signal(signum: int, _frame: object) -> None:  # SIGTERM/SIGHUP -> exception -> cleanup
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    tag = secrets.token_hex(4)
    db_name = f"yourouter_bench_{tag}"
    db_url = database_url(db_name)
    procs: list[Proc] = []
    redis_server: RedisServer | None = None
    created = False
    try:
        upstream_port = free_port()
        mock = Proc([upstream_python(), str(SHARED / "mock_upstream.py"), "--port", str(upstream_port)],
                    work / "mock.log", None)
        procs.append(mock)
        wait_http(f"http://127.0.0.1:{upstream_port}/health", 20, mock)
        if args.redis_url:
            redis_url, redis_where = args.redis_url, f"{args.redis_url}, shared"
        else:
            redis_server = RedisServer(work)
            procs.append(redis_server.proc)
            redis_url, redis_where = redis_server.url, "own redis-server, no persistence"
        asyncio.run(pg_admin(f'CREATE DATABASE "{db_name}"'))
        created = True
        asyncio.run(prepare_database(db_url))
        config = write_config(work, db_url, redis_url, upstream_port, tag)
        phases, pg, sample, codes = asyncio.run(run(args, work, config, db_name, db_url, redis_url, tag))
        ledger = asyncio.run(ledger_facts(db_url, {ph.name: (ph.started_at, ph.ended_at) for ph in phases}))
        per_key = args.warmup + args.requests + args.monitor_requests
        expected = {f"{role}-{tag}": per_key for role in ("limited", "free")}
        pg["ledger_complete"] = (ledger["rows_by_key"] == expected and ledger["duplicate_request_ids"] == 0)
        import redis

        versions = {"redis_version": redis.Redis.from_url(redis_url).info("server")["redis_version"]}

        async def pg_version() -> str:
            import asyncpg

            connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
            try:
                return str(await connection.fetchval("SHOW server_version"))
            finally:
                await connection.close()

        machine = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                        if line.startswith("model name")), "?")
        meta = {"command": ".venv/bin/python bench/scaling.py" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:]),
                "when": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": commit,
                "machine": f"{os.cpu_count()} × {machine}", "instances": args.instances,
                "concurrency": args.concurrency, "requests": args.requests, "warmup": args.warmup,
                "stream_share": args.stream_share, "redis_where": redis_where,
                "postgres_version": asyncio.run(pg_version()), "exit_codes": codes, **versions}
        rows = [phase_row(phase) for phase in phases]
        text = report(meta, rows, pg, ledger, sample)
        (out / "data.json").write_text(json.dumps({"meta": meta, "phases": rows, "postgres": pg, "ledger": ledger,
                                                   "monitor": sample, "redis_raw": [ph.redis for ph in phases]},
                                                  indent=1))
        (out / "report.md").write_text(text)
        if not args.no_md:
            Path(args.md).write_text(text)
        print(text)
        print(f"written to {out}/report.md{'' if args.no_md else ' and ' + args.md}")
        errors = sum(ph.load.errors for ph in phases)
        if not pg["ledger_complete"]:
            print(f"LEDGER INCOMPLETE: {ledger['rows_by_key']} (expected {expected})", file=sys.stderr)
        return 0 if errors == 0 and pg["ledger_complete"] else 1
    finally:
        for proc in reversed(procs):
            proc.stop()
        if args.redis_url:
            cleanup_redis(args.redis_url, tag)
        if created and not args.keep_db:
            try:
                asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
            except Exception as exc:  # noqa: BLE001 - reported, not fatal
                print(f"could not drop {db_name}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
