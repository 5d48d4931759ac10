#!/usr/bin/env python3
"""Scaling with `yourouter serve --workers 2`: CPU per request, shared Redis limits, start-up time.

    .venv/bin/python bench/workers.py                          # working tree's .venv (~2.5 min)
    .venv/bin/python bench/workers.py --ref HEAD               # a commit (git archive -> its own venv)
    .venv/bin/python bench/workers.py --rounds 2 --duration 5 --starts 3       # a quick look (~1 min)
    .venv/bin/python bench/workers.py --only exact startup     # parts: cpu, exact, startup

The question (issue #8, "Scaling"): "with `--workers 2` the gateway CPU per request stays within 10% of one
worker's (so throughput grows with cores; the load generator shares this 2-core machine, so measure CPU per
request, not raw throughput) and shared Redis limits stay exact; startup under 1.5 s."

Set-up. The shared mock upstream (`../shared/bench/mock_upstream.py`, no delay) and the load generator are pinned
to CPU 0. Gateways: `yourouter serve --workers N` with production defaults (log level info, access log on, SQLite
ledger; `--database-url` for another one), `redis_url` and `limits.backend` on Redis (`--redis-url`, default
redis://127.0.0.1:6379/0), a `prices` entry for the model, and static keys whose names carry a tag unique to the
run (Redis counters never carry over; they are deleted at the end):

    load-<N>     rpm 10,000,000, tpm 10,000,000,000, max_concurrency 10,000, budget 1,000,000 USD a day: every
                 request is admitted and settled on Redis (windows, slot, budget reservation) and never refused
    exact-<i>    rpm --rpm (40) only, for part (b)

Workers 1 is pinned to CPU 1 (as every gateway in bench/); workers 2 is not pinned: its two processes use both
CPUs, sharing CPU 0 with the mock and the load generator (so its CPU per request includes that contention; that is
the figure the issue asks for).

(a) cpu: both gateways run side by side (the idle one costs nothing); --rounds rounds alternate them (the order
    swapped every round), each a wrk block (`wrk -t1 -c --concurrency -d --duration`, ../shared/bench/post.lua, on
    CPU 0) after a 2 s warm-up block per gateway before round 1. Per block: requests (wrk), non-2xx, throughput, and
    the gateway's CPU = the sum over its process tree (the uvicorn supervisor and its workers) of the threads' run
    time (/proc/<pid>/task/*/schedstat), and of utime+stime (/proc/<pid>/stat), / requests; each worker's share;
    redis-server's CPU per request. Figures are medians over rounds; the ratio workers-2 / workers-1 is taken per
    round (adjacent blocks) and its median judged against 1.10. After the rounds the gateways are stopped
    (SIGTERM: the ledger flushes) and the ledger's rows of each load key counted: with SQLite and two writer
    processes every request must still have its row (rows >= wrk's completed requests; wrk does not count the
    requests in flight when it stops, at most --concurrency per block) and the logs must not say
    "database is locked".
(b) exact: one fresh 2-worker gateway; for each of --exact-repeats keys with rpm N (--rpm), 3N requests at once
    (each its own connection): exactly N must get 200 and 2N 429. The responses' `x-request-id` prefix (random per
    process) tells which worker answered; the report gives the split (both workers must have answered).
(c) startup: --starts times per worker count, alternating, a fresh gateway (fresh SQLite file, so the migrations
    run as on a first start): spawn -> first 200 chat completion (polled every --poll-ms with a real request on a
    new connection, like the shared harness's ready probe), and spawn -> every worker has answered (distinct
    request-id prefixes). Median and range; target < 1.5 s to the first 200.

Writes bench/results/workers-<stamp>/{report.md, data.json, configs and logs} and replaces the generated part of
bench/WORKERS.md (between its `generated` markers; the rest is kept) unless --no-md. Only 127.0.0.1; every loop is
bounded; the processes it starts are ended on exit, error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from _common import exit_on_signals, install_uvloop, make_out_dirs, pin_load, resolve_yourouter, write_marked
from chaos import Proc, cpu_busy, cpu_seconds, free_port, wait_ready

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "bench"
HZ = os.sysconf("SC_CLK_TCK")
NAN = float("nan")
TARGET_RATIO = 1.10
TARGET_STARTUP_S = 1.5
MD_BEGIN, MD_END = "<!-- generated:begin (bench/workers.py) -->", "<!-- generated:end -->"
EXPECTED = "Hello there! This is a mock response from the benchmark upstream, streamed one token per chunk for you"


# ----------------------------------------------------------------------------------------------- helpers

def med(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else NAN


def fmt(x: float, spec: str = ".2f") -> str:
    return "–" if x != x else format(x, spec)


def rng(xs: list[float], spec: str = ".2f") -> str:
    xs = [x for x in xs if x == x]
    return f"{format(min(xs), spec)}–{format(max(xs), spec)}" if xs else "–"


def stat_cpu(pid: int) -> float:
    """utime + stime of a process (all threads), seconds (10 ms ticks)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ
    except (OSError, IndexError, ValueError):
        return NAN


def tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc/*/stat's ppid)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def ctx_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of all threads of a process: the first counts the times a thread
    blocked (an event loop waiting in epoll with nothing ready), the second the times it was preempted."""
    vol = invol = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
    except (OSError, ValueError):
        pass
    return vol, invol


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def redis_pid(url: str) -> int | None:
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2)
        try:
            return int(client.info("server")["process_id"])
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - None = not reachable
        return None


def cleanup_redis(url: str, tag: str) -> int:
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=5)
        try:
            names = list(client.scan_iter(match=f"yr:*{tag}*", count=1000))
            if names:
                client.delete(*names)
            return len(names)
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        print(f"could not clean Redis up: {exc}", file=sys.stderr)
        return -1


def body_bytes(n: int = 0) -> bytes:
    return b'{"model":"m","messages":[{"role":"user","content":"workers-bench %07d"}]}' % n


class Gateway:
    def __init__(self, name: str, workers: int, proc: Proc, port: int, config: Path, db: str) -> None:
        self.name, self.workers, self.proc, self.port, self.config, self.db = name, workers, proc, port, config, db
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"


def gateway_config(work: Path, name: str, upstream_port: int, tag: str, args: argparse.Namespace,
                   database_url: str) -> Path:
    exact = "\n".join(f'  - {{key: "sk-workers-exact-{i}-{tag}", name: "exact-{i}-{name}-{tag}", rpm: {args.rpm}}}'
                      for i in range(args.exact_repeats))
    config = work / f"{name}.yaml"
    config.write_text(f"""\
host: 127.0.0.1
database_url: "{database_url}"
redis_url: "{args.redis_url}"
limits: {{backend: "{args.redis_url}"}}
usage: {{spill_dir: "{work}/spill-{name}"}}
prices: {{m: {{input: 2.5, output: 10}}}}
keys:
  - {{key: "sk-workers-load-{tag}", name: "load-{name}-{tag}", rpm: 10000000, tpm: 10000000000,
      max_concurrency: 10000, budget_usd: 1000000, budget_period: day}}
{exact}
providers:
  - {{name: mock, vendor: mock, type: openai, base_url: "http://127.0.0.1:{upstream_port}/v1", api_key: sk-up,
      models: [m]}}
""")
    return config


def database_for(args: argparse.Namespace, work: Path, name: str) -> str:
    if args.database_url:
        return str(args.database_url)
    return f"sqlite:///{work}/{name}.db"


def start_gateway(yr_bin: Path, work: Path, name: str, workers: int, upstream_port: int, tag: str,
                  args: argparse.Namespace) -> Gateway:
    db = database_for(args, work, name)
    config = gateway_config(work, name, upstream_port, tag, args, db)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOUROUTER_")}
    cpus = args.gw_cpus if workers == 1 else args.gw2_cpus
    proc = Proc([str(yr_bin), "serve", "--config", str(config), "--port", str(port), "--workers", str(workers),
                 "--log-level", args.log_level], work / f"{name}.log", cpus or None, env)
    return Gateway(name, workers, proc, port, config, db)


async def count_rows(db: str, key_name: str) -> int | None:
    """Rows of the usage ledger for one key (SQLite file or PostgreSQL)."""
    if db.startswith("sqlite"):
        path = db.split(":///", 1)[1]
        try:
            with sqlite3.connect(path) as conn:
                return int(conn.execute("SELECT count(*) FROM usage WHERE key_name = ?", (key_name,)).fetchone()[0])
        except sqlite3.Error:
            return None
    try:
        import asyncpg

        conn = await asyncpg.connect(re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", db))
        try:
            return int(await conn.fetchval("SELECT count(*) FROM usage WHERE key_name = $1", key_name))
        finally:
            await conn.close()
    except Exception:  # noqa: BLE001 - None = could not count
        return None


# ----------------------------------------------------------------------------------------------- (a) cpu

def run_wrk(args: argparse.Namespace, gw: Gateway, tag: str, duration: float, body_file: Path) -> dict[str, Any]:
    env = {**os.environ, "WRK_BODY": str(body_file),
           "WRK_HEADERS": f"Authorization: Bearer sk-workers-load-{tag}"}
    cmd = ["wrk", "-t1", f"-c{args.concurrency}", f"-d{duration:g}s", "-s", str(args.post_lua), gw.url]
    if args.load_cpus:
        cmd = ["taskset", "-c", args.load_cpus, *cmd]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary (rc {done.returncode}):\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
    return dict(json.loads(line[len("WRKJSON "):]))


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_block(args: argparse.Namespace, gw: Gateway, tag: str, body_file: Path, rpid: int | None,
                  rnd: int, ours: list[int]) -> dict[str, Any]:
    pids = tree(gw.proc.pid)
    sched0 = {p: cpu_seconds(p) for p in pids}
    stat0 = {p: stat_cpu(p) for p in pids}
    ctx0 = [ctx_switches(p) for p in pids]
    redis0 = cpu_seconds(rpid) if rpid else NAN
    ours0 = sum(cpu_seconds(p) for p in ours)
    wrk0 = children_cpu()
    busy0 = sum(b for b, _ in cpu_busy().values())
    t0 = time.perf_counter()
    wrk = run_wrk(args, gw, tag, args.duration, body_file)
    wall = time.perf_counter() - t0
    busy = sum(b for b, _ in cpu_busy().values()) - busy0
    wrk_cpu = children_cpu() - wrk0
    ctx1 = [ctx_switches(p) for p in pids]
    vol = sum(b[0] - a[0] for a, b in zip(ctx0, ctx1, strict=True))
    invol = sum(b[1] - a[1] for a, b in zip(ctx0, ctx1, strict=True))
    ours_cpu = sum(cpu_seconds(p) for p in ours) - ours0
    after = tree(gw.proc.pid)
    sched = {p: cpu_seconds(p) - sched0[p] for p in pids}
    stat = {p: stat_cpu(p) - stat0[p] for p in pids}
    redis_cpu = cpu_seconds(rpid) - redis0 if rpid else NAN
    n = int(wrk["requests"])
    errors = sum(int(wrk[k]) for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    gw_cpu = sum(v for v in sched.values() if v == v)
    per_proc = {str(p): {"cmd": cmdline(p)[:120], "cpu_s": sched[p]} for p in pids}
    return {"gateway": gw.name, "workers": gw.workers, "round": rnd, "requests": n, "errors": errors,
            "rps": float(wrk["rps"]), "p50_ms": float(wrk["lat_p50_ms"]), "p99_ms": float(wrk["lat_p99_ms"]),
            "wall_s": wall, "gw_cpu_s": gw_cpu, "gw_cpu_us": gw_cpu / n * 1e6 if n else NAN,
            "gw_stat_cpu_us": sum(v for v in stat.values() if v == v) / n * 1e6 if n else NAN,
            "gw_cores": gw_cpu / wall, "redis_cpu_us": redis_cpu / n * 1e6 if n and rpid else NAN,
            "machine_busy_cores": busy / wall, "wrk_cpu_us": wrk_cpu / n * 1e6 if n else NAN,
            "mock_client_cpu_us": ours_cpu / n * 1e6 if n else NAN,
            "vol_ctx_per_req": vol / n if n else NAN, "invol_ctx_per_req": invol / n if n else NAN,
            "others_cores": max(0.0, busy - gw_cpu - wrk_cpu - ours_cpu - (redis_cpu if rpid else 0.0)) / wall,
            "procs": per_proc, "tree_changed": sorted(after) != sorted(pids)}


async def part_cpu(args: argparse.Namespace, yr_bin: Path, work: Path, upstream_port: int, tag: str,
                   rpid: int | None, out: dict[str, Any], ours: list[int]) -> None:
    body_file = work / "body.json"
    body_file.write_bytes(body_bytes())
    gws = [start_gateway(yr_bin, work, f"w{w}", w, upstream_port, tag, args) for w in args.workers]
    try:
        for gw in gws:
            await wait_ready(f"http://127.0.0.1:{gw.port}/health", gw.proc)
        warmed: dict[str, int] = {}
        for gw in gws:  # warm-up: every worker's connections, Redis scripts, budget
            warm = await asyncio.to_thread(run_wrk, args, gw, tag, args.warmup_s, body_file)
            bad = sum(int(warm[k]) for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
            if bad or not warm["requests"]:
                raise RuntimeError(f"warm-up of {gw.name}: {warm}\n{gw.proc.tail()}")
            warmed[gw.name] = int(warm["requests"])
        out["warmup_requests"] = warmed
        out["processes"] = {gw.name: [cmdline(p)[:160] for p in tree(gw.proc.pid)] for gw in gws}
        blocks = []
        for rnd in range(1, args.rounds + 1):
            order = gws if rnd % 2 else list(reversed(gws))
            for gw in order:
                block = await asyncio.to_thread(measure_block, args, gw, tag, body_file, rpid, rnd, ours)
                blocks.append(block)
                print(f"round {rnd} {gw.name}: {block['requests']} req, {block['rps']:,.0f} req/s, "
                      f"{block['gw_cpu_us']:.0f} µs CPU/req ({block['gw_cores']:.2f} cores), "
                      f"errors {block['errors']}", flush=True)
        out["blocks"] = blocks
    finally:
        for gw in gws:
            gw.proc.stop(grace=30)
    ledger = {}
    for gw in gws:
        log = gw.proc.log_path.read_text(errors="replace")
        mine = [b for b in out.get("blocks", []) if b["gateway"] == gw.name]
        counted = sum(b["requests"] for b in mine) + out.get("warmup_requests", {}).get(gw.name, 0)
        rows = await count_rows(gw.db, f"load-{gw.name}-{tag}")
        # wrk does not count the requests in flight when a block ends (at most --concurrency per block)
        slack = args.concurrency * (len(mine) + 1)
        ledger[gw.name] = {"rows": rows, "wrk_counted": counted, "max_uncounted": slack,
                           "complete": rows is not None and counted <= rows <= counted + slack,
                           "database_locked": log.count("database is locked"),
                           "tracebacks": log.count("Traceback"), "errors": log.count(" ERROR ") + log.count(
                               '"level": "error"'), "db": gw.db}
    out["ledger"] = ledger


# ----------------------------------------------------------------------------------------------- (b) exact

async def part_exact(args: argparse.Namespace, yr_bin: Path, work: Path, upstream_port: int, tag: str,
                     out: dict[str, Any]) -> None:
    gw = start_gateway(yr_bin, work, "exact", 2, upstream_port, tag, args)
    results = []
    try:
        await wait_ready(f"http://127.0.0.1:{gw.port}/health", gw.proc)
        timeout = aiohttp.ClientTimeout(total=args.request_timeout)
        # wait until both workers answer (a worker still starting would only see the burst's tail)
        await all_workers(gw, 2, 20.0)
        for i in range(args.exact_repeats):
            n = 3 * args.rpm
            headers = {"authorization": f"Bearer sk-workers-exact-{i}-{tag}", "content-type": "application/json"}
            connector = aiohttp.TCPConnector(limit=0, force_close=True)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                gate = asyncio.Event()

                async def one(k: int, session: aiohttp.ClientSession = session, gate: asyncio.Event = gate,
                              headers: dict[str, str] = headers) -> tuple[int, str, str]:
                    await gate.wait()
                    try:
                        async with session.post(gw.url, data=body_bytes(k), headers=headers) as r:
                            payload = await r.read()
                            ok = r.status != 200 or EXPECTED.encode() in payload
                            return (r.status if ok else -2, r.headers.get("x-request-id", "")[:16],
                                    payload[:160].decode(errors="replace"))
                    except (TimeoutError, aiohttp.ClientError) as exc:
                        return -1, "", f"{type(exc).__name__}: {exc}"

                tasks = [asyncio.create_task(one(k)) for k in range(n)]
                await asyncio.sleep(0.05)
                t0 = time.perf_counter()
                gate.set()
                got = await asyncio.gather(*tasks)
                wall = time.perf_counter() - t0
            statuses: dict[str, int] = {}
            by_worker: dict[str, dict[str, int]] = {}
            for status, prefix, _ in got:
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                w = by_worker.setdefault(prefix or "?", {})
                w[str(status)] = w.get(str(status), 0) + 1
            other = [t for s, _, t in got if s not in (200, 429)][:3]
            exact = statuses.get("200", 0) == args.rpm and statuses.get("429", 0) == 2 * args.rpm
            results.append({"key": f"exact-{i}", "rpm": args.rpm, "sent": n, "statuses": statuses,
                            "by_worker": by_worker, "workers_seen": len([p for p in by_worker if p != "?"]),
                            "exact": exact, "wall_s": wall, "other_examples": other})
            print(f"exact-{i}: {statuses} over {len(by_worker)} worker(s) {by_worker} -> "
                  f"{'exact' if exact else 'NOT exact'}", flush=True)
    finally:
        gw.proc.stop(grace=30)
    out["exact"] = results


async def all_workers(gw: Gateway, workers: int, timeout_s: float) -> float:
    """Sends requests on new connections until `workers` distinct request-id prefixes answered; returns the time
    it took (NaN on timeout)."""
    t0 = time.perf_counter()
    seen: set[str] = set()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.perf_counter() - t0 < timeout_s:
            async def probe() -> str | None:
                try:
                    async with session.get(f"http://127.0.0.1:{gw.port}/v1/models",
                                           headers={"authorization": "Bearer none"}) as r:
                        await r.read()
                        return r.headers.get("x-request-id", "")[:16] or None
                except (TimeoutError, aiohttp.ClientError):
                    return None

            for prefix in await asyncio.gather(*(probe() for _ in range(4))):
                if prefix:
                    seen.add(prefix)
            if len(seen) >= workers:
                return time.perf_counter() - t0
            await asyncio.sleep(0.01)
    return NAN


# ----------------------------------------------------------------------------------------------- (c) startup

async def one_start(args: argparse.Namespace, yr_bin: Path, work: Path, upstream_port: int, tag: str, workers: int,
                    k: int) -> dict[str, Any]:
    name = f"start-w{workers}-{k}"
    t0 = time.perf_counter()
    gw = start_gateway(yr_bin, work, name, workers, upstream_port, tag, args)
    first = NAN
    every = NAN
    status = None
    headers = {"authorization": f"Bearer sk-workers-load-{tag}", "content-type": "application/json"}
    prefixes: set[str] = set()
    try:
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
            deadline = t0 + args.start_timeout
            while time.perf_counter() < deadline:
                if not gw.proc.alive():
                    raise RuntimeError(f"{name} exited during start-up:\n{gw.proc.tail()}")
                try:
                    async with session.post(gw.url, data=body_bytes(k), headers=headers) as r:
                        payload = await r.read()
                        status = r.status
                        if r.status == 200 and EXPECTED.encode() in payload:
                            first = time.perf_counter() - t0
                            prefixes.add(r.headers.get("x-request-id", "")[:16])
                            break
                except (TimeoutError, aiohttp.ClientError):
                    pass
                await asyncio.sleep(args.poll_ms / 1000)
        if first == first:
            rest = await all_workers(gw, workers, args.start_timeout) if workers > 1 else 0.0
            every = first + rest if rest == rest else NAN
    finally:
        gw.proc.stop(grace=15)
    return {"workers": workers, "start": k, "first_200_s": first, "all_workers_s": every, "last_status": status}


async def part_startup(args: argparse.Namespace, yr_bin: Path, work: Path, upstream_port: int, tag: str,
                       out: dict[str, Any]) -> None:
    starts = []
    for k in range(args.starts):
        for w in (args.workers if k % 2 == 0 else list(reversed(args.workers))):
            s = await one_start(args, yr_bin, work, upstream_port, tag, w, k)
            starts.append(s)
            print(f"start {k + 1}/{args.starts} workers={w}: first 200 after {fmt(s['first_200_s'], '.3f')} s, "
                  f"all workers {fmt(s['all_workers_s'], '.3f')} s", flush=True)
    out["starts"] = starts


# ----------------------------------------------------------------------------------------------- report

def analyse(out: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    a: dict[str, Any] = {}
    blocks = out.get("blocks", [])
    if blocks:
        per: dict[str, Any] = {}
        for w in args.workers:
            mine = [b for b in blocks if b["workers"] == w]
            per[str(w)] = {k: med([b[k] for b in mine]) for k in ("rps", "p50_ms", "p99_ms", "gw_cpu_us",
                                                                  "gw_stat_cpu_us", "gw_cores", "redis_cpu_us",
                                                                  "machine_busy_cores", "wrk_cpu_us",
                                                                  "mock_client_cpu_us", "others_cores",
                                                                  "vol_ctx_per_req", "invol_ctx_per_req")}
            per[str(w)]["cpu_range"] = rng([b["gw_cpu_us"] for b in mine], ".0f")
            per[str(w)]["requests"] = sum(b["requests"] for b in mine)
            per[str(w)]["errors"] = sum(b["errors"] for b in mine)
            shares = []
            for b in mine:
                workers = [v["cpu_s"] for v in b["procs"].values() if "multiprocessing" in v["cmd"]]
                if len(workers) >= 2 and sum(workers) > 0:
                    shares.append(max(workers) / sum(workers))
            per[str(w)]["busiest_worker_share"] = med(shares)
        a["per_workers"] = per
        a["others_cores"] = med([b["others_cores"] for b in blocks])
        a["others_max"] = max(b["others_cores"] for b in blocks)
        if len(args.workers) == 2:
            w1, w2 = (str(w) for w in args.workers)
            ratios, sratios, rps = [], [], []
            for rnd in range(1, args.rounds + 1):
                b1 = next((b for b in blocks if b["round"] == rnd and str(b["workers"]) == w1), None)
                b2 = next((b for b in blocks if b["round"] == rnd and str(b["workers"]) == w2), None)
                if b1 and b2:
                    ratios.append(b2["gw_cpu_us"] / b1["gw_cpu_us"])
                    sratios.append(b2["gw_stat_cpu_us"] / b1["gw_stat_cpu_us"])
                    rps.append(b2["rps"] / b1["rps"])
            a["ratio"] = {"cpu": med(ratios), "cpu_range": rng(ratios), "stat_cpu": med(sratios),
                          "stat_range": rng(sratios), "rps": med(rps), "rps_range": rng(rps), "per_round": ratios}
    starts = out.get("starts", [])
    if starts:
        a["startup"] = {}
        for w in args.workers:
            mine = [s for s in starts if s["workers"] == w]
            a["startup"][str(w)] = {"first_200_s": med([s["first_200_s"] for s in mine]),
                                    "first_range": rng([s["first_200_s"] for s in mine], ".2f"),
                                    "all_workers_s": med([s["all_workers_s"] for s in mine]),
                                    "all_range": rng([s["all_workers_s"] for s in mine], ".2f"), "n": len(mine)}
    return a


def report(out: dict[str, Any], a: dict[str, Any], meta: dict[str, Any], args: argparse.Namespace) -> str:
    L = [f"`{meta['command']}` — {meta['when']}, commit {meta['commit']}, {meta['machine']}, redis {meta['redis']}; "
         f"{meta['layout']} Database: {meta['database']}. Others' load in part (a)'s blocks (CPU time of processes "
         f"other than the gateway, redis-server, wrk, the mock and this script, both CPUs, in cores): median "
         f"{fmt(a.get('others_cores', NAN))}, max {fmt(a.get('others_max', NAN))}; {meta['elapsed_s']:.0f} s.", ""]
    if "per_workers" in a:
        L += ["### (a) CPU per request, --workers 1 vs 2", "",
              f"wrk -t1 -c{args.concurrency} -d{args.duration:g}s on CPU 0, {args.rounds} rounds alternating; a key "
              "with rpm/tpm/concurrency limits and a budget on the Redis backend (never refused). Gateway CPU = its "
              "process tree's thread run time (schedstat; utime+stime in brackets) per request. Medians over rounds.",
              "",
              "| workers | gateway CPU µs/req (range) | utime+stime µs/req | cores used | busiest worker's share | "
              "req/s | p50 ms | p99 ms | redis-server µs/req | wrk µs/req | mock + client µs/req | machine busy "
              "(cores) | others (cores) | blocked / preempted per req | requests | errors |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for w, x in a["per_workers"].items():
            share = fmt(x["busiest_worker_share"] * 100, ".0f") + (" %" if x["busiest_worker_share"] == x[
                "busiest_worker_share"] else "")
            L.append(f"| {w} | {fmt(x['gw_cpu_us'], '.0f')} ({x['cpu_range']}) | {fmt(x['gw_stat_cpu_us'], '.0f')} | "
                     f"{fmt(x['gw_cores'])} | {share} | "
                     f"{fmt(x['rps'], ',.0f')} | {fmt(x['p50_ms'])} | {fmt(x['p99_ms'])} | "
                     f"{fmt(x['redis_cpu_us'], '.0f')} | {fmt(x['wrk_cpu_us'], '.0f')} | "
                     f"{fmt(x['mock_client_cpu_us'], '.0f')} | {fmt(x['machine_busy_cores'])} | "
                     f"{fmt(x['others_cores'])} | {fmt(x['vol_ctx_per_req'])} / {fmt(x['invol_ctx_per_req'])} | "
                     f"{x['requests']:,} | {x['errors']} |")
        if "ratio" in a:
            r = a["ratio"]
            verdict = "met" if r["cpu"] <= TARGET_RATIO else "**not met**"
            L += ["", "CPU per request, workers 2 / workers 1 (per round, adjacent blocks): "
                  f"**{fmt(r['cpu'], '.3f')}** (rounds {r['cpu_range']}; utime+stime {fmt(r['stat_cpu'], '.3f')}, "
                  f"{r['stat_range']}) — target "
                  f"≤ {TARGET_RATIO:.2f}: {verdict}. Throughput ratio {fmt(r['rps'])} ({r['rps_range']}; the load "
                  "generator and the mock share CPU 0 with one of the two workers, so this is not the scaling a "
                  "machine with spare cores would show)."]
        led = out.get("ledger", {})
        if led:
            parts = []
            for k, v in led.items():
                verdict = "complete" if v["complete"] else "**rows missing or extra**"
                parts.append(f"{k}: {v['rows']:,} rows for {v['wrk_counted']:,} requests "
                             f"(+{(v['rows'] or 0) - v['wrk_counted']}, allowed 0…{v['max_uncounted']}: {verdict}), "
                             f"'database is locked' ×{v['database_locked']}, tracebacks ×{v['tracebacks']}")
            L += ["", "Ledger after stopping (SIGTERM) the gateways, rows of the load key against the requests wrk "
                  f"completed (warm-up included; wrk does not count the up to {args.concurrency} requests in flight "
                  f"when a block ends): {'; '.join(parts)} ({meta['database']})."]
    if out.get("exact"):
        ex = out["exact"]
        ok = all(e["exact"] for e in ex)
        both = all(e["workers_seen"] >= 2 for e in ex)
        L += ["", "### (b) Shared Redis limits with 2 workers", "",
              f"Per key: rpm {args.rpm}, {3 * args.rpm} requests at once, each on its own connection. Expected "
              f"exactly {args.rpm} × 200 and {2 * args.rpm} × 429.", "",
              "| key | statuses | by worker (request-id prefix: statuses) | exact |", "|---|---|---|---|"]
        for e in ex:
            split = "; ".join(f"`{p}`: {s}" for p, s in e["by_worker"].items())
            L.append(f"| {e['key']} | {e['statuses']} | {split} | {'yes' if e['exact'] else '**no**'} |")
        L += ["", f"Exact: {'all' if ok else 'NOT all'} of {len(ex)} keys; "
              f"{'both workers answered every burst' if both else 'a burst was answered by one worker only'}."]
    if "startup" in a:
        L += ["", "### (c) Start-up", "",
              f"Spawn → first 200 chat completion (a real request every {args.poll_ms:g} ms on a new connection; "
              "fresh SQLite file, so the migrations run) and spawn → every worker has answered. "
              f"{args.starts} starts each, alternating.", "",
              "| workers | first 200 s (median) | range | every worker answered s | range | target < 1.5 s |",
              "|---|---|---|---|---|---|"]
        for w, x in a["startup"].items():
            verdict = "met" if x["first_200_s"] < TARGET_STARTUP_S else "**not met**"
            L.append(f"| {w} | {fmt(x['first_200_s'], '.3f')} | {x['first_range']} | {fmt(x['all_workers_s'], '.3f')} "
                     f"| {x['all_range']} | {verdict} |")
    return "\n".join(L) + "\n"


def write_md(text: str) -> Path:
    return write_marked(HERE / "WORKERS.md", MD_BEGIN, MD_END, "## Last run (written by bench/workers.py)", text,
                        "# Scaling: --workers 1 vs 2\n\n"
                        "`.venv/bin/python bench/workers.py --ref HEAD` (method: its docstring).\n\n")


# ----------------------------------------------------------------------------------------------- main

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", help="install this commit (git archive) into ${TMPDIR:-/tmp}/yourouter-bench-<sha>")
    p.add_argument("--yourouter-bin", help="default: <repo>/.venv/bin/yourouter, or the one --ref installs")
    p.add_argument("--only", nargs="+", choices=["cpu", "exact", "startup"], help="default: all three")
    p.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2],
                   help="worker counts compared (1,2)")
    p.add_argument("--rounds", type=int, default=3, help="(a) rounds, each one block per worker count (3)")
    p.add_argument("--duration", type=float, default=10.0, help="(a) seconds per wrk block (10)")
    p.add_argument("--warmup-s", type=float, default=2.0, help="(a) warm-up block per gateway, s (2)")
    p.add_argument("--concurrency", type=int, default=50, help="(a) wrk connections (50)")
    p.add_argument("--rpm", type=int, default=40, help="(b) the key's rpm N; 3N requests are sent (40)")
    p.add_argument("--exact-repeats", type=int, default=3, help="(b) keys (bursts) (3)")
    p.add_argument("--starts", type=int, default=5, help="(c) starts per worker count (5)")
    p.add_argument("--poll-ms", type=float, default=20.0, help="(c) ready probe interval, ms (20)")
    p.add_argument("--start-timeout", type=float, default=60.0)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--database-url", help="ledger database for every gateway (default: a fresh SQLite file per "
                   "gateway), e.g. postgresql://postgres@127.0.0.1:5432/<db>")
    p.add_argument("--log-level", default="info", help="gateway --log-level (info: production, access log on)")
    p.add_argument("--gw-cpus", default="1", help="taskset CPU for --workers 1 ('' = no pinning)")
    p.add_argument("--gw2-cpus", default="", help="taskset CPUs for --workers > 1 ('' = no pinning: both CPUs)")
    p.add_argument("--load-cpus", default="0", help="taskset CPU for the mock, wrk and this client ('' = none)")
    p.add_argument("--mock", default=str(SHARED / "mock_upstream.py"))
    p.add_argument("--post-lua", default=str(SHARED / "post.lua"))
    p.add_argument("--request-timeout", type=float, default=30.0)
    p.add_argument("--no-md", action="store_true", help="do not touch bench/WORKERS.md")
    p.add_argument("--out", help="output dir (default bench/results/workers-<stamp>)")
    args = p.parse_args()
    parts = args.only or ["cpu", "exact", "startup"]
    if args.rounds < 1 or args.starts < 1 or args.rpm < 1:
        p.error("--rounds, --starts and --rpm must be positive")
    if "cpu" in parts and not shutil.which("wrk"):
        p.error("wrk not found (../shared/bench/setup_peers.sh installs it)")
    t_start = time.monotonic()
    yr_bin, commit = resolve_yourouter(args, p)
    nproc = os.cpu_count() or 1
    pin_load(args, nproc, ("gw_cpus", "gw2_cpus", "load_cpus"))
    rpid = redis_pid(args.redis_url)
    if rpid is None:
        p.error(f"Redis not reachable at {args.redis_url}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tag = f"{stamp}-{os.getpid()}"
    out_dir, work = make_out_dirs(args.out, "workers", stamp)

    exit_on_signals()
    install_uvloop()

    out: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    cleaned = None
    mock: Proc | None = None
    try:
        upstream_port = free_port()
        mock = Proc([sys.executable, args.mock, "--port", str(upstream_port)], work / "mock.log",
                    args.load_cpus or None)

        async def go() -> None:
            assert mock is not None
            await wait_ready(f"http://127.0.0.1:{upstream_port}/health", mock)
            if "cpu" in parts:
                await part_cpu(args, yr_bin, work, upstream_port, tag, rpid, out, [mock.pid, os.getpid()])
            if "exact" in parts:
                await part_exact(args, yr_bin, work, upstream_port, tag, out)
            if "startup" in parts:
                await part_startup(args, yr_bin, work, upstream_port, tag, out)

        asyncio.run(go())
    finally:
        if mock is not None:
            mock.stop()
        cleaned = cleanup_redis(args.redis_url, tag)
    machine = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   "?")
    redis_version = "?"
    try:
        import redis

        client = redis.Redis.from_url(args.redis_url, socket_timeout=2)
        redis_version = client.info("server")["redis_version"]
        client.close()
    except Exception:  # noqa: BLE001
        pass
    meta.update({"stamp": stamp, "when": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": commit, "bin": str(yr_bin),
                 "command": ".venv/bin/python bench/workers.py" + "".join(f" {shlex.quote(x)}" for x in sys.argv[1:]),
                 "machine": f"{nproc} × {machine}", "redis": redis_version,
                 "layout": (f"mock + wrk + client on CPU {args.load_cpus or 'any'}; --workers 1 on CPU "
                            f"{args.gw_cpus or 'any'}; --workers 2 on CPUs {args.gw2_cpus or 'all'}."),
                 "database": args.database_url or "SQLite (WAL), a fresh file per gateway",
                 "elapsed_s": time.monotonic() - t_start, "redis_cleanup": cleaned, "tag": tag})
    a = analyse(out, args)
    text = report(out, a, meta, args)
    (out_dir / "report.md").write_text(text)
    (out_dir / "data.json").write_text(json.dumps({"meta": meta, "args": vars(args), "analysis": a, **out},
                                                  default=str))
    print(text)
    if not args.no_md:
        print(f"updated {write_md(text)}")
    print(f"written to {out_dir}/report.md (+ data.json; configs and logs in {work})")
    bad = (any(not e["exact"] for e in out.get("exact", [])) or any(b["errors"] for b in out.get("blocks", []))
           or any(not v["complete"] for v in out.get("ledger", {}).values()))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
