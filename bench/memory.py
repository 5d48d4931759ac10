#!/usr/bin/env python3
"""Gateway memory (issue #8): is RSS flat over a long mixed soak, and what do 1,000 open streams hold?

    .venv/bin/python bench/memory.py                                  # soak (600 s at 300 req/s), then streams
    .venv/bin/python bench/memory.py soak --duration 60 --warmup 15   # a quick look (~1.5 min)
    .venv/bin/python bench/memory.py streams --streams 1000           # ~1 min
    .venv/bin/python bench/memory.py --ref HEAD                       # a commit (git archive -> its own venv)

The targets (issue #8, "Benchmarks"): RSS after ready under 100 MB; flat (within 10 %) over a 10-minute soak at
300 requests/s mixing streaming, non-streaming, translated and failing-upstream requests; 1,000 concurrent open
streams held with RSS under 250 MB.

Set-up (like bench/chaos.py and bench/limits.py, whose process helpers this imports). The gateway
(`yourouter serve`, production defaults: `--log-level info`, access log on, SQLite ledger in the run's work dir)
is pinned to CPU 1 (`taskset`); the upstreams and this client (aiohttp on uvloop, one process) to CPU 0. One
static key with rpm 10,000,000, tpm 10,000,000,000, max_concurrency 100,000 and a daily budget of 100,000,000
USD (`limits.backend: memory`; every model has a `prices` entry, so each request reserves and settles a cost):
admission runs on every request and never refuses. Three deployments, one model name each:

    m        -> the shared mock (../shared/bench/mock_upstream.py): chat.completion, or an SSE stream
    m-500    -> bench/chaos_upstream.py's flaky port with --fail-rate 1: every attempt an HTTP 500 (OpenAI envelope)
    m-down   -> a closed port on 127.0.0.1: every attempt a connection refused

A failing request is retried by the gateway as it would be in production (max_attempts 3, the same deployment
again after a jittered backoff; its breaker opens after 3 failures and a cooling-down deployment is still tried
when it is the only one), and the client gets the final 5xx in its own dialect's error envelope.

Mode `soak`: the mock paces stream events 5 ms apart (--chunk-delay-ms; 23 events, ~120 ms a stream). An
open-loop client sends --rate requests/s (300) for --duration s (600), each request's class drawn at random
(seeded) by the --mix weights, sent at its scheduled time whatever the earlier requests are doing (latency is
measured from that time, so a slow gateway shows as latency, not as a lower rate; at most --max-inflight
requests are open, beyond that a request is skipped and counted):

    openai-json     POST /v1/chat/completions, model m              200, the mock's text
    openai-sse      the same with "stream": true                    200, the text, ends with data: [DONE]
    anthropic-sse   POST /v1/messages, stream, model m (Anthropic ->  200, message_start ... the text ...
                    OpenAI upstream, translated both ways)           message_stop, read to the end
    anthropic-json  POST /v1/messages, non-stream (weight 0 by default)
    fail-500        OpenAI non-stream to m-500                      5xx, {"error": {"message": ...}}
    fail-down       Anthropic stream to m-down                       5xx, {"type": "error", "error": {...}}

Every response is read to its end and checked; per class: sent, as expected, unexpected (first examples kept),
HTTP statuses, latency p50/p99. Every --sample-interval s (5) the gateway's memory is read from /proc (summed over
its process tree: VmRSS, RssAnon, RssFile, VmHWM; plus open fds, threads, CPU time) along with both CPUs' load.
Figures: RSS after ready (right after the first 200 of a real chat completion), after warm-up (the first sample at
or after --warmup s, default 60: "the first minute"), at the end of the load, the maximum, the slope of a
least-squares line through the post-warm-up samples (MB/min) and whether the end is within 10 % of the
post-warm-up value; then after the in-flight requests drained, and after --idle s (10) without load.

Mode `streams`: a mock of its own sends --stream-chunks content chunks (150) --stream-chunk-delay-ms apart (200),
so a stream lasts ~30 s. The client opens --streams (1000) streaming requests at --open-rate per s (250),
alternating the --stream-kinds (openai-sse: passthrough; anthropic-sse: translated), with no connection limit
(aiohttp connector limit 0; RLIMIT_NOFILE raised to its hard limit, which the children inherit). It waits until
every stream has received its first token, checks that none has ended (so all N are open at once; the gateway's
open fds are recorded too), samples RSS every second while all N stay open, then lets them finish and checks
every one (status, every chunk's text, the final event). Figures: RSS after ready, RSS with all N open (first
sample, max), the peak (VmHWM), (all open - ready) / N per stream, RSS after they ended.

The gateway's upstream pool (src/yourouter/pipeline/upstream.py) is an aiohttp TCPConnector with
limit=ProviderConfig.max_connections (default 0: no limit) and limit_per_host=0, so it does not cap 1,000
streams; uvicorn's listen backlog is 2048.

`--gc-log` (default on) starts the gateway as `<its venv>/bin/python -c <hook> serve ...`: `yourouter serve` plus a
gc callback that logs each generation-1 and -2 collection (time, objects collected, pause) to the gateway's log; it
only observes (the gateway's own `gc.freeze()` and thresholds apply). The report lists those collections beside
the RSS series, since reference cycles freed only by the cyclic GC show as RSS growth until the GC runs.

Writes bench/results/memory-<stamp>/{memory.json (the RSS time series and every figure, for charts), work/
(configs, logs, the SQLite ledger)} (`--out`) and the generated sections of bench/MEMORY.md (one per mode; a run
of one mode keeps the other's section; `--no-md` leaves the file alone). Only 127.0.0.1; every loop is bounded;
the processes it starts are ended (process group: SIGTERM, then SIGKILL) on exit, error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from chaos import Proc, cpu_busy, cpu_seconds, free_port, install_ref, wait_ready
from translation import _sse_events, tree_pids

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = Path(os.environ.get("SHARED_BENCH", str(ROOT.parent / "shared" / "bench")))
KEY = "sk-memory-0123456789abcdef"
NAN = float("nan")
MB = 1024 * 1024
PRICE = {"input": 2.5, "output": 10}  # USD per 1M tokens
TARGET_READY_MB, TARGET_FLAT, TARGET_STREAMS_MB = 100.0, 0.10, 250.0
MD_PATH = HERE / "MEMORY.md"
MARKS = {mode: (f"<!-- generated:{mode}:begin (bench/memory.py) -->", f"<!-- generated:{mode}:end -->")
         for mode in ("soak", "streams")}


def mock_words() -> tuple[str, ...]:
    """The shared mock's words (chunk i of a stream is WORDS[i % len(WORDS)]), read from the mock itself."""
    spec = importlib.util.spec_from_file_location("mock_upstream", SHARED / "mock_upstream.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.WORDS)


# ----------------------------------------------------------------------------------------------- /proc


def status_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[name] = int(value.split()[0])
                elif name == "Threads":
                    out[name] = int(value)
    except (OSError, ValueError):
        pass
    return out


def memory_of(root: int) -> dict[str, float]:
    """The process tree's memory, MB (VmRSS, RssAnon, RssFile, VmHWM summed), open fds and threads."""
    total: dict[str, float] = {"rss_mb": 0.0, "anon_mb": 0.0, "file_mb": 0.0, "hwm_mb": 0.0, "fds": 0.0,
                               "threads": 0.0, "procs": 0.0}
    for pid in tree_pids(root):
        kb = status_kb(pid)
        if not kb:
            continue
        total["procs"] += 1
        total["rss_mb"] += kb.get("VmRSS", 0) / 1024
        total["anon_mb"] += kb.get("RssAnon", 0) / 1024
        total["file_mb"] += kb.get("RssFile", 0) / 1024
        total["hwm_mb"] += kb.get("VmHWM", 0) / 1024
        total["threads"] += kb.get("Threads", 0)
        try:
            total["fds"] += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return total


class Sampler:
    """Every `interval` s: the gateway's memory_of(), its CPU time, our own processes' CPU time, both CPUs' busy
    time, plus whatever `extra()` returns (the client's counters). Samples carry t = s since `t0`."""

    def __init__(self, gw_pid: int, ours: list[int], interval: float, t0: float,
                 extra: Callable[[], dict[str, float]]) -> None:
        self.gw_pid, self.ours, self.interval, self.t0, self.extra = gw_pid, ours, interval, t0, extra
        self.samples: list[dict[str, Any]] = []
        self._last: tuple[float, float, float, dict[str, tuple[float, float]]] | None = None
        self._task: asyncio.Task[None] | None = None

    def sample(self, label: str = "") -> dict[str, Any]:
        now = time.monotonic()
        gw_cpu = cpu_seconds(self.gw_pid)
        load_cpu = sum(cpu_seconds(pid) for pid in self.ours)
        busy = cpu_busy()
        row: dict[str, Any] = {"t": round(now - self.t0, 3), **memory_of(self.gw_pid), "gw_cpu_s": gw_cpu}
        if self._last is not None and now - self._last[0] >= 0.5:  # shorter: too coarse for CPU shares
            t_prev, gw_prev, load_prev, busy_prev = self._last
            wall = max(now - t_prev, 1e-6)
            row["gw_cpu_pct"] = (gw_cpu - gw_prev) / wall * 100
            row["load_cpu_pct"] = (load_cpu - load_prev) / wall * 100
            for cpu in busy:
                row[f"busy_cpu{cpu}_pct"] = (busy[cpu][0] - busy_prev[cpu][0]) / wall * 100
        if self._last is None or now - self._last[0] >= 0.5:
            self._last = (now, gw_cpu, load_cpu, busy)
        row.update(self.extra())
        if label:
            row["label"] = label
        self.samples.append(row)
        return row

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.sample()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


# ----------------------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Kind:
    path: str
    dialect: str  # "openai" | "anthropic": the client's protocol
    stream: bool
    model: str
    fails: bool  # the deployment always fails: expect a 5xx in the dialect's error envelope


KINDS = {
    "openai-json": Kind("/v1/chat/completions", "openai", False, "m", False),
    "openai-sse": Kind("/v1/chat/completions", "openai", True, "m", False),
    "anthropic-json": Kind("/v1/messages", "anthropic", False, "m", False),
    "anthropic-sse": Kind("/v1/messages", "anthropic", True, "m", False),
    "fail-500": Kind("/v1/chat/completions", "openai", False, "m-500", True),
    "fail-down": Kind("/v1/messages", "anthropic", True, "m-down", True),
}
DEFAULT_MIX = "openai-json=30,openai-sse=25,anthropic-sse=25,fail-500=10,fail-down=10"


def request_for(kind: Kind) -> tuple[dict[str, str], bytes]:
    if kind.dialect == "anthropic":
        headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
        body: dict[str, Any] = {"model": kind.model, "max_tokens": 256,
                                "messages": [{"role": "user", "content": "hi"}]}
    else:
        headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
        body = {"model": kind.model, "max_tokens": 256, "messages": [{"role": "user", "content": "hi"}]}
    if kind.stream:
        body["stream"] = True
    return headers, json.dumps(body, separators=(",", ":")).encode()


def check(kind: Kind, status: int, body: bytes, expected_text: str) -> str | None:
    """None when the response is what this kind of request should get; else what is wrong."""
    try:
        if kind.fails:
            if not 500 <= status < 600:
                return f"expected a 5xx, got HTTP {status}: {body[:160]!r}"
            payload = json.loads(body)
            if kind.dialect == "openai":
                if not (isinstance(payload.get("error"), dict) and isinstance(payload["error"].get("message"), str)):
                    return f"HTTP {status} without an OpenAI error envelope: {body[:160]!r}"
            elif not (payload.get("type") == "error" and isinstance(payload.get("error"), dict)
                      and isinstance(payload["error"].get("type"), str)
                      and isinstance(payload["error"].get("message"), str)):
                return f"HTTP {status} without an Anthropic error envelope: {body[:160]!r}"
            return None
        if status != 200:
            return f"HTTP {status}: {body[:160]!r}"
        if not kind.stream:
            payload = json.loads(body)
            if kind.dialect == "openai":
                text = payload["choices"][0]["message"]["content"]
            else:
                if payload.get("type") != "message" or payload.get("stop_reason") != "end_turn":
                    return f"not a finished message: {body[:160]!r}"
                text = "".join(b.get("text", "") for b in payload["content"])
        elif kind.dialect == "openai":
            events = _sse_events(body)
            if not events or events[-1][1] != "[DONE]":
                return f"stream does not end with data: [DONE]: {body[-120:]!r}"
            text = "".join((c.get("delta") or {}).get("content") or ""
                           for _, d in events[:-1] for c in json.loads(d).get("choices") or [])
        else:
            events = _sse_events(body)
            if not events or events[0][0] != "message_start":
                return f"stream does not start with message_start: {body[:120]!r}"
            if events[-1][0] != "message_stop":
                return f"stream does not end with message_stop: {body[-120:]!r}"
            text = "".join(json.loads(d)["delta"].get("text", "") for name, d in events
                           if name == "content_block_delta")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc}): {body[:160]!r}"
    if text != expected_text:
        return f"wrong text ({len(text)} chars, expected {len(expected_text)}): {text[:60]!r}"
    return None


