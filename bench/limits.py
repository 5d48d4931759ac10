#!/usr/bin/env python3
"""What per-key rate limits and budgets add to a request, with the in-process and the Redis backend, side by side.

    .venv/bin/python bench/limits.py                      # working tree's .venv, 8 rounds (~6 min)
    .venv/bin/python bench/limits.py --ref HEAD           # a commit (git archive -> its own venv)
    .venv/bin/python bench/limits.py --rounds 3 --duration 1 --c1-requests 500      # a quick look (~2 min)
    .venv/bin/python bench/limits.py --ref HEAD --profile redis                     # + py-spy of the Redis gateway

The question (issue #5, "Benchmark"): the overhead added by limits + budget checks with the in-process and the
Redis backends; targets: under 0.3 ms added median latency in process, under 1 ms with Redis on loopback.

Set-up. The shared mock upstream (`../shared/bench/mock_upstream.py`: a fixed chat.completion with usage 12 + 20
tokens, no delay) and this client (aiohttp on uvloop, closed loop) are pinned to CPU 0; two gateways
(`yourouter serve`, production defaults: log level info, access log on, SQLite ledger) are pinned to CPU 1 and run
at the same time, idle while the other is measured. Both have one deployment of model `m` on the mock, a `prices`
entry for `m` (so reservations and costs are computed) and three static keys:

    free       no limits: admission is skipped (`key.limited` is false)
    rates      rpm 10,000,000, tpm 10,000,000,000, max_concurrency 10,000: the windows and the concurrency slot
    limited    the same + budget_usd 1,000,000 (budget_period day): windows, slot and a budget reservation

Nothing is ever refused (every response is checked: HTTP 200, the mock's answer, and `x-ratelimit-*` headers on
exactly the limited keys). The gateways differ only in `limits.backend`: `memory`, and `redis://...` (default
`redis://127.0.0.1:6379/0`). Key names carry a tag unique to the run (`limited-<tag>`), so Redis counters
(`yr:*:key:static:<name>`) never carry over between runs; they are deleted at the end.

Rounds. Each round measures every cell (backend × key) once, in an order reversed every other round, so slow
drifts and noisy stretches of this shared machine hit every cell alike:

    c=1     per backend, 3 × --c1-requests requests one after another (after 3 × --c1-warmup), the keys taking
            turns request by request (free, rates, limited, free, ...): latency p50 and p99 per key; the
            differences between keys are thereby immune to noise lasting longer than a request or two
    c=N     for each --concurrency N (10, 50): a --duration s closed-loop block (after a 0.3 s warm-up):
            throughput, latency p50, and CPU per request of the gateway (its threads' run time from
            /proc/<pid>/task/*/schedstat, ns; utime+stime from /proc/<pid>/stat is kept in the raw data too)
            and of redis-server (not ours and not pinned: it runs on either CPU)

Before each round the script waits (up to --quiet-wait s) for a second in which neither CPU is busier than
--quiet-below %. Figures are medians over the rounds of the per-round figures. Added latency = p50(limited) −
p50(free) of the same backend in the same round (and rates − free); the CPU ratio = CPU/request(limited) /
CPU/request(free), per round.
Each cell also records "others' load": the CPU time (both CPUs) used by processes other than ours and Redis.

Before the rounds, `bench/limits_micro.py` runs with the measured venv on CPU 1: the engine alone (admit + settle,
no HTTP) for both backends, so the end-to-end numbers can be read against it.

Writes bench/results/limits-<stamp>/{report.md, data.json, micro.json, configs and logs} and replaces the generated
part of bench/LIMITS.md (between its `generated` markers; the rest of that file is kept) unless --no-md.
Only 127.0.0.1; every loop is bounded; the processes it starts are ended on exit, error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from _common import exit_on_signals, install_uvloop, make_out_dirs, pin_load, resolve_yourouter, write_marked
from chaos import Proc, cpu_busy, cpu_seconds, free_port, wait_quiet, wait_ready

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HZ = os.sysconf("SC_CLK_TCK")
NAN = float("nan")
KEYS = ("free", "rates", "limited")
TARGETS_MS = {"memory": 0.3, "redis": 1.0}
LIMITS = {"rpm": 10_000_000, "tpm": 10_000_000_000, "max_concurrency": 10_000}
BUDGET_USD = 1_000_000
PRICE = {"input": 2.5, "output": 10}  # USD per 1M tokens: the mock's 12 + 20 tokens cost 0.00023 USD
MD_BEGIN, MD_END = "<!-- generated:begin (bench/limits.py) -->", "<!-- generated:end -->"


def stat_cpu(pid: int) -> float:
    """utime + stime of a process (all threads), seconds (10 ms ticks)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ
    except (OSError, IndexError, ValueError):
        return NAN


def total_busy() -> float:
    return sum(busy for busy, _steal in cpu_busy().values())


def redis_pid(url: str) -> int | None:
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2)
        try:
            return int(client.info("server")["process_id"])
        finally:
            client.close()
    except Exception:
        return None


