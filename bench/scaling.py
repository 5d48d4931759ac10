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
              request is admitted (one EVALSHA) and settled in Redis (one more, shared with the requests that
              end in the same event-loop iteration), with a budget reservation
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
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from _common import exit_on_signals, install_uvloop, make_out_dirs
from chaos import Proc, cpu_seconds, free_port
from scaling_probes import (
    PG_COUNTERS,
    POSTGRES_ADMIN_URL,
    database_url,
    ledger_facts,
    pg_admin,
    pg_backends,
    pg_counters,
    pg_cpu,
    prepare_database,
    redis_delta,
    redis_snapshot,
)
from scaling_report import phase_row, report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = Path(os.environ.get("SHARED_BENCH", ROOT.parent / "shared" / "bench"))
HZ = os.sysconf("SC_CLK_TCK")
NAN = float("nan")
LIMITS = {"rpm": 10_000_000, "tpm": 10_000_000_000}
BUDGET_USD = 1_000_000
PRICE = {"input": 2.5, "output": 10}  # USD per 1M tokens


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
    out, work = make_out_dirs(args.out, "scaling", time.strftime("%Y%m%d-%H%M%S"))

    exit_on_signals()
    install_uvloop()

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
