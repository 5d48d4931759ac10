"""Memory benchmark load: the request classes of the soak mix, the gateway + upstream environment, the soak
and the open-streams runs (used by bench/memory.py; see its docstring)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from chaos import Proc, free_port, wait_ready
from memory_probes import GC_HOOK, Sampler, gc_events, memory_of
from translation import _sse_events

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = Path(os.environ.get("SHARED_BENCH", str(ROOT.parent / "shared" / "bench")))
KEY = "sk-memory-0123456789abcdef"
NAN = float("nan")
MB = 1024 * 1024
PRICE = {"input": 2.5, "output": 10}  # USD per 1M tokens
TARGET_READY_MB, TARGET_FLAT, TARGET_STREAMS_MB = 100.0, 0.10, 250.0


def mock_words() -> tuple[str, ...]:
    """The shared mock's words (chunk i of a stream is WORDS[i % len(WORDS)]), read from the mock itself."""
    spec = importlib.util.spec_from_file_location("mock_upstream", SHARED / "mock_upstream.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.WORDS)



WORDS: tuple[str, ...] = ()


def load_words() -> None:
    """Read the shared mock's words into WORDS (before run_soak / run_streams)."""
    global WORDS
    WORDS = mock_words()


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