def cleanup_redis(url: str, tag: str) -> int:
    """Deletes the keys the run's key names created (yr:<kind>:key:static:<role>-<tag>)."""
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=5)
        try:
            names = [k for k in client.scan_iter(match=f"yr:*:key:static:*-{tag}", count=1000)]
            if names:
                client.delete(*names)
            return len(names)
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        print(f"could not clean Redis up: {exc}", file=sys.stderr)
        return -1


def key_secret(role: str, tag: str) -> str:
    return f"sk-limits-{role}-{tag}"


def gateway_config(work: Path, variant: str, backend: str, upstream_port: int, tag: str) -> Path:
    limits = ", ".join(f"{k}: {v}" for k, v in LIMITS.items())
    config = work / f"{variant}.yaml"
    config.write_text(f"""\
host: 127.0.0.1
database_url: "sqlite:///{work}/{variant}.db"
limits: {{backend: "{backend}"}}
prices: {{m: {{input: {PRICE['input']}, output: {PRICE['output']}}}}}
keys:
  - {{key: "{key_secret('free', tag)}", name: "free-{tag}"}}
  - {{key: "{key_secret('rates', tag)}", name: "rates-{tag}", {limits}}}
  - {{key: "{key_secret('limited', tag)}", name: "limited-{tag}", {limits},
      budget_usd: {BUDGET_USD}, budget_period: day}}
providers:
  - {{name: mock, vendor: mock, type: openai, base_url: "http://127.0.0.1:{upstream_port}/v1", api_key: sk-up,
      models: [m]}}
""")
    return config


# ----------------------------------------------------------------------------------------------- load

class Checker:
    """Every response: 200, the mock's chat.completion, x-ratelimit-* headers on limited keys only."""

    def __init__(self) -> None:
        self.errors: dict[str, int] = {}
        self.first: dict[str, str] = {}

    def check(self, cell: str, status: int, payload: bytes, headers: object, limited: bool) -> None:
        problem = None
        if status != 200:
            problem = f"HTTP {status}: {payload[:200]!r}"
        elif b'"chat.completion"' not in payload:
            problem = f"not a chat.completion: {payload[:200]!r}"
        elif limited != ("x-ratelimit-limit-requests" in headers):  # type: ignore[operator]
            problem = f"x-ratelimit headers {'missing' if limited else 'present'}"
        if problem is not None:
            self.errors[cell] = self.errors.get(cell, 0) + 1
            self.first.setdefault(cell, problem)


async def one(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], checker: Checker,
              cell: str, limited: bool) -> int:
    start = time.perf_counter_ns()
    try:
        async with session.post(url, data=body, headers=headers) as response:
            payload = await response.read()
            status = response.status
            hdrs = response.headers
    except (TimeoutError, aiohttp.ClientError) as exc:
        payload, status, hdrs = f"{type(exc).__name__}: {exc}".encode(), -1, {}
    end = time.perf_counter_ns()
    checker.check(cell, status, payload, hdrs, limited)
    return end - start


async def closed_loop(session: aiohttp.ClientSession, url: str, headers: dict[str, str], checker: Checker,
                      cell: str, limited: bool, concurrency: int, *, requests: int | None = None,
                      duration_s: float | None = None, timeout_s: float = 120.0) -> list[int]:
    """`concurrency` workers, each sending the next request when its last one is answered, until `requests` were
    sent or `duration_s` passed (bounded by timeout_s either way). Returns the latencies, ns."""
    out: list[int] = []
    end = time.monotonic() + (duration_s if duration_s is not None else timeout_s)
    hard_end = time.monotonic() + timeout_s
    counter = iter(range(requests if requests is not None else 10**9))

    async def worker() -> None:
        for n in counter:
            now = time.monotonic()
            if now > end or now > hard_end:
                return
            body = b'{"model":"m","messages":[{"role":"user","content":"limits-bench %07d"}]}' % n
            out.append(await one(session, url, body, headers, checker, cell, limited))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


def pct(ns: list[int], q: float) -> float:
    """Nearest-rank percentile of ns values, in ms."""
    if not ns:
        return NAN
    xs = sorted(ns)
    return xs[min(len(xs) - 1, max(0, int(q / 100 * len(xs) + 0.999999) - 1))] / 1e6


class Gateway:
    def __init__(self, variant: str, proc: Proc, port: int) -> None:
        self.variant, self.proc, self.port = variant, proc, port
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"