@dataclass
class ClassStats:
    sent: int = 0
    ok: int = 0  # what this class should get (for failing classes: the 5xx in the right envelope)
    unexpected: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, status: int, problem: str | None, latency_ms: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies_ms.append(latency_ms)
        if problem is None:
            self.ok += 1
        else:
            self.unexpected += 1
            if len(self.examples) < 3:
                self.examples.append(problem)

    def summary(self) -> dict[str, Any]:
        return {"sent": self.sent, "ok": self.ok, "unexpected": self.unexpected, "done": self.ok + self.unexpected,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}, "examples": self.examples,
                "p50_ms": pct(self.latencies_ms, 50), "p99_ms": pct(self.latencies_ms, 99),
                "max_ms": max(self.latencies_ms) if self.latencies_ms else NAN}


def pct(values: list[float], q: float) -> float:
    if not values:
        return NAN
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


# ----------------------------------------------------------------------------------------------- processes

#: `--gc-log` (default): the gateway is started as `<venv>/bin/python -c GC_HOOK serve ...`, i.e. `yourouter serve`
#: with a gc callback that writes one line per collection of generation 1 or 2 (CLOCK_MONOTONIC time, objects
#: collected, pause) to its log. It observes only: the thresholds, freeze and everything else are the gateway's own.
GC_HOOK = r'''
import gc, sys, time
_start = [0.0]
def _yr_memory_gc(phase, info):
    if phase == "start":
        _start[0] = time.perf_counter()
    elif info["generation"] >= 1:
        sys.stderr.write("YR-MEMORY-GC %d %.3f %d %.2f\n" % (info["generation"], time.monotonic(),
                         info["collected"], (time.perf_counter() - _start[0]) * 1000))
        sys.stderr.flush()
gc.callbacks.append(_yr_memory_gc)
from yourouter.cli import main
sys.argv[0] = "yourouter"
main()
'''