async def measure_cell(session: aiohttp.ClientSession, gw: Gateway, role: str, tag: str, checker: Checker,
                       concurrency: int, args: argparse.Namespace, rpid: int | None, ours: list[int]) -> dict:
    headers = {"authorization": f"Bearer {key_secret(role, tag)}", "content-type": "application/json"}
    cell = f"{gw.variant}/{role}/c{concurrency}"
    limited = role != "free"
    await closed_loop(session, gw.url, headers, checker, cell, limited, concurrency, duration_s=0.3)
    pid = gw.proc.pid
    sched0, stat0 = cpu_seconds(pid), stat_cpu(pid)
    redis0 = cpu_seconds(rpid) if rpid else NAN
    ours0 = sum(cpu_seconds(p) for p in ours)
    busy0 = total_busy()
    t0 = time.perf_counter()
    lat = await closed_loop(session, gw.url, headers, checker, cell, limited, concurrency, duration_s=args.duration)
    wall = time.perf_counter() - t0
    gw_cpu, gw_stat = cpu_seconds(pid) - sched0, stat_cpu(pid) - stat0
    redis_cpu = cpu_seconds(rpid) - redis0 if rpid else NAN
    ours_cpu = sum(cpu_seconds(p) for p in ours) - ours0 + gw_cpu
    others = (total_busy() - busy0 - ours_cpu - (redis_cpu if redis_cpu == redis_cpu else 0.0)) / wall * 100
    n = len(lat)
    return {"variant": gw.variant, "key": role, "c": concurrency, "n": n, "wall_s": wall, "rps": n / wall,
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
            "gw_cpu_us": gw_cpu / n * 1e6 if n else NAN, "gw_stat_cpu_us": gw_stat / n * 1e6 if n else NAN,
            "gw_busy": gw_cpu / wall, "redis_cpu_us": redis_cpu / n * 1e6 if n and rpid else NAN,
            "others_pct": max(0.0, others), "latencies_us": []}


async def measure_c1(session: aiohttp.ClientSession, gw: Gateway, tag: str, checker: Checker, rnd: int,
                     args: argparse.Namespace, rpid: int | None, ours: list[int]) -> list[dict]:
    """c=1 on one gateway, the keys taking turns request by request (free, rates, limited, free, ...; the first key
    rotates with the round), so that any noise hits the three keys alike. Gateway CPU is per block (all keys)."""
    roles = KEYS[rnd % len(KEYS):] + KEYS[:rnd % len(KEYS)]
    headers = {role: {"authorization": f"Bearer {key_secret(role, tag)}", "content-type": "application/json"}
               for role in KEYS}
    lat: dict[str, list[int]] = {role: [] for role in KEYS}

    async def run(n: int, keep: bool) -> None:
        for i in range(n * len(roles)):
            role = roles[i % len(roles)]
            body = b'{"model":"m","messages":[{"role":"user","content":"limits-bench %07d"}]}' % i
            x = await one(session, gw.url, body, headers[role], checker, f"{gw.variant}/{role}/c1", role != "free")
            if keep:
                lat[role].append(x)

    await run(args.c1_warmup, False)
    pid = gw.proc.pid
    sched0, stat0 = cpu_seconds(pid), stat_cpu(pid)
    redis0 = cpu_seconds(rpid) if rpid else NAN
    ours0 = sum(cpu_seconds(p) for p in ours)
    busy0 = total_busy()
    t0 = time.perf_counter()
    await run(args.c1_requests, True)
    wall = time.perf_counter() - t0
    gw_cpu, gw_stat = cpu_seconds(pid) - sched0, stat_cpu(pid) - stat0
    redis_cpu = cpu_seconds(rpid) - redis0 if rpid else NAN
    ours_cpu = sum(cpu_seconds(p) for p in ours) - ours0 + gw_cpu
    others = (total_busy() - busy0 - ours_cpu - (redis_cpu if redis_cpu == redis_cpu else 0.0)) / wall * 100
    total = sum(len(v) for v in lat.values())
    return [{"variant": gw.variant, "key": role, "c": 1, "n": len(xs), "wall_s": wall, "rps": total / wall,
             "p50_ms": pct(xs, 50), "p99_ms": pct(xs, 99), "gw_cpu_us": NAN, "gw_stat_cpu_us": NAN,
             "gw_block_cpu_us": gw_cpu / total * 1e6, "gw_block_stat_cpu_us": gw_stat / total * 1e6,
             "gw_busy": gw_cpu / wall, "redis_cpu_us": redis_cpu / total * 1e6 if rpid else NAN,
             "others_pct": max(0.0, others), "latencies_us": [x // 1000 for x in xs]} for role, xs in lat.items()]


async def run_rounds(args: argparse.Namespace, gateways: list[Gateway], tag: str, rpid: int | None,
                     ours: list[int], out: Path) -> list[dict]:
    checker = Checker()
    cells: list[dict] = []
    conc = [1, *args.concurrency]
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    sessions = {}
    try:
        for gw in gateways:
            connector = aiohttp.TCPConnector(limit=max(conc), limit_per_host=max(conc))
            sessions[gw.variant] = aiohttp.ClientSession(connector=connector, timeout=timeout,
                                                         auto_decompress=False)
        order = [(gw, role) for gw in gateways for role in KEYS]
        for rnd in range(1, args.rounds + 1):
            waited, load = wait_quiet(args.quiet_wait, args.quiet_below) if args.quiet_wait > 0 else (0.0, NAN)
            started = time.monotonic()
            this = order if rnd % 2 else order[::-1]
            new: list[dict] = []
            for gw in (gateways if rnd % 2 else gateways[::-1]):
                new += await measure_c1(sessions[gw.variant], gw, tag, checker, rnd, args, rpid, ours)
            for c in args.concurrency:
                for gw, role in this:
                    if not gw.proc.alive():
                        raise RuntimeError(f"the {gw.variant} gateway died:\n{gw.proc.tail()}")
                    new.append(await measure_cell(sessions[gw.variant], gw, role, tag, checker, c, args, rpid,
                                                  ours))
            for cell in new:
                cell["round"] = rnd
                cell["quiet_waited_s"] = waited
            cells += new
            mine = [x for x in cells if x["round"] == rnd]
            parts = []
            for gw in gateways:
                p50s = [f"{x['p50_ms']:.3f}" for x in mine if x["variant"] == gw.variant and x["c"] == 1]
                parts.append(f"{gw.variant} " + "/".join(p50s))
            summary = "  ".join(parts)
            print(f"round {rnd}/{args.rounds}: c=1 p50 free/rates/limited ms  {summary}  "
                  f"others' load {statistics.median(x['others_pct'] for x in mine):.0f} %  "
                  f"errors {sum(checker.errors.values())}  ({time.monotonic() - started:.0f} s; waited {waited:.0f} s "
                  f"for a quiet second)", flush=True)
            with open(out / "rounds.jsonl", "a") as f:
                for x in mine:
                    f.write(json.dumps(x) + "\n")
    finally:
        for s in sessions.values():
            await s.close()
    if checker.errors:
        print(f"ERRORS: {checker.errors}; first: {checker.first}", file=sys.stderr)
    return cells, checker  # type: ignore[return-value]


async def key_reports(gateways: list[Gateway], tag: str) -> dict[str, dict]:
    """GET /v1/key of the limited key on each gateway: the counters after the run (a sanity check)."""
    out = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for gw in gateways:
            try:
                async with session.get(f"http://127.0.0.1:{gw.port}/v1/key",
                                       headers={"authorization": f"Bearer {key_secret('limited', tag)}"}) as r:
                    out[gw.variant] = await r.json(content_type=None)
            except Exception as exc:  # noqa: BLE001
                out[gw.variant] = {"error": str(exc)}
    return out


async def profile_block(args: argparse.Namespace, gw: Gateway, tag: str, out: Path) -> dict:
    """py-spy record (--gil, raw, line numbers) of one gateway while the limited key runs --profile-seconds at
    c=--profile-concurrency, then the same for the free key: where the extra CPU goes."""
    py_spy = Path(sys.executable).parent / "py-spy"
    binary = str(py_spy) if py_spy.exists() else shutil.which("py-spy")
    if binary is None:
        raise SystemExit("--profile needs py-spy (.venv/bin/pip install py-spy)")
    result = {}
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    for role in ("limited", "free"):
        name = f"profile-{gw.variant}-{role}"
        prof = Proc([binary, "record", "--pid", str(gw.proc.pid), "--rate", "250", "--format", "raw", "--gil",
                     "--full-filenames", "-o", str(out / f"{name}.txt")], out / f"{name}.log", args.load_cpus)
        time.sleep(1.0)
        headers = {"authorization": f"Bearer {key_secret(role, tag)}", "content-type": "application/json"}
        checker = Checker()
        connector = aiohttp.TCPConnector(limit=args.profile_concurrency)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
            cpu0, t0 = cpu_seconds(gw.proc.pid), time.perf_counter()
            lat = await closed_loop(session, gw.url, headers, checker, name, role != "free",
                                    args.profile_concurrency, duration_s=args.profile_seconds)
            wall, cpu = time.perf_counter() - t0, cpu_seconds(gw.proc.pid) - cpu0
        try:
            os.killpg(prof.pid, signal.SIGINT)
            prof.p.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        prof.stop()
        result[role] = {"n": len(lat), "rps": len(lat) / wall, "gw_cpu_us": cpu / max(1, len(lat)) * 1e6,
                        "file": f"{name}.txt", "errors": checker.errors}
        print(f"profiled {gw.variant}/{role}: {len(lat)} requests, {cpu / max(1, len(lat)) * 1e6:.0f} µs CPU "
              f"each (with py-spy attached)", flush=True)
    return result


# ----------------------------------------------------------------------------------------------- analysis

def med(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else NAN


def rng(xs: list[float], f: str = ".3f") -> str:
    xs = [x for x in xs if x == x]
    return f"{min(xs):{f}} … {max(xs):{f}}" if xs else "–"


def fmt(x: float, f: str = ".3f") -> str:
    return "–" if x != x else f"{x:{f}}"


def analyse(cells: list[dict], variants: list[str], conc: list[int]) -> dict:
    by: dict[tuple[str, str, int], list[dict]] = {}
    for c in cells:
        by.setdefault((c["variant"], c["key"], c["c"]), []).append(c)
    a: dict = {"cells": {}, "added": {}, "cpu": {},
               "others_by_round": {r: med([x["others_pct"] for x in cells if x["round"] == r])
                                   for r in sorted({x["round"] for x in cells})}}
    for (v, k, c), xs in by.items():
        metrics = ("rps", "p50_ms", "p99_ms", "gw_cpu_us", "gw_stat_cpu_us", "redis_cpu_us", "others_pct", "gw_busy",
                   "gw_block_cpu_us")
        a["cells"][f"{v}/{k}/c{c}"] = {m: med([x.get(m, NAN) for x in xs]) for m in metrics} | {
            "n": sum(x["n"] for x in xs), "rounds": len(xs)}
    for v in variants:
        for k in ("rates", "limited"):
            # per round: latency difference at c=1, CPU ratio and throughput ratio at every c
            rounds = sorted({x["round"] for x in cells})
            d50, d99, pooled = [], [], []
            for r in rounds:
                base = [x for x in by.get((v, "free", 1), []) if x["round"] == r]
                test = [x for x in by.get((v, k, 1), []) if x["round"] == r]
                if base and test:
                    d50.append(test[0]["p50_ms"] - base[0]["p50_ms"])
                    d99.append(test[0]["p99_ms"] - base[0]["p99_ms"])
            free_all = [u for x in by.get((v, "free", 1), []) for u in x["latencies_us"]]
            test_all = [u for x in by.get((v, k, 1), []) for u in x["latencies_us"]]
            if free_all and test_all:
                pooled = [statistics.median(test_all) / 1000 - statistics.median(free_all) / 1000]
            a["added"][f"{v}/{k}"] = {"d50_ms": med(d50), "d50_range": rng(d50), "d50_rounds": d50,
                                      "d99_ms": med(d99), "d99_range": rng(d99), "pooled_d50_ms": med(pooled),
                                      "rounds_under_target": sum(d < TARGETS_MS[v] for d in d50)}
            for c in conc:
                ratio, dcpu, rps_ratio, rcpu = [], [], [], []
                for r in rounds:
                    base = [x for x in by.get((v, "free", c), []) if x["round"] == r]
                    test = [x for x in by.get((v, k, c), []) if x["round"] == r]
                    if base and test:
                        ratio.append(test[0]["gw_cpu_us"] / base[0]["gw_cpu_us"])
                        dcpu.append(test[0]["gw_cpu_us"] - base[0]["gw_cpu_us"])
                        rps_ratio.append(test[0]["rps"] / base[0]["rps"])
                        rcpu.append(test[0]["redis_cpu_us"] - base[0]["redis_cpu_us"])
                a["cpu"][f"{v}/{k}/c{c}"] = {"ratio": med(ratio), "ratio_range": rng(ratio, ".2f"),
                                             "d_us": med(dcpu), "d_range": rng(dcpu, ".0f"),
                                             "rps_ratio": med(rps_ratio), "rps_ratio_range": rng(rps_ratio, ".2f"),
                                             "redis_d_us": med(rcpu)}
    return a


def micro_table(micro: dict) -> list[str]:
    lines = ["| backend | measured | admit p50 | settle p50 | admit+settle p50 | p99 | CPU per cycle | "
             "Redis's time per script |",
             "|---|---|---|---|---|---|---|---|"]
    names = {"memory": "memory", "redis": "redis (limits/resp.py client)",
             "redis-py": "redis: the previous backend on redis-py (c399b26), same run"}
    for b in names:
        d = micro.get(b)
        if not d:
            continue
        for label, what in (("engine", "backend.admit + settle (one Charge)"),
                            ("admission", "Admission.admit + rate_headers + settle (the pipeline's calls)")):
            x = d[label]
            server = x.get("server_us_per_evalsha")
            split = (f" (admit {x['server_us_admit']:.0f}, settle {x['server_us_settle']:.0f} µs)"
                     if "server_us_admit" in x else "")
            lines.append(f"| {names[b]} | {what} | {x['admit']['p50_us']:.1f} µs | {x['settle']['p50_us']:.1f} µs | "
                         f"{x['cycle']['p50_us']:.1f} µs | {x['cycle']['p99_us']:.1f} µs | "
                         f"{x['cpu_us_per_cycle']:.1f} µs | {'' if server is None else f'{server:.1f} µs{split}'} |")
        lines.append(f"| {names[b]} | Admission.admit of the free key (returns at once) | "
                     f"{d['free']['admit']['p50_us']:.2f} µs | | | | | |")
        if "ping" in d:
            lines.append(f"| {names[b]} | one PING through the same client (round-trip floor) | "
                         f"{d['ping']['p50_us']:.1f} µs | | | {d['ping']['p99_us']:.1f} µs | | |")
        for k, x in d.items():
            if k.startswith("admission_c"):
                lines.append(f"| {names[b]} | the admission cycle, {k.split('_c')[1]} loops at once | "
                             f"{x['admit']['p50_us']:.0f} µs | {x['settle']['p50_us']:.0f} µs | "
                             f"{x['cycle']['p50_us']:.0f} µs | {x['cycle']['p99_us']:.0f} µs | "
                             f"{x['cpu_us_per_cycle']:.1f} µs ({x['cycles_per_s']:,.0f} cycles/s) | |")
    return lines


def report(a: dict, micro: dict, meta: dict, args: argparse.Namespace, variants: list[str], conc: list[int],
           errors: dict, keyrep: dict, prof: dict) -> str:
    L = [f"Run {meta['stamp']} · {meta['when']} · commit {meta['commit']}", "",
         f"Command: `{meta['command']}` ({meta['elapsed_s']:.0f} s)", "",
         f"Machine: {meta['machine']}; {meta['pinning']} redis-server {meta['redis_version']} (a system service, "
         "not pinned: it runs on either CPU). This machine is shared with other engineers' work: "
         f"others' load during the cells, median {meta['others_median']:.0f} % of one CPU (max "
         f"{meta['others_max']:.0f} %).", "",
         f"Each of {args.rounds} rounds: c=1 {args.c1_requests} requests per key and backend (after "
         f"{args.c1_warmup}), the three keys taking turns request by request; then c="
         f"{', '.join(map(str, args.concurrency))} for {args.duration:g} s per cell (backend × key); backends and "
         "cells in an order reversed every other round. Figures: medians over rounds (range over rounds).", "",
         "## Targets (issue #5)", "",
         "| backend | added p50 at c=1, limited − free (median of rounds) | range over rounds | rounds under target "
         "| pooled medians | target | result |",
         "|---|---|---|---|---|---|---|"]
    for v in variants:
        x = a["added"][f"{v}/limited"]
        t = TARGETS_MS[v]
        met = "met" if x["d50_ms"] < t else "**not met**"
        L.append(f"| {v} | **{x['d50_ms'] * 1000:+.0f} µs** | {x['d50_range']} ms | {x['rounds_under_target']} of "
                 f"{len(x['d50_rounds'])} | {x['pooled_d50_ms'] * 1000:+.0f} µs | < {t:g} ms | {met} |")
    rounds = sorted({r for x in a["added"].values() for r in range(len(x["d50_rounds"]))})
    if rounds:
        L += ["", "Per round (added p50 at c=1, limited − free; others' load = median over the round's cells, % of one "
              "CPU):", "", "| round | others' load | " + " | ".join(variants) + " |",
              "|---|---|" + "---|" * len(variants)]
        for r in rounds:
            load = a["others_by_round"].get(r + 1, NAN)
            L.append(f"| {r + 1} | {fmt(load, '.0f')} % | " + " | ".join(
                f"{a['added'][f'{v}/limited']['d50_rounds'][r] * 1000:+.0f} µs"
                if r < len(a["added"][f"{v}/limited"]["d50_rounds"]) else "–" for v in variants) + " |")
    L += ["", "## Latency at c=1", "",
          "The keys take turns request by request. Gateway CPU at c=1 is per request over all three keys (the "
          "loop idles between requests, so it is higher than at c=10).", "",
          "| backend | key | p50 ms | p99 ms | added p50 vs free | added p99 vs free |",
          "|---|---|---|---|---|---|"]
    for v in variants:
        for k in KEYS:
            c = a["cells"].get(f"{v}/{k}/c1")
            if not c:
                continue
            add = a["added"].get(f"{v}/{k}")
            d50 = "" if add is None else f"{add['d50_ms'] * 1000:+.0f} µs ({add['d50_range']} ms)"
            d99 = "" if add is None else f"{add['d99_ms'] * 1000:+.0f} µs"
            L.append(f"| {v} | {k} | {fmt(c['p50_ms'])} | {fmt(c['p99_ms'])} | {d50} | {d99} |")
        block = a["cells"].get(f"{v}/free/c1", {}).get("gw_block_cpu_us", NAN)
        L.append(f"| {v} | (all three) | | | | gateway CPU {fmt(block, '.0f')} µs/req |")
    L += ["", "## Throughput and CPU per request", "",
          "Gateway CPU = its threads' run time (schedstat) per request; the gateway's core is saturated at these "
          "concurrencies, so throughput ≈ 1 / CPU per request. Ratios are limited (or rates) ÷ free, per round.", "",
          "| backend | c | key | req/s | p50 ms | gateway CPU µs/req | CPU ratio vs free | Δ CPU µs/req | "
          "req/s ratio | redis-server CPU µs/req |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for v in variants:
        for c in args.concurrency:
            for k in KEYS:
                x = a["cells"].get(f"{v}/{k}/c{c}")
                if not x:
                    continue
                r = a["cpu"].get(f"{v}/{k}/c{c}")
                ratio = "" if r is None else f"{r['ratio']:.2f}× ({r['ratio_range']})"
                d = "" if r is None else f"{r['d_us']:+.0f} ({r['d_range']})"
                rr = "" if r is None else f"{r['rps_ratio']:.2f} ({r['rps_ratio_range']})"
                L.append(f"| {v} | {c} | {k} | {x['rps']:,.0f} | {fmt(x['p50_ms'], '.2f')} | "
                         f"{fmt(x['gw_cpu_us'], '.0f')} | {ratio} | {d} | {rr} | "
                         f"{fmt(x['redis_cpu_us'], '.0f') if v == 'redis' else '–'} |")
    L += ["", "## The engine alone (bench/limits_micro.py, pinned to the gateway's CPU, uvloop)", ""]
    L += micro_table(micro) if micro else ["(not run)"]
    L += ["", "## Checks", "",
          f"Errors (non-200, wrong body, x-ratelimit headers missing on a limited key or present on the free "
          f"one): {sum(errors.values())}" + (f" — {errors}" if errors else "") + "."]
    for v, rep in keyrep.items():
        if "error" in rep:
            L.append(f"`GET /v1/key` ({v}): {rep['error']}")
        else:
            L.append(f"`GET /v1/key` of the limited key after the run ({v}): requests {rep.get('requests')}, "
                     f"spend_usd {rep.get('spend_usd')}, remaining_usd {rep.get('remaining_usd')}.")
    if meta.get("redis_cleanup") is not None:
        L.append(f"Redis keys of this run deleted at the end: {meta['redis_cleanup']}.")
    if prof:
        L += ["", "## Profile (py-spy attached; figures perturbed)", ""]
        for v, p in prof.items():
            for role, x in p.items():
                L.append(f"* {v}/{role}: {x['n']} requests at c={args.profile_concurrency}, {x['gw_cpu_us']:.0f} µs "
                         f"gateway CPU each; stacks in `{x['file']}`")
    return "\n".join(L) + "\n"


def write_md(text: str, meta: dict) -> Path:
    return write_marked(HERE / "LIMITS.md", MD_BEGIN, MD_END, "## Last run (written by bench/limits.py)", text,
                        "# Limits and budgets: what they add to a request\n\n"
                        "`.venv/bin/python bench/limits.py --ref HEAD` (see its docstring for the method).\n\n")


# ----------------------------------------------------------------------------------------------- main

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", help="install this commit (git archive) into ${TMPDIR:-/tmp}/yourouter-bench-<sha>")
    p.add_argument("--yourouter-bin", help="default: <repo>/.venv/bin/yourouter, or the one --ref installs")
    p.add_argument("--variants", nargs="+", default=["memory", "redis"], choices=["memory", "redis"])
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--rounds", type=int, default=8, help="rounds over every cell (8)")
    p.add_argument("--c1-requests", type=int, default=1000, help="measured c=1 requests per cell and round (1000)")
    p.add_argument("--c1-warmup", type=int, default=50, help="c=1 warm-up requests per cell and round (50)")
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",") if x], default=[10, 50],
                   help="throughput concurrencies (10,50; '' = none)")
    p.add_argument("--duration", type=float, default=2.0, help="seconds per throughput cell and round (2)")
    p.add_argument("--warmup-s", type=float, default=3.0, help="warm-up per gateway and key before round 1, s (3)")
    p.add_argument("--quiet-wait", type=float, default=15.0, help="before each round, wait up to this many s for "
                   "a second in which no CPU is busier than --quiet-below %% (0 = do not wait; 15)")
    p.add_argument("--quiet-below", type=float, default=15.0)
    p.add_argument("--log-level", default="info", help="gateway --log-level (info: production, access log on)")
    p.add_argument("--gw-cpus", default="1", help="taskset CPU for the gateways ('' = no pinning)")
    p.add_argument("--load-cpus", default="0", help="taskset CPU for the mock and this client ('' = none)")
    p.add_argument("--mock", default=str(ROOT.parent / "shared" / "bench" / "mock_upstream.py"))
    p.add_argument("--request-timeout", type=float, default=30.0)
    p.add_argument("--no-micro", action="store_true", help="skip bench/limits_micro.py")
    p.add_argument("--micro-iterations", type=int, default=2000, help="per client and round (3 rounds)")
    p.add_argument("--profile", nargs="*", choices=["memory", "redis"], default=None,
                   help="after the rounds, py-spy record these gateways (limited, then free key)")
    p.add_argument("--profile-seconds", type=float, default=10.0)
    p.add_argument("--profile-concurrency", type=int, default=10)
    p.add_argument("--no-md", action="store_true", help="do not touch bench/LIMITS.md")
    p.add_argument("--out", help="output dir (default bench/results/limits-<stamp>)")
    args = p.parse_args()
    if args.rounds < 1 or args.c1_requests < 1:
        p.error("--rounds and --c1-requests must be positive")
    t_start = time.monotonic()

    yr_bin, commit = resolve_yourouter(args, p)
    yr_python = yr_bin.parent / "python"
    if not Path(args.mock).exists():
        p.error(f"mock upstream not found at {args.mock} (--mock)")
    nproc = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or os.cpu_count() or 1)
    pin_load(args, nproc)
    pinning = (f"pinned (taskset): gateways on CPU {args.gw_cpus}, mock + client on CPU {args.load_cpus} "
               f"(nproc {nproc})." if args.gw_cpus else f"NOT pinned (nproc {nproc}).")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tag = f"{stamp}-{os.getpid()}"
    out, work = make_out_dirs(args.out, "limits", stamp)
    variants = list(dict.fromkeys(args.variants))
    rpid = redis_pid(args.redis_url) if "redis" in variants else None
    if "redis" in variants and rpid is None:
        p.error(f"Redis not reachable at {args.redis_url}")

    exit_on_signals()
    install_uvloop()

    upstream_port = free_port()
    backends = {"memory": "memory", "redis": args.redis_url}
    configs = {v: gateway_config(work, v, backends[v], upstream_port, tag) for v in variants}
    micro: dict = {}
    if not args.no_micro:
        print("engine micro-benchmark ...", flush=True)
        cmd = [str(yr_python), str(HERE / "limits_micro.py"), "--config", str(configs[variants[0]]),
               "--key", f"limited-{tag}", "--free-key", f"free-{tag}", "--iterations", str(args.micro_iterations),
               "--json", str(out / "micro.json")]
        if "redis" in variants:
            cmd += ["--redis", args.redis_url]
        if args.gw_cpus:
            cmd = ["taskset", "-c", args.gw_cpus, *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            print(f"micro-benchmark failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        else:
            micro = json.loads((out / "micro.json").read_text())
            print("\n".join(micro_table(micro)), flush=True)

    procs: list[Proc] = []
    gateways: list[Gateway] = []
    prof: dict = {}
    cells: list[dict] = []
    errors: dict = {}
    keyrep: dict = {}
    cleaned = None
    try:
        mock = Proc([sys.executable, args.mock, "--port", str(upstream_port)], work / "mock.log", args.load_cpus)
        procs.append(mock)
        env = {k: v for k, v in os.environ.items() if not k.startswith("YOUROUTER_")}
        for v in variants:
            port = free_port()
            proc = Proc([str(yr_bin), "serve", "--config", str(configs[v]), "--port", str(port), "--log-level",
                         args.log_level], work / f"{v}.gateway.log", args.gw_cpus, env)
            procs.append(proc)
            gateways.append(Gateway(v, proc, port))

        async def go() -> None:
            nonlocal cells, errors, keyrep, prof
            await wait_ready(f"http://127.0.0.1:{upstream_port}/health", mock)
            for gw in gateways:
                await wait_ready(f"http://127.0.0.1:{gw.port}/health", gw.proc)
            # warm-up: every key on every gateway (first budget load, connection pools, code paths)
            checker = Checker()
            async with aiohttp.ClientSession(auto_decompress=False) as session:
                for gw in gateways:
                    for role in KEYS:
                        headers = {"authorization": f"Bearer {key_secret(role, tag)}",
                                   "content-type": "application/json"}
                        await closed_loop(session, gw.url, headers, checker, f"warm/{gw.variant}/{role}",
                                          role != "free", 10, duration_s=args.warmup_s / len(KEYS))
            if checker.errors:
                raise RuntimeError(f"warm-up failed: {checker.first}\n" + "\n".join(g.proc.tail() for g in gateways))
            ours = [mock.pid, os.getpid()]
            cells, chk = await run_rounds(args, gateways, tag, rpid, ours, out)  # type: ignore[misc]
            errors = chk.errors
            keyrep = await key_reports(gateways, tag)
            if args.profile is not None:
                for gw in gateways:
                    if gw.variant in (args.profile or variants):
                        prof[gw.variant] = await profile_block(args, gw, tag, out)

        asyncio.run(go())
    finally:
        for proc in reversed(procs):
            proc.stop()
        if "redis" in variants:
            cleaned = cleanup_redis(args.redis_url, tag)

    others = [c["others_pct"] for c in cells]
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
    meta = {"stamp": stamp, "when": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": commit, "bin": str(yr_bin),
            "command": ".venv/bin/python bench/limits.py" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:]),
            "machine": f"{nproc} × {machine}, Python {sys.version.split()[0]} (client)", "pinning": pinning,
            "redis_version": redis_version, "others_median": med(others) if others else NAN,
            "others_max": max(others) if others else NAN, "elapsed_s": time.monotonic() - t_start,
            "redis_cleanup": cleaned, "tag": tag}
    conc = [1, *args.concurrency]
    a = analyse(cells, variants, conc)
    text = report(a, micro, meta, args, variants, conc, errors, keyrep, prof)
    (out / "report.md").write_text(text)
    (out / "data.json").write_text(json.dumps({"meta": meta, "args": vars(args), "analysis": a, "micro": micro,
                                               "key_reports": keyrep, "profile": prof, "errors": errors,
                                               "cells": [{k: v for k, v in c.items() if k != "latencies_us"}
                                                         for c in cells]}, default=str))
    print(text)
    if not args.no_md:
        print(f"updated {write_md(text, meta)}")
    print(f"written to {out}/report.md (+ data.json, rounds.jsonl with every c=1 latency, micro.json; "
          f"configs and logs in {work})")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