def gc_events(log: Path, t0: float) -> list[dict[str, float]]:
    """The GC_HOOK lines of a gateway log: generation, t (s since t0, the sampler's CLOCK_MONOTONIC origin),
    objects collected, pause ms."""
    out: list[dict[str, float]] = []
    try:
        with open(log, errors="replace") as f:
            for line in f:
                if line.startswith("YR-MEMORY-GC "):
                    _, gen, mono, collected, pause = line.split()
                    out.append({"gen": int(gen), "t": round(float(mono) - t0, 3), "collected": int(collected),
                                "pause_ms": float(pause)})
    except (OSError, ValueError):
        pass
    return out


def gc_line(events: list[dict[str, float]], t_from: float, t_to: float) -> str:
    """One sentence on the gateway's generation-1/2 collections between t_from and t_to (s)."""
    parts = []
    for gen in (1, 2):
        xs = [e for e in events if e["gen"] == gen and t_from <= e["t"] <= t_to]
        if xs:
            times = ", ".join(f"{e['t']:.0f}" for e in xs[:12]) + (", ..." if len(xs) > 12 else "")
            collected = statistics.fmean(e["collected"] for e in xs)
            pauses = [e["pause_ms"] for e in xs]
            parts.append(f"{len(xs)} of generation {gen} (at t = {times} s; {collected:,.0f} objects collected on "
                         f"average; pause max {max(pauses):.0f} ms, mean {statistics.fmean(pauses):.0f} ms)")
        else:
            parts.append(f"none of generation {gen}")
    return "; ".join(parts)


def gateway_config(work: Path, mock_port: int, fail_port: int, down_port: int) -> Path:
    prices = ", ".join(f"{m}: {{input: {PRICE['input']}, output: {PRICE['output']}}}" for m in ("m", "m-500", "m-down"))
    config = work / "gateway.yaml"
    config.write_text(f"""\
host: 127.0.0.1
database_url: "sqlite:///{work}/gateway.db"
log_requests: true
limits: {{backend: memory}}
prices: {{{prices}}}
keys:
  - {{key: "{KEY}", name: memory, models: ["*"], rpm: 10000000, tpm: 10000000000, max_concurrency: 100000,
      budget_usd: 100000000, budget_period: day}}
providers:
  - {{name: mock, vendor: mock, type: openai, base_url: "http://127.0.0.1:{mock_port}/v1", api_key: sk-up,
      models: [m]}}
  - {{name: broken, vendor: broken, type: openai, base_url: "http://127.0.0.1:{fail_port}/v1", api_key: sk-up,
      models: [m-500]}}
  - {{name: down, vendor: down, type: openai, base_url: "http://127.0.0.1:{down_port}/v1", api_key: sk-up,
      models: [m-down]}}
""")
    return config


@dataclass
class Env:
    """The processes of one mode: the gateway and its upstreams."""

    gateway: Proc
    upstreams: list[Proc]
    base: str
    fail_port: int
    ready_s: float = NAN
    ready: dict[str, float] = field(default_factory=dict)

    def stop(self) -> None:
        self.gateway.stop()
        for proc in self.upstreams:
            proc.stop()


async def wait_ready_request(env: Env, timeout_s: float = 60.0) -> float:
    """Spawn -> the first 200 of a real chat completion (what bench.py calls ready); seconds."""
    headers, body = request_for(KINDS["openai-json"])
    t0 = time.monotonic()
    last = ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() - t0 < timeout_s:
            if not env.gateway.alive():
                raise RuntimeError(f"yourouter exited during start-up:\n{env.gateway.tail()}")
            try:
                async with session.post(env.base + "/v1/chat/completions", data=body, headers=headers) as r:
                    text = await r.read()
                    if r.status == 200:
                        return time.monotonic() - t0
                    last = f"HTTP {r.status}: {text[:200]!r}"
            except (TimeoutError, aiohttp.ClientError) as exc:
                last = type(exc).__name__
            await asyncio.sleep(0.05)
    raise RuntimeError(f"yourouter not ready after {timeout_s:.0f} s (last: {last})\n{env.gateway.tail()}")


async def start_env(args: argparse.Namespace, yr_bin: Path, work: Path, name: str, mock_flags: list[str]) -> Env:
    mock_port, fail_port, spare_port, down_port, gw_port = (free_port() for _ in range(5))
    upstreams = [
        Proc([sys.executable, str(SHARED / "mock_upstream.py"), "--port", str(mock_port), *mock_flags],
             work / f"{name}.mock.log", args.load_cpus),
        Proc([sys.executable, str(HERE / "chaos_upstream.py"), "--flaky-port", str(fail_port), "--healthy-port",
              str(spare_port), "--fail-rate", "1"], work / f"{name}.fail-upstream.log", args.load_cpus),
    ]
    config = gateway_config(work, mock_port, fail_port, down_port)
    env_vars = {k: v for k, v in os.environ.items() if not k.startswith("YOUROUTER_")}
    t_spawn = time.monotonic()
    serve = ["serve", "--config", str(config), "--port", str(gw_port), "--log-level", args.log_level]
    yr_python = yr_bin.parent / "python"
    argv = [str(yr_python), "-c", GC_HOOK, *serve] if args.gc_log and yr_python.exists() else [str(yr_bin), *serve]
    gateway = Proc(argv, work / f"{name}.gateway.log", args.gw_cpus, env_vars)
    env = Env(gateway, upstreams, f"http://127.0.0.1:{gw_port}", fail_port)
    try:
        await wait_ready(f"http://127.0.0.1:{mock_port}/health", upstreams[0])
        await wait_ready(f"http://127.0.0.1:{fail_port}/health", upstreams[1])
        await wait_ready_request(env)
        env.ready_s = time.monotonic() - t_spawn
        env.ready = memory_of(gateway.pid)
    except BaseException:
        env.stop()
        raise
    return env


async def drain_fail_records(env: Env, session: aiohttp.ClientSession) -> None:
    """chaos_upstream keeps a record per request until asked for them: ask, so that it stays small."""
    try:
        async with session.get(f"http://127.0.0.1:{env.fail_port}/_records") as response:
            await response.read()
    except (TimeoutError, aiohttp.ClientError):
        pass


# ----------------------------------------------------------------------------------------------- soak


def parse_mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in KINDS:
            raise argparse.ArgumentTypeError(f"unknown class {name!r} (known: {', '.join(KINDS)})")
        mix[name] = float(weight or 1)
    if not any(w > 0 for w in mix.values()):
        raise argparse.ArgumentTypeError("the mix needs a positive weight")
    return {k: w for k, w in mix.items() if w > 0}


async def run_soak(args: argparse.Namespace, yr_bin: Path, work: Path) -> dict[str, Any]:
    expected = "".join(WORDS[i % len(WORDS)] for i in range(20))
    env = await start_env(args, yr_bin, work, "soak", ["--chunk-delay-ms", str(args.chunk_delay_ms)])
    print(f"soak: gateway ready in {env.ready_s:.2f} s, RSS {env.ready['rss_mb']:.1f} MB", flush=True)
    mix = args.mix
    names = list(mix)
    stats = {name: ClassStats() for name in names}
    requests = {name: request_for(KINDS[name]) for name in names}
    total = int(args.rate * args.duration)
    rng = random.Random(args.seed)
    sequence = rng.choices(names, weights=[mix[n] for n in names], k=total)
    counters = {"sent": 0, "done": 0, "unexpected": 0, "skipped": 0, "late": 0, "peak_inflight": 0}
    inflight: set[asyncio.Task[None]] = set()
    chores: set[asyncio.Task[None]] = set()
    max_lag = 0.0
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session, \
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as control:

            async def one(name: str, scheduled: float) -> None:
                kind = KINDS[name]
                headers, body = requests[name]
                try:
                    async with session.post(env.base + kind.path, data=body, headers=headers) as response:
                        payload = await response.read()
                        status = response.status
                except (TimeoutError, aiohttp.ClientError) as exc:
                    status, payload = -1, f"{type(exc).__name__}: {exc}".encode()
                latency = (time.perf_counter() - scheduled) * 1000
                problem = check(kind, status, payload, expected)
                stats[name].add(status, problem, latency)
                counters["done"] += 1
                if problem is not None:
                    counters["unexpected"] += 1

            def extra() -> dict[str, float]:
                peak, counters["peak_inflight"] = counters["peak_inflight"], len(inflight)
                return {**{k: float(v) for k, v in counters.items()}, "inflight": len(inflight),
                        "peak_inflight": max(peak, len(inflight))}

            t0 = time.perf_counter()
            sampler = Sampler(env.gateway.pid, [os.getpid()] + [p.pid for p in env.upstreams], args.sample_interval,
                              time.monotonic(), extra)
            sampler.sample("start")
            sampler.start()
            last_drain = t0
            for i, name in enumerate(sequence):
                scheduled = t0 + i / args.rate
                now = time.perf_counter()
                if scheduled > now:
                    await asyncio.sleep(scheduled - now)
                    now = time.perf_counter()
                lag = now - scheduled
                max_lag = max(max_lag, lag)
                if lag > 0.010:
                    counters["late"] += 1
                if len(inflight) >= args.max_inflight:
                    counters["skipped"] += 1
                    continue
                stats[name].sent += 1
                counters["sent"] += 1
                task = loop.create_task(one(name, scheduled))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
                counters["peak_inflight"] = max(counters["peak_inflight"], len(inflight))
                if now - last_drain > 10:
                    last_drain = now
                    chore = loop.create_task(drain_fail_records(env, control))
                    chores.add(chore)
                    chore.add_done_callback(chores.discard)
                if not env.gateway.alive():
                    raise RuntimeError(f"the gateway died:\n{env.gateway.tail()}")
            load_s = time.perf_counter() - t0
            sampler.sample("end of load")
            if inflight:
                await asyncio.wait(set(inflight), timeout=args.request_timeout + 10)
            sampler.sample("drained")
            await sampler.stop()
            await asyncio.sleep(args.idle)
            sampler.sample("idle")
            await drain_fail_records(env, control)
            for task in list(inflight):
                task.cancel()
        alive = env.gateway.alive()
        log_bytes = env.gateway.log_path.stat().st_size if env.gateway.log_path.exists() else 0
    finally:
        env.stop()
    summary = soak_summary(args, env, sampler.samples, stats, counters, load_s, max_lag, alive, log_bytes)
    summary["gc"] = gc_events(env.gateway.log_path, sampler.t0)
    summary["gc_logged"] = env.gateway.argv.count(GC_HOOK) > 0
    return summary


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    if len(xs) < 2:
        return NAN, NAN
    slope, intercept = statistics.linear_regression(xs, ys)
    return slope, intercept


def soak_summary(args: argparse.Namespace, env: Env, samples: list[dict[str, Any]], stats: dict[str, ClassStats],
                 counters: dict[str, int], load_s: float, max_lag: float, alive: bool, log_bytes: int
                 ) -> dict[str, Any]:
    during = [s for s in samples if s.get("label") not in ("drained", "idle")]
    post = [s for s in during if s["t"] >= args.warmup]
    warm = post[0] if post else (during[-1] if during else {})
    end = during[-1] if during else {}
    slope, _ = linear_fit([s["t"] / 60 for s in post], [s["rss_mb"] for s in post])
    warm_mb, end_mb = float(warm.get("rss_mb", NAN)), float(end.get("rss_mb", NAN))
    max_post = max((s["rss_mb"] for s in post), default=NAN)
    by_label = {s["label"]: s for s in samples if "label" in s}
    done = counters["done"]
    return {
        "ready_s": env.ready_s, "ready": env.ready,
        "warm_t_s": warm.get("t", NAN), "warm_mb": warm_mb, "end_mb": end_mb,
        "max_mb": max((s["rss_mb"] for s in during), default=NAN), "max_post_warmup_mb": max_post,
        "hwm_mb": max((s["hwm_mb"] for s in samples), default=NAN),
        "slope_mb_per_min": slope, "post_warmup_samples": len(post),
        "end_vs_warm": (end_mb - warm_mb) / warm_mb if warm_mb else NAN,
        "max_vs_warm": (max_post - warm_mb) / warm_mb if warm_mb else NAN,
        "flat": abs(end_mb - warm_mb) <= TARGET_FLAT * warm_mb,
        "drained_mb": by_label.get("drained", {}).get("rss_mb", NAN),
        "idle_mb": by_label.get("idle", {}).get("rss_mb", NAN),
        "fds_end": end.get("fds", NAN), "fds_idle": by_label.get("idle", {}).get("fds", NAN),
        "peak_inflight": max((s.get("peak_inflight", 0) for s in samples), default=0),
        "load_s": load_s, "sent": counters["sent"], "done": done, "skipped": counters["skipped"],
        "late_over_10ms": counters["late"], "max_send_lag_ms": max_lag * 1000,
        "achieved_rate": counters["sent"] / load_s if load_s else NAN,
        "unexpected": sum(s.unexpected for s in stats.values()),
        "gw_cpu_pct_mean": statistics.fmean([s["gw_cpu_pct"] for s in during if "gw_cpu_pct" in s] or [NAN]),
        "gateway_alive": alive, "gateway_log_mb": log_bytes / MB,
        "classes": {name: s.summary() for name, s in stats.items()},
        "samples": samples,
        "settings": {"rate": args.rate, "duration_s": args.duration, "warmup_s": args.warmup,
                     "mix": args.mix, "chunk_delay_ms": args.chunk_delay_ms, "sample_interval_s": args.sample_interval,
                     "max_inflight": args.max_inflight, "request_timeout_s": args.request_timeout, "seed": args.seed},
    }


# ----------------------------------------------------------------------------------------------- streams


async def run_streams(args: argparse.Namespace, yr_bin: Path, work: Path) -> dict[str, Any]:
    n = args.streams
    chunks = args.stream_chunks
    expected = "".join(WORDS[i % len(WORDS)] for i in range(chunks))
    env = await start_env(args, yr_bin, work, "streams",
                          ["--chunks", str(chunks), "--chunk-delay-ms", str(args.stream_chunk_delay_ms)])
    print(f"streams: gateway ready in {env.ready_s:.2f} s, RSS {env.ready['rss_mb']:.1f} MB", flush=True)
    kinds = args.stream_kinds
    stats = {name: ClassStats() for name in kinds}
    requests = {name: request_for(KINDS[name]) for name in kinds}
    counters = {"opened": 0, "first": 0, "finished": 0, "unexpected": 0}
    ttft_ms: list[float] = []
    all_first = asyncio.Event()
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=args.stream_read_timeout)
    tasks: list[asyncio.Task[None]] = []
    windows: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:

            async def one(name: str) -> None:
                kind = KINDS[name]
                headers, body = requests[name]
                started = time.perf_counter()
                got_first = False
                buf = bytearray()
                status = -1
                try:
                    async with session.post(env.base + kind.path, data=body, headers=headers) as response:
                        status = response.status
                        async for chunk in response.content.iter_any():
                            buf += chunk
                            if not got_first and status == 200 and (b'"content":"' in buf
                                                                    or b"content_block_delta" in buf):
                                got_first = True
                                ttft_ms.append((time.perf_counter() - started) * 1000)
                                counters["first"] += 1
                                if counters["first"] >= n:
                                    all_first.set()
                except (TimeoutError, aiohttp.ClientError) as exc:
                    buf += f" [{type(exc).__name__}: {exc}]".encode()
                counters["finished"] += 1
                problem = check(kind, status, bytes(buf), expected)
                if problem is not None and not got_first:
                    problem += " (before its first token)"
                stats[name].add(status, problem, (time.perf_counter() - started) * 1000)
                if problem is not None:
                    counters["unexpected"] += 1
                    if counters["unexpected"] == 1:
                        print(f"streams: first problem ({name}): {problem}", flush=True)
                        all_first.set()  # do not wait for a first token that will never come

            def extra() -> dict[str, float]:
                return {"open": float(counters["opened"] - counters["finished"]),
                        **{k: float(v) for k, v in counters.items()}}

            sampler = Sampler(env.gateway.pid, [os.getpid()] + [p.pid for p in env.upstreams], 1.0,
                              time.monotonic(), extra)
            sampler.sample("start")
            sampler.start()
            t0 = time.perf_counter()
            for i in range(n):
                scheduled = t0 + i / args.open_rate
                now = time.perf_counter()
                if scheduled > now:
                    await asyncio.sleep(scheduled - now)
                name = kinds[i % len(kinds)]
                stats[name].sent += 1
                counters["opened"] += 1
                tasks.append(loop.create_task(one(name)))
            windows["opened_s"] = time.perf_counter() - t0
            stream_s = chunks * args.stream_chunk_delay_ms / 1000
            try:
                await asyncio.wait_for(all_first.wait(), timeout=stream_s + 60)
            except TimeoutError:
                pass
            windows["all_first_s"] = time.perf_counter() - t0
            reached = counters["first"] >= n and counters["finished"] == 0
            first_open = sampler.sample("all open")
            print(f"streams: {counters['first']} of {n} streams have a token, {counters['finished']} ended, "
                  f"{windows['all_first_s']:.1f} s after the first was opened; gateway RSS "
                  f"{first_open['rss_mb']:.1f} MB, {first_open['fds']:.0f} fds", flush=True)
            hold_end = time.perf_counter() + args.hold
            while reached and counters["finished"] == 0 and time.perf_counter() < hold_end:
                await asyncio.sleep(0.1)  # the sampler goes on every second
            # the samples taken while every stream had its first token and none had ended
            all_open = [s for s in sampler.samples if s["t"] >= first_open["t"] and s["first"] >= n
                        and s["finished"] == 0] or [first_open]
            windows["held_s"] = all_open[-1]["t"] - all_open[0]["t"]
            done, _ = await asyncio.wait(tasks, timeout=stream_s + 120)
            windows["done_s"] = time.perf_counter() - t0
            sampler.sample("ended")
            await sampler.stop()
            await asyncio.sleep(args.idle)
            sampler.sample("idle")
            for task in tasks:
                task.cancel()
        alive = env.gateway.alive()
    finally:
        env.stop()
    ok = sum(s.ok for s in stats.values())
    ready_mb = env.ready["rss_mb"]
    open_mb = [s["rss_mb"] for s in all_open]
    by_label = {s["label"]: s for s in sampler.samples if "label" in s}
    return {
        "ready_s": env.ready_s, "ready": env.ready, "streams": n, "reached": reached,
        "first_tokens": counters["first"], "ended_before_all_open": counters["finished"] if not reached else 0,
        "all_open_first_mb": open_mb[0], "all_open_max_mb": max(open_mb), "all_open_samples": len(open_mb),
        "all_open_fds": all_open[0]["fds"], "all_open_threads": all_open[0]["threads"],
        "peak_mb": max(s["rss_mb"] for s in sampler.samples),
        "hwm_mb": max(s["hwm_mb"] for s in sampler.samples),
        "per_stream_kb": (max(open_mb) - ready_mb) * 1024 / n,
        "ended_mb": by_label["ended"]["rss_mb"], "idle_mb": by_label["idle"]["rss_mb"],
        "ok": ok, "unexpected": sum(s.unexpected for s in stats.values()), "completed": len(done),
        "ttft_p50_ms": pct(ttft_ms, 50), "ttft_p99_ms": pct(ttft_ms, 99), "ttft_max_ms": max(ttft_ms, default=NAN),
        "gateway_alive": alive, **windows,
        "gc": gc_events(env.gateway.log_path, sampler.t0), "gc_logged": env.gateway.argv.count(GC_HOOK) > 0,
        "classes": {name: s.summary() for name, s in stats.items()},
        "samples": sampler.samples,
        "settings": {"streams": n, "kinds": kinds, "chunks": chunks, "chunk_delay_ms": args.stream_chunk_delay_ms,
                     "stream_s": stream_s, "open_rate": args.open_rate, "hold_s": args.hold,
                     "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0]},
    }


# ----------------------------------------------------------------------------------------------- report


def fmt(x: float, spec: str = ".1f") -> str:
    return "–" if x != x else format(x, spec)


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def soak_md(r: dict[str, Any], meta: dict[str, str]) -> list[str]:
    st = r["settings"]
    ready = r["ready"]["rss_mb"]
    short = st["duration_s"] < 600
    L = [
        "## Soak (last run of `memory.py soak`)", "",
        f"`{meta['command']}` — {meta['when']}, commit {meta['commit']}, {meta['machine']}. {meta['pinning']}",
        f"{st['rate']:g} req/s for {st['duration_s']:g} s (warm-up {st['warmup_s']:g} s), mix "
        + ", ".join(f"{k} {v:g}" for k, v in st["mix"].items()) + f"; stream events {st['chunk_delay_ms']:g} ms "
        f"apart; RSS sampled every {st['sample_interval_s']:g} s."
        + (" **A short run: the target is stated for 10 minutes.**" if short else ""), "",
        "| figure | value | target |", "|---|---|---|",
        f"| RSS after ready (first 200, {r['ready_s']:.2f} s after spawn) | {ready:.1f} MB (anon "
        f"{r['ready']['anon_mb']:.1f}, file {r['ready']['file_mb']:.1f}) | < {TARGET_READY_MB:g} MB: "
        f"{verdict(ready < TARGET_READY_MB)} |",
        f"| RSS after warm-up (t = {fmt(r['warm_t_s'], '.0f')} s) | {fmt(r['warm_mb'])} MB | |",
        f"| RSS at the end of the load | {fmt(r['end_mb'])} MB ({fmt(r['end_vs_warm'] * 100, '+.1f')} % vs "
        f"warm-up) | within ±{TARGET_FLAT:.0%}: {verdict(bool(r['flat']))} |",
        f"| max RSS during the load (after warm-up) | {fmt(r['max_mb'])} MB ({fmt(r['max_post_warmup_mb'])} MB, "
        f"{fmt(r['max_vs_warm'] * 100, '+.1f')} % vs warm-up) | |",
        f"| slope after warm-up (least squares, {r['post_warmup_samples']} samples) | "
        f"{fmt(r['slope_mb_per_min'], '+.3f')} MB/min ({fmt(r['slope_mb_per_min'] * 60, '+.1f')} MB/h if it "
        "went on) | |",
        f"| peak (VmHWM) | {fmt(r['hwm_mb'])} MB | |",
        f"| after the in-flight requests drained / after {meta['idle']} s idle | {fmt(r['drained_mb'])} / "
        f"{fmt(r['idle_mb'])} MB | |",
        f"| open fds at the end / idle | {fmt(r['fds_end'], '.0f')} / {fmt(r['fds_idle'], '.0f')} | |",
        "", f"Load: {r['sent']:,} sent in {r['load_s']:.1f} s = **{r['achieved_rate']:.1f} req/s** achieved, "
        f"{r['done']:,} answered, {r['skipped']} skipped (over --max-inflight), {r['late_over_10ms']} sent more than "
        f"10 ms late (max {r['max_send_lag_ms']:.1f} ms), at most {r['peak_inflight']:.0f} in flight; gateway core "
        f"{r['gw_cpu_pct_mean']:.0f} % busy on "
        f"average; gateway alive at the end: {'yes' if r['gateway_alive'] else '**no**'}; access log "
        f"{r['gateway_log_mb']:.1f} MB.", "",
        ("The gateway's cyclic GC during the load (`--gc-log`): " + gc_line(r["gc"], 0, r["load_s"]) + "."
         if r["gc_logged"] else "GC not logged (`--no-gc-log`, or no python beside the yourouter binary)."), "",
        "| class | sent | as expected | unexpected | HTTP statuses | p50 ms | p99 ms | first problems |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, c in r["classes"].items():
        statuses = ", ".join(f"{k}: {v:,}" for k, v in c["statuses"].items())
        examples = "; ".join(e.replace("|", "\\|")[:160] for e in c["examples"]) or ""
        L.append(f"| {name} | {c['sent']:,} | {c['ok']:,} | {c['unexpected']:,} | {statuses} | "
                 f"{fmt(c['p50_ms'], '.2f')} | {fmt(c['p99_ms'], '.2f')} | {examples} |")
    samples = [s for s in r["samples"] if "label" not in s or s["label"] in ("start", "end of load")]
    step = max(1, len(samples) // 12)
    L += ["", "RSS over time (every " + (f"{step}th " if step > 1 else "") + "sample; all in memory.json):", "",
          "| t s | RSS MB | anon MB | fds | in flight (peak since the last sample) | answered | gateway CPU % | "
          "others' load CPU 0 / 1 % |",
          "|---|---|---|---|---|---|---|---|"]
    for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        L.append(f"| {s['t']:.0f} | {s['rss_mb']:.1f} | {s['anon_mb']:.1f} | {s['fds']:.0f} | "
                 f"{s.get('inflight', 0):.0f} ({s.get('peak_inflight', 0):.0f}) | {s.get('done', 0):,.0f} | "
                 f"{fmt(s.get('gw_cpu_pct', NAN), '.0f')} | {others(s)} |")
    return L


def others(s: dict[str, Any]) -> str:
    """CPU used by processes other than ours in a sample's interval: CPU 0 busy - this client and the upstreams,
    CPU 1 busy - the gateway (when pinned that way; the upstreams + client share CPU 0)."""
    if "busy_cpu0_pct" not in s:
        return "– / –"
    cpu0 = max(0.0, s["busy_cpu0_pct"] - s["load_cpu_pct"])
    cpu1 = max(0.0, s.get("busy_cpu1_pct", NAN) - s["gw_cpu_pct"])
    return f"{cpu0:.0f} / {fmt(cpu1, '.0f')}"


def streams_md(r: dict[str, Any], meta: dict[str, str]) -> list[str]:
    st = r["settings"]
    ready = r["ready"]["rss_mb"]
    n = r["streams"]
    L = [
        "## Open streams (last run of `memory.py streams`)", "",
        f"`{meta['command']}` — {meta['when']}, commit {meta['commit']}, {meta['machine']}. {meta['pinning']}",
        f"{n} streams ({', '.join(st['kinds'])} alternating), opened at {st['open_rate']:g}/s; each "
        f"{st['chunks']} content chunks {st['chunk_delay_ms']:g} ms apart (~{st['stream_s']:.0f} s); client "
        f"RLIMIT_NOFILE {st['nofile']}.", "",
        "| figure | value | target |", "|---|---|---|",
        f"| RSS after ready | {ready:.1f} MB | < {TARGET_READY_MB:g} MB: {verdict(ready < TARGET_READY_MB)} |",
        f"| all {n} streams open at once | {'yes' if r['reached'] else '**no**'}: {r['first_tokens']} had a "
        f"first token {r['all_first_s']:.1f} s after the first was opened (all opened in {r['opened_s']:.1f} s), "
        f"none ended; gateway fds {r['all_open_fds']:.0f}, threads {r['all_open_threads']:.0f} | |",
        f"| RSS with all {n} open (first sample / max over {r['all_open_samples']} samples, {r['held_s']:.0f} s) | "
        f"{r['all_open_first_mb']:.1f} / **{r['all_open_max_mb']:.1f} MB** | < {TARGET_STREAMS_MB:g} MB: "
        f"{verdict(r['reached'] and r['all_open_max_mb'] < TARGET_STREAMS_MB)} |",
        f"| per open stream ((max all open − ready) / {n}) | {r['per_stream_kb']:.0f} KB | |",
        f"| peak RSS sampled / VmHWM | {r['peak_mb']:.1f} / {r['hwm_mb']:.1f} MB | |",
        f"| after the streams ended / {meta['idle']} s later | {r['ended_mb']:.1f} / {r['idle_mb']:.1f} MB | |",
        f"| streams completed and checked | {r['ok']} of {n} as expected, {r['unexpected']} unexpected "
        f"({r['done_s']:.0f} s after the first was opened) | |",
        f"| TTFT p50 / p99 / max | {fmt(r['ttft_p50_ms'])} / {fmt(r['ttft_p99_ms'])} / {fmt(r['ttft_max_ms'])} ms | |",
        "",
        ("The gateway's cyclic GC from the first stream opened to the last ended (`--gc-log`): "
         + gc_line(r["gc"], 0, r["done_s"]) + "." if r["gc_logged"] else "GC not logged."), "",
    ]
    problems = [e for c in r["classes"].values() for e in c["examples"]]
    if problems:
        L += ["First problems: " + "; ".join(e[:200] for e in problems[:3]), ""]
    L += ["| t s | RSS MB | anon MB | fds | open streams (client) | with a token | ended | gateway CPU % |",
          "|---|---|---|---|---|---|---|---|"]
    samples = r["samples"]
    step = max(1, len(samples) // 15)
    for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        L.append(f"| {s['t']:.0f} | {s['rss_mb']:.1f} | {s['anon_mb']:.1f} | {s['fds']:.0f} | {s['open']:.0f} | "
                 f"{s['first']:.0f} | {s['finished']:.0f} | {fmt(s.get('gw_cpu_pct', NAN), '.0f')} |")
    return L


MD_HEAD = """\
# Memory: RSS over a mixed soak, and with 1,000 open streams (issue #8)

Targets: RSS after ready under 100 MB; flat (within 10 %) over a 10-minute soak at 300 requests/s mixing streaming,
non-streaming, translated and failing-upstream requests; 1,000 concurrent open streams held with RSS under 250 MB.

```bash
.venv/bin/python bench/memory.py --ref HEAD                                 # soak (10 min) + streams (~1 min)
.venv/bin/python bench/memory.py soak --duration 600 --rate 300 --ref HEAD
.venv/bin/python bench/memory.py streams --streams 1000 --ref HEAD
```

Method (details in `bench/memory.py`'s docstring): `yourouter serve` with production defaults (`--log-level info`,
access log on, SQLite ledger, one key with rpm/tpm/concurrency limits and a budget that never refuse, in-process
limits) pinned to CPU 1; the upstreams (the shared mock; `chaos_upstream.py` answering every attempt with a 500; a
closed port) and the client (aiohttp on uvloop) on CPU 0. RSS = VmRSS from `/proc/<pid>/status`, summed over the
gateway's process tree. The soak is open loop (a fixed send schedule; the class of each request drawn at random by
the mix weights) and checks every response; the streams mode waits until every stream has its first token and
none has ended, samples RSS every second while all are open, then checks that every stream completed. The RSS time
series of each run is in `bench/results/memory-<stamp>/memory.json` (`soak.samples`, `streams.samples`), with the
gateway's generation-1/2 garbage collections (`soak.gc`, `streams.gc`; logged by a gc callback, `--gc-log`).

This machine has 2 vCPUs shared with other work: "others' load" is each CPU's busy time minus ours (CPU 0: this
client and the upstreams; CPU 1: the gateway).
"""


def write_md(sections: dict[str, list[str]]) -> Path:
    old = MD_PATH.read_text() if MD_PATH.exists() else ""
    blocks = []
    for mode, (begin, end) in MARKS.items():
        if mode in sections:
            blocks.append(f"{begin}\n" + "\n".join(sections[mode]) + f"\n{end}\n")
        elif begin in old and end in old:
            blocks.append(begin + old.split(begin, 1)[1].split(end, 1)[0] + end + "\n")
    head = MD_HEAD
    first_mark = min((old.find(b) for b, _ in MARKS.values() if b in old), default=-1)
    if first_mark > 0:
        head = old[:first_mark]  # keep a hand-edited head (findings written below the title)
    tail = ""
    last_end = max(((old.find(e) + len(e)) for _, e in MARKS.values() if e in old), default=-1)
    if last_end > 0:
        tail = old[last_end:].lstrip("\n")
    MD_PATH.write_text(head.rstrip("\n") + "\n\n" + "\n".join(blocks) + ("\n" + tail if tail else ""))
    return MD_PATH


# ----------------------------------------------------------------------------------------------- main


def plain(value: Any) -> Any:
    """JSON-safe: NaN -> null, tuples -> lists."""
    if isinstance(value, float):
        return None if value != value else value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


WORDS: tuple[str, ...] = ()


def main() -> int:
    global WORDS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", nargs="?", choices=["soak", "streams", "both"], default="both", help="default: both")
    p.add_argument("--ref", help="install this commit (git archive) into ${TMPDIR:-/tmp}/yourouter-bench-<sha>")
    p.add_argument("--yourouter-bin", help="default: <repo>/.venv/bin/yourouter, or the one --ref installs")
    p.add_argument("--log-level", default="info", help="gateway --log-level (info: production, access log on)")
    p.add_argument("--gw-cpus", default="1", help="taskset CPU for the gateway ('' = no pinning)")
    p.add_argument("--load-cpus", default="0", help="taskset CPU for the upstreams and this client ('' = none)")
    p.add_argument("--idle", type=float, default=10.0, help="after the load, seconds without load before the "
                   "last RSS sample (10)")
    p.add_argument("--gc-log", action=argparse.BooleanOptionalAction, default=True,
                   help="start the gateway with a gc callback logging its generation-1/2 collections (observes "
                   "only; default on)")
    p.add_argument("--out", help="output dir (default bench/results/memory-<stamp>)")
    p.add_argument("--no-md", action="store_true", help="do not touch bench/MEMORY.md")
    soak = p.add_argument_group("soak")
    soak.add_argument("--duration", type=float, default=600.0, help="seconds of load (600)")
    soak.add_argument("--rate", type=float, default=300.0, help="requests per second, open loop (300)")
    soak.add_argument("--warmup", type=float, default=60.0, help="seconds before the post-warm-up reference "
                      "(60; at most a quarter of --duration)")
    soak.add_argument("--mix", type=parse_mix, default=parse_mix(DEFAULT_MIX),
                      help=f"class=weight,... ({DEFAULT_MIX}; classes: {', '.join(KINDS)})")
    soak.add_argument("--chunk-delay-ms", type=float, default=5.0, help="the mock's gap between SSE events (5)")
    soak.add_argument("--sample-interval", type=float, default=5.0, help="RSS sample every ... s (5)")
    soak.add_argument("--max-inflight", type=int, default=3000, help="skip a send beyond this many open (3000)")
    soak.add_argument("--request-timeout", type=float, default=60.0, help="per request, s (60)")
    soak.add_argument("--seed", type=int, default=1)
    streams = p.add_argument_group("streams")
    streams.add_argument("--streams", type=int, default=1000, help="concurrent streams (1000)")
    streams.add_argument("--stream-kinds", type=lambda s: [k for k in s.split(",") if k],
                         default=["openai-sse", "anthropic-sse"],
                         help="alternated (openai-sse,anthropic-sse; or one of them)")
    streams.add_argument("--stream-chunks", type=int, default=150, help="content chunks per stream (150)")
    streams.add_argument("--stream-chunk-delay-ms", type=float, default=200.0, help="gap between them (200)")
    streams.add_argument("--open-rate", type=float, default=250.0, help="streams opened per second (250)")
    streams.add_argument("--hold", type=float, default=60.0, help="sample while all are open, at most s (60; "
                         "ends when the first stream ends)")
    streams.add_argument("--stream-read-timeout", type=float, default=60.0, help="client: longest silence, s (60)")
    args = p.parse_args()
    if args.duration <= 0 or args.rate <= 0 or args.streams < 1 or args.open_rate <= 0:
        p.error("--duration, --rate, --streams and --open-rate must be positive")
    if any(k not in ("openai-sse", "anthropic-sse") for k in args.stream_kinds) or not args.stream_kinds:
        p.error("--stream-kinds: openai-sse and/or anthropic-sse")
    warmup_note = ""
    if args.warmup > args.duration / 4:
        warmup_note = f" (--warmup {args.warmup:g} cut to a quarter of --duration)"
        args.warmup = args.duration / 4
    if not (SHARED / "mock_upstream.py").exists():
        p.error(f"the shared mock is not at {SHARED} (set SHARED_BENCH)")
    WORDS = mock_words()

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "?"
    if args.yourouter_bin:
        yr_bin = Path(args.yourouter_bin)
        commit = f"? (--yourouter-bin; HEAD is {commit})"
    elif args.ref:
        yr_bin, commit = install_ref(args.ref)
    else:
        yr_bin = ROOT / ".venv" / "bin" / "yourouter"
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"], capture_output=True,
                               text=True).stdout.strip()
        commit += " + uncommitted src/ changes (the editable .venv)" if dirty else " (src/ clean)"
    if not yr_bin.exists():
        p.error(f"yourouter not found at {yr_bin} (use --yourouter-bin or --ref)")
    nofile = raise_nofile()
    if args.mode != "soak" and nofile < 2 * args.streams + 100:
        print(f"warning: RLIMIT_NOFILE is {nofile}: the gateway needs ~2 fds per stream", file=sys.stderr)
    nproc = os.cpu_count() or 1
    if nproc < 2 or not shutil.which("taskset"):
        args.gw_cpus = args.load_cpus = ""
    if args.load_cpus:
        os.sched_setaffinity(0, {int(c) for c in args.load_cpus.split(",")})
    pinning = (f"Pinned (taskset): gateway on CPU {args.gw_cpus}, upstreams + client on CPU {args.load_cpus} "
               f"(nproc {nproc})." if args.gw_cpus else f"NOT pinned (nproc {nproc}).")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out).resolve() if args.out else HERE / "results" / f"memory-{stamp}"
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
    machine = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   "?")
    meta = {"command": ".venv/bin/python bench/memory.py" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:]),
            "when": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": commit, "bin": str(yr_bin),
            "machine": f"{nproc} × {machine}", "pinning": pinning + warmup_note, "idle": f"{args.idle:g}"}
    results: dict[str, Any] = {"meta": meta}
    sections: dict[str, list[str]] = {}
    ok = True
    if args.mode in ("soak", "both"):
        print(f"soak: {args.rate:g} req/s for {args.duration:g} s ...", flush=True)
        r = asyncio.run(run_soak(args, yr_bin, work))
        results["soak"] = r
        sections["soak"] = soak_md(r, meta)
        print("\n".join(sections["soak"]), flush=True)
        ok = ok and r["unexpected"] == 0 and r["gateway_alive"]
    if args.mode in ("streams", "both"):
        print(f"streams: {args.streams} ...", flush=True)
        r = asyncio.run(run_streams(args, yr_bin, work))
        results["streams"] = r
        sections["streams"] = streams_md(r, meta)
        print("\n".join(sections["streams"]), flush=True)
        ok = ok and r["unexpected"] == 0 and r["reached"] and r["gateway_alive"]
    (out / "memory.json").write_text(json.dumps(plain(results)))
    if not args.no_md:
        print(f"written: {write_md(sections)}")
    print(f"written: {out}/memory.json (work dir: {work})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
