#!/usr/bin/env python3
"""Large inputs: does a request body or a stream cost the gateway time linear in its size?

    .venv/bin/python bench/large.py                                  # working tree's .venv (~2 min)
    .venv/bin/python bench/large.py --ref HEAD                       # a commit (git archive -> its own venv)
    .venv/bin/python bench/large.py --rounds 2 --body-requests 10 --stream-requests 4      # a quick look (~1 min)
    .venv/bin/python bench/large.py --only streams --chunks 100,1000,10000,30000

The question (issue #8, "Large inputs"): "a 1 MiB request body and a 10,000-chunk stream cost time linear in their
size (show the curve for 1 KiB … 4 MiB)".

Set-up. Mock upstreams (`../shared/bench/mock_upstream.py`, no delays, one per stream length: the mock's number of
SSE content chunks is a start-up setting, MOCK_CHUNKS / --chunks, not a per-request one) and this client (aiohttp
on uvloop, one request at a time) are pinned to CPU 0; the gateway (`yourouter serve`, production defaults: log
level info, access log on, SQLite ledger) and the floor proxies (`../shared/bench/floor_proxy.py`, the least a
Python proxy can do; one per mock) are pinned to CPU 1, idle while another target is measured. The gateway has one
deployment per mock (model `m` on the 20-chunk mock for the body curve, `m-<N>` on the N-chunk mock) and two
static keys: `free` (no limits) and `limited` (rpm/tpm/max_concurrency never reached and a budget, in-process
backend, price set for every model, so that admission estimates the prompt and reserves against the budget).

Body curve (`--sizes`, default 1K,4K,16K,64K,256K,1M,4M): a chat request whose one user message has that many bytes
of ASCII text (the mock parses only `model`/`stream` with a regex and answers its fixed 20-word chat.completion),
sent one at a time to each target:

    direct              the mock itself (the client's and the mock's own cost of the bytes)
    floor               floor_proxy.py -> mock
    gateway             POST /v1/chat/completions, key `free` (OpenAI -> OpenAI: the body is parsed and forwarded
                        as the client's bytes)
    gateway-limited     the same with key `limited` (admission: prompt estimate + budget reservation)
    gateway-anthropic   POST /v1/messages (Anthropic -> OpenAI upstream: decoded into the IR and re-encoded)

Stream curve (`--chunks`, default 100,1000,10000): a streamed chat completion from the N-chunk mock (N content
chunks + a finish chunk + a usage chunk + [DONE], all in one write: no chunk delay), read to its end:

    direct-sse          the mock itself
    floor-sse           floor_proxy.py -> mock (bytes relayed as they arrive, no SSE parsing)
    gateway-sse         OpenAI -> OpenAI (passthrough: split into events, usage tapped, forwarded event by event)
    gateway-anthropic-sse  Anthropic `/v1/messages` stream -> OpenAI upstream (translated event by event)

Rounds (`--rounds`): each round runs every (size, target) cell once as a block of requests (body:
--body-requests / rounds; streams: --stream-requests / rounds), the target order rotated each round, so that noisy
stretches of this shared machine hit every target alike. Latency = request handed to aiohttp -> whole response body
read (ms); its median per cell over all rounds. Gateway (or floor) CPU per request = its threads' run time
(/proc/<pid>/task/*/schedstat) over the block / requests; after a gateway block the script waits --settle-s (0.6 s,
longer than the ledger's 0.5 s flush interval) so that the block's deferred work (ledger flush, access log) is
counted, and subtracts the process's idle CPU rate measured at the start. Figures are medians over rounds.

Linearity: a least-squares line through the medians, y = a + b·size, with R²; for bodies b in ms per MiB for
latency, for latency added over direct (target − direct) and for CPU; for streams b in µs per chunk. Next to the
fit, each step's marginal cost (Δy / Δsize between neighbouring sizes): constant when the cost is linear, growing
when it is not.

Every response is checked (status 200; body: the mock's text in the target's dialect; stream: every one of the N
content chunks, their text in order, the finish, `[DONE]` or `message_stop`). With --probe-limit the script also
sends one body one byte over the gateway's `max_body_bytes` (read from the config schema of the measured venv) and
expects a 413.

Writes bench/results/large-<stamp>/{report.md, data.json, configs and logs} and replaces the generated part of
bench/LARGE.md (between its `generated` markers; the rest of that file is kept) unless --no-md. Only 127.0.0.1;
every loop is bounded; the processes it starts are ended on exit, error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from _common import exit_on_signals, install_uvloop, make_out_dirs, pin_load, resolve_yourouter, write_marked
from chaos import Proc, cpu_busy, cpu_seconds, free_port, wait_ready

try:
    import orjson

    loads: Callable[[bytes | str], Any] = orjson.loads
except ImportError:  # pragma: no cover - the project's venv has orjson
    loads = json.loads

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "bench"
NAN = float("nan")
MIB = 1024 * 1024
KEY_FREE = "sk-large-free-0123456789"
KEY_LIMITED = "sk-large-limited-0123456789"
UPSTREAM_KEY = "sk-upstream-fixed"
BODY_MOCK_CHUNKS = 20
# The mock's words (mock_upstream.py WORDS): content chunk i is WORDS[i % 21].
WORDS = ("Hello", " there", "!", " This", " is", " a", " mock", " response", " from", " the", " benchmark",
         " upstream", ",", " streamed", " one", " token", " per", " chunk", " for", " you", ".")
BODY_TARGETS = ("direct", "floor", "gateway", "gateway-limited", "gateway-anthropic")
STREAM_TARGETS = ("direct-sse", "floor-sse", "gateway-sse", "gateway-anthropic-sse")
MD_BEGIN, MD_END = "<!-- generated:begin (bench/large.py) -->", "<!-- generated:end -->"
TEXT = ("The quick brown fox jumps over the lazy dog while the benchmark measures what a large prompt costs. "
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore. ")


def expected_text(chunks: int) -> str:
    return "".join(WORDS[i % len(WORDS)] for i in range(chunks))


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    for suffix, mult in (("K", 1024), ("M", MIB)):
        if text.endswith(suffix):
            return int(float(text[:-1]) * mult)
    return int(text)


def size_label(n: int) -> str:
    if n >= MIB and n % MIB == 0:
        return f"{n // MIB} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def content_of(n: int) -> str:
    """n bytes of plain ASCII prose (no characters JSON must escape, so the encoded string is n bytes too)."""
    reps = n // len(TEXT) + 1
    return (TEXT * reps)[:n]


def body_for(target: str, model: str, size: int, stream: bool = False) -> bytes:
    payload: dict[str, Any] = {"model": model}
    if target.startswith("gateway-anthropic"):
        payload["max_tokens"] = 100
    payload["messages"] = [{"role": "user", "content": content_of(size)}]
    if stream:
        payload["stream"] = True
    return json.dumps(payload, separators=(",", ":")).encode()


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return NAN
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def med(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else NAN


def fmt(x: float, spec: str = ".2f") -> str:
    return "–" if x != x else format(x, spec)


def linfit(xs: list[float], ys: list[float]) -> dict[str, float]:
    """Least squares y = a + b x: intercept a, slope b, R²."""
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if x == x and y == y]
    if len(pts) < 2:
        return {"a": NAN, "b": NAN, "r2": NAN}
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    sxy = sum((x - mx) * (y - my) for x, y in pts)
    b = sxy / sxx if sxx else NAN
    a = my - b * mx
    ss_tot = sum((y - my) ** 2 for _, y in pts)
    ss_res = sum((y - (a + b * x)) ** 2 for x, y in pts)
    return {"a": a, "b": b, "r2": 1 - ss_res / ss_tot if ss_tot else NAN}


# ----------------------------------------------------------------------------------------------- checks

def _sse(body: bytes) -> list[tuple[str | None, bytes]]:
    out: list[tuple[str | None, bytes]] = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        if not block.strip():
            continue
        name: str | None = None
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data.append(line[5:].lstrip())
        out.append((name, b"\n".join(data)))
    return out


def check_json(target: str, status: int, body: bytes) -> str | None:
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    try:
        payload = loads(body)
        if target == "gateway-anthropic":
            if payload.get("type") != "message" or payload.get("stop_reason") != "end_turn":
                return f"not a finished message: {body[:200]!r}"
            text = "".join(b.get("text", "") for b in payload["content"])
        else:
            text = payload["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc}): {body[:200]!r}"
    return None if text == expected_text(BODY_MOCK_CHUNKS) else f"wrong text {text[:80]!r}"


def check_stream(target: str, chunks: int, status: int, body: bytes) -> str | None:
    """Every content chunk there, in order, and the stream's proper end."""
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    try:
        events = _sse(body)
        pieces: list[str] = []
        if target == "gateway-anthropic-sse":
            if not events or events[0][0] != "message_start" or events[-1][0] != "message_stop":
                return f"not message_start ... message_stop: {body[:80]!r} ... {body[-80:]!r}"
            stop = None
            for name, data in events:
                if name == "content_block_delta":
                    pieces.append(loads(data)["delta"].get("text", ""))
                elif name == "message_delta":
                    stop = loads(data)["delta"].get("stop_reason")
            if stop != "end_turn":
                return f"stop_reason {stop!r}"
        else:
            if not events or events[-1][1] != b"[DONE]":
                return f"does not end with data: [DONE]: {body[-120:]!r}"
            finish = None
            for _, data in events[:-1]:
                for choice in loads(data).get("choices") or []:
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        pieces.append(delta["content"])
                    finish = choice.get("finish_reason") or finish
            if finish != "stop":
                return f"finish_reason {finish!r}"
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc}): {body[:200]!r}"
    if len(pieces) != chunks:
        return f"{len(pieces)} content chunks, expected {chunks}"
    text = "".join(pieces)
    return None if text == expected_text(chunks) else f"wrong text ({len(text)} chars)"


# ----------------------------------------------------------------------------------------------- set-up

def gateway_config(work: Path, body_port: int, stream_ports: dict[int, int], workdir: Path) -> Path:
    models = ["m", *(f"m-{n}" for n in stream_ports)]
    prices = ", ".join(f'"{m}": {{input: 2.5, output: 10}}' for m in models)
    providers = [f'  - {{name: body, vendor: mock, type: openai, base_url: "http://127.0.0.1:{body_port}/v1", '
                 f"api_key: {UPSTREAM_KEY}, models: [m]}}"]
    for n, port in stream_ports.items():
        providers.append(f'  - {{name: s{n}, vendor: mock, type: openai, base_url: "http://127.0.0.1:{port}/v1", '
                         f'api_key: {UPSTREAM_KEY}, models: ["m-{n}"]}}')
    config = work / "gateway.yaml"
    config.write_text(f"""\
host: 127.0.0.1
database_url: "sqlite:///{work}/gateway.db"
usage: {{spill_dir: "{workdir}/spill"}}
limits: {{backend: memory}}
prices: {{{prices}}}
keys:
  - {{key: "{KEY_FREE}", name: free}}
  - {{key: "{KEY_LIMITED}", name: limited, rpm: 10000000, tpm: 10000000000, max_concurrency: 10000,
      budget_usd: 1000000, budget_period: day}}
providers:
{chr(10).join(providers)}
""")
    return config


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    model: str
    proc: Proc | None  # whose CPU is measured (None: nothing but the mock)
    gateway: bool = False


@dataclass
class Cell:
    kind: str  # body | stream
    x: int  # bytes or chunks
    target: str
    rounds: list[dict[str, Any]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    response_bytes: int = 0

    def summary(self) -> dict[str, Any]:
        cpu = [r["cpu_ms"] for r in self.rounds]
        client = [r["client_cpu_ms"] for r in self.rounds]
        return {"kind": self.kind, "x": self.x, "target": self.target, "n": len(self.latencies_ms),
                "p50_ms": med(self.latencies_ms), "p90_ms": pct(self.latencies_ms, 90),
                "min_ms": min(self.latencies_ms) if self.latencies_ms else NAN,
                "cpu_ms": med(cpu), "client_cpu_ms": med(client),
                "cpu_range": [min(cpu), max(cpu)] if cpu and cpu[0] == cpu[0] else None,
                "errors": self.errors, "first_error": self.first_error, "response_bytes": self.response_bytes}


async def wait_answer(session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes, proc: Proc,
                      timeout_s: float = 60.0) -> None:
    """Polls with a real request until it is answered 200."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.argv} exited during start-up:\n{proc.tail()}")
        try:
            async with session.post(url, data=body, headers=headers) as response:
                payload = await response.read()
                if response.status == 200:
                    return
                last = f"HTTP {response.status}: {payload[:200]!r}"
        except (TimeoutError, aiohttp.ClientError) as exc:
            last = f"{type(exc).__name__}"
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} not answering after {timeout_s:.0f} s ({last})\n{proc.tail()}")


async def run_block(session: aiohttp.ClientSession, target: Target, body: bytes, n: int,
                    check: Callable[[int, bytes], str | None], cell: Cell, settle_s: float,
                    idle_rate: dict[int, float], rnd: int) -> None:
    pid = target.proc.pid if target.proc is not None else None
    c0 = cpu_seconds(pid) if pid else NAN
    me = os.getpid()
    client_s = 0.0
    t0 = time.perf_counter()
    lats: list[float] = []
    for _ in range(n):
        client0 = cpu_seconds(me)
        start = time.perf_counter_ns()
        try:
            async with session.post(target.url, data=body, headers=target.headers) as response:
                payload = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            payload, status = f"{type(exc).__name__}: {exc}".encode(), -1
        end = time.perf_counter_ns()
        client_s += cpu_seconds(me) - client0  # the client's own work for the request (the check is not in it)
        problem = check(status, payload)
        if problem is not None:
            cell.errors += 1
            cell.first_error = cell.first_error or problem
        else:
            lats.append((end - start) / 1e6)
            cell.response_bytes = len(payload)
    busy = time.perf_counter() - t0
    client_ms = client_s * 1000 / n
    if target.gateway and settle_s > 0:
        await asyncio.sleep(settle_s)
    wall = time.perf_counter() - t0
    cpu_ms = NAN
    if pid:
        spent = cpu_seconds(pid) - c0 - idle_rate.get(pid, 0.0) * (wall - busy)
        cpu_ms = spent * 1000 / n
    cell.latencies_ms += lats
    cell.rounds.append({"round": rnd, "n": n, "ok": len(lats), "p50_ms": med(lats), "cpu_ms": cpu_ms,
                        "client_cpu_ms": client_ms, "wall_s": wall})


def idle_rates(pids: list[int], seconds: float) -> dict[int, float]:
    c0 = {pid: cpu_seconds(pid) for pid in pids}
    time.sleep(seconds)
    return {pid: max(0.0, (cpu_seconds(pid) - c0[pid]) / seconds) for pid in pids}


def max_body_bytes(yr_python: Path) -> int | None:
    done = subprocess.run([str(yr_python), "-c", "from yourouter.config.schema import Settings;"
                           "print(Settings.model_fields['max_body_bytes'].default)"],
                          capture_output=True, text=True, timeout=60)
    try:
        return int(done.stdout.strip())
    except ValueError:
        return None


async def probe_limit(session: aiohttp.ClientSession, gw: Target, limit: int) -> dict[str, Any]:
    """One body of limit + 1 bytes: expected 413 (the gateway may answer from Content-Length before reading)."""
    overhead = len(body_for("gateway", "m", 0))
    body = body_for("gateway", "m", limit + 1 - overhead)
    try:
        async with session.post(gw.url, data=body, headers=gw.headers) as response:
            payload = await response.read()
            return {"bytes": len(body), "status": response.status, "body": payload[:300].decode(errors="replace")}
    except (TimeoutError, aiohttp.ClientError) as exc:
        return {"bytes": len(body), "status": None, "body": f"{type(exc).__name__}: {exc}"}


# ----------------------------------------------------------------------------------------------- analysis

def analyse(cells: dict[tuple[str, int, str], Cell], sizes: list[int], chunks: list[int],
            body_targets: list[str], stream_targets: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"cells": {f"{k}/{x}/{t}": c.summary() for (k, x, t), c in cells.items()},
                           "fits": {}}
    for kind, xs, targets, unit in (("body", sizes, body_targets, MIB), ("stream", chunks, stream_targets, 1)):
        base = "direct" if kind == "body" else "direct-sse"
        for t in targets:
            got = [cells.get((kind, x, t)) for x in xs]
            if not all(got):
                continue
            lat = [c.summary()["p50_ms"] for c in got]  # type: ignore[union-attr]
            cpu = [c.summary()["cpu_ms"] for c in got]  # type: ignore[union-attr]
            xu = [x / unit for x in xs]
            fit: dict[str, Any] = {"latency": linfit(xu, lat), "cpu": linfit(xu, cpu)}
            if t != base and all(cells.get((kind, x, base)) for x in xs):
                added = [a - cells[(kind, x, base)].summary()["p50_ms"] for a, x in zip(lat, xs, strict=True)]
                fit["added"] = linfit(xu, added)
                fit["added_points"] = added
            fit["marginal_latency"] = [(lat[i] - lat[i - 1]) / (xu[i] - xu[i - 1]) for i in range(1, len(xs))]
            fit["marginal_cpu"] = [(cpu[i] - cpu[i - 1]) / (xu[i] - xu[i - 1]) for i in range(1, len(xs))]
            out["fits"][f"{kind}/{t}"] = fit
    return out


def report(a: dict[str, Any], meta: dict[str, Any], args: argparse.Namespace, sizes: list[int], chunks: list[int],
           body_targets: list[str], stream_targets: list[str]) -> str:
    cells, fits = a["cells"], a["fits"]
    L = [f"`{meta['command']}` — {meta['when']}, commit {meta['commit']}, {meta['machine']}; {meta['pinning']} "
         f"{args.rounds} rounds; others' load during the rounds (CPU time of processes other than this run's, both "
         f"CPUs, in % of one CPU) {fmt(meta.get('others_pct', NAN), '.0f')} %; {meta['elapsed_s']:.0f} s.", ""]
    if sizes and body_targets:
        L += ["### Request body size (one request at a time)", "",
              "Median latency (ms; request handed to aiohttp → response read) and CPU per request (ms; gateway or "
              "floor threads' run time, medians over rounds). Body = one user message of that many bytes + ~60 "
              "bytes of JSON.", "",
              "| size | " + " | ".join(f"{t} p50" for t in body_targets) + " | "
              + " | ".join(f"{t} CPU" for t in body_targets if t != "direct") + " | client CPU (direct) |",
              "|---|" + "---|" * (2 * len(body_targets) - (1 if "direct" in body_targets else 0)) + "---|"]
        for x in sizes:
            row = [size_label(x)]
            row += [fmt(cells.get(f"body/{x}/{t}", {}).get("p50_ms", NAN)) for t in body_targets]
            row += [fmt(cells.get(f"body/{x}/{t}", {}).get("cpu_ms", NAN), ".3f") for t in body_targets
                    if t != "direct"]
            row.append(fmt(cells.get(f"body/{x}/direct", {}).get("client_cpu_ms", NAN), ".3f"))
            L.append("| " + " | ".join(row) + " |")
        L += ["", "Linear fits over the sizes (y = a + b·MiB): latency, latency added over direct, and CPU per "
              "request. Marginal = Δy/ΔMiB between neighbouring sizes (constant if linear), from 64 KiB on.", "",
              "| target | latency ms/MiB (R²) | added ms/MiB (R²) | added at 1 MiB (ms, measured) | CPU ms/MiB (R²) | "
              "CPU a (ms) | marginal latency ms/MiB | marginal CPU ms/MiB |",
              "|---|---|---|---|---|---|---|---|"]
        start = next((i for i, x in enumerate(sizes) if x >= 64 * 1024), 1)
        for t in body_targets:
            f = fits.get(f"body/{t}")
            if not f:
                continue
            added = f.get("added", {"b": NAN, "r2": NAN})
            at1 = NAN
            if "added_points" in f and MIB in sizes:
                at1 = f["added_points"][sizes.index(MIB)]
            L.append(f"| {t} | {fmt(f['latency']['b'])} ({fmt(f['latency']['r2'], '.4f')}) | "
                     f"{fmt(added['b'])} ({fmt(added['r2'], '.4f')}) | {fmt(at1)} | "
                     f"{fmt(f['cpu']['b'])} ({fmt(f['cpu']['r2'], '.4f')}) | {fmt(f['cpu']['a'], '.3f')} | "
                     + ", ".join(fmt(v, '.1f') for v in f["marginal_latency"][max(0, start - 1):]) + " | "
                     + ", ".join(fmt(v, '.1f') for v in f["marginal_cpu"][max(0, start - 1):]) + " |")
        if meta.get("limit_probe"):
            p = meta["limit_probe"]
            L += ["", f"Body limit: `max_body_bytes` default {meta.get('max_body_bytes')} bytes "
                  f"({size_label(meta.get('max_body_bytes') or 0)}); a {p['bytes']}-byte body got "
                  f"{p['status']} ({p['body'][:120]})."]
    if chunks and stream_targets:
        L += ["", "### Stream length (one stream at a time, no chunk delay)", "",
              "Median total time (ms; request → whole stream read) and CPU per stream (ms): the proxy's (gateway or "
              "floor) and this client's (aiohttp reading the response, on the mocks' CPU). N content chunks + "
              "finish + usage + [DONE] from the mock; response bytes as received.", "",
              "| chunks | " + " | ".join(f"{t} p50" for t in stream_targets) + " | "
              + " | ".join(f"{t} CPU" for t in stream_targets if t != "direct-sse") + " | "
              + " | ".join(f"client CPU ({t})" for t in stream_targets) + " | response bytes (pass / translated) |",
              "|---|" + "---|" * (3 * len(stream_targets) - (1 if "direct-sse" in stream_targets else 0)) + "---|"]
        for x in chunks:
            row = [f"{x:,}"]
            row += [fmt(cells.get(f"stream/{x}/{t}", {}).get("p50_ms", NAN)) for t in stream_targets]
            row += [fmt(cells.get(f"stream/{x}/{t}", {}).get("cpu_ms", NAN), ".3f") for t in stream_targets
                    if t != "direct-sse"]
            row += [fmt(cells.get(f"stream/{x}/{t}", {}).get("client_cpu_ms", NAN), ".2f") for t in stream_targets]
            row.append(f"{cells.get(f'stream/{x}/gateway-sse', {}).get('response_bytes', 0):,} / "
                       f"{cells.get(f'stream/{x}/gateway-anthropic-sse', {}).get('response_bytes', 0):,}")
            L.append("| " + " | ".join(row) + " |")
        L += ["", "Linear fits over the lengths (y = a + b·chunks; b in µs per chunk). Marginal = Δy/Δchunks between "
              "neighbouring lengths, µs per chunk.", "",
              "| target | time µs/chunk (R²) | added µs/chunk (R²) | CPU µs/chunk (R²) | CPU a (ms) | marginal time "
              "µs/chunk | marginal CPU µs/chunk |", "|---|---|---|---|---|---|---|"]
        for t in stream_targets:
            f = fits.get(f"stream/{t}")
            if not f:
                continue
            added = f.get("added", {"b": NAN, "r2": NAN})
            L.append(f"| {t} | {fmt(f['latency']['b'] * 1000)} ({fmt(f['latency']['r2'], '.4f')}) | "
                     f"{fmt(added['b'] * 1000)} ({fmt(added['r2'], '.4f')}) | "
                     f"{fmt(f['cpu']['b'] * 1000)} ({fmt(f['cpu']['r2'], '.4f')}) | {fmt(f['cpu']['a'], '.3f')} | "
                     + ", ".join(fmt(v * 1000, '.2f') for v in f["marginal_latency"]) + " | "
                     + ", ".join(fmt(v * 1000, '.2f') for v in f["marginal_cpu"]) + " |")
    errors = {k: (c["errors"], c["first_error"]) for k, c in cells.items() if c["errors"]}
    total = sum(c["n"] + c["errors"] for c in cells.values())
    L += ["", f"Checks: {total} measured responses (+ warm-up), {sum(e for e, _ in errors.values())} wrong"
          + (": " + "; ".join(f"{k}: {n} ({first})" for k, (n, first) in list(errors.items())[:5]) if errors else "")
          + ". Each body response: status 200 and the mock's text in the target's dialect; each stream: every "
          "content chunk, in order, its text, the finish and the end event."]
    return "\n".join(L) + "\n"


def write_md(text: str) -> Path:
    return write_marked(HERE / "LARGE.md", MD_BEGIN, MD_END, "## Last run (written by bench/large.py)", text,
                        "# Large inputs: request body size and stream length\n\n"
                        "`.venv/bin/python bench/large.py --ref HEAD` (method: its docstring).\n\n")


# ----------------------------------------------------------------------------------------------- main

async def measure(args: argparse.Namespace, targets: dict[str, Target], stream_targets: dict[tuple[int, str], Target],
                  procs_by_name: dict[str, Proc], sizes: list[int], chunks: list[int], body_names: list[str],
                  stream_names: list[str], meta: dict[str, Any], ours: list[int],
                  mocks: dict[int, tuple[Proc, int]]) -> dict[tuple[str, int, str], Cell]:
    cells: dict[tuple[str, int, str], Cell] = {}
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    for proc, port in mocks.values():
        await wait_ready(f"http://127.0.0.1:{port}/health", proc)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        for name, proc in procs_by_name.items():  # every process answers a real request first
            t = targets.get(name)
            if t is not None:
                await wait_answer(session, t.url, t.headers, body_for(t.name, t.model, 10), proc)
        for (_n, name), t in stream_targets.items():
            if t.proc is not None:
                await wait_answer(session, t.url, t.headers, body_for(name, t.model, 10, stream=True), t.proc)
        # warm-up: every target, smallest and largest body, every stream length
        for name in body_names:
            t = targets[name]
            for size in (sizes[0], sizes[-1]) if sizes else ():
                warm = Cell("warm", size, name)
                await run_block(session, t, body_for(name, t.model, size), args.warmup,
                                partial(check_json, name), warm, 0, {}, 0)
                if warm.errors:
                    raise RuntimeError(f"warm-up of {name} at {size} bytes failed: {warm.first_error}")
        for n in chunks:
            for name in stream_names:
                t = stream_targets[(n, name)]
                warm = Cell("warm", n, name)
                await run_block(session, t, body_for(name, t.model, 30, stream=True), max(1, args.warmup // 2),
                                partial(check_stream, name, n), warm, 0, {}, 0)
                if warm.errors:
                    raise RuntimeError(f"warm-up of {name} at {n} chunks failed: {warm.first_error}")
        if args.probe_limit and "gateway" in targets and meta.get("max_body_bytes"):
            meta["limit_probe"] = await probe_limit(session, targets["gateway"], meta["max_body_bytes"])
            print(f"limit probe: {meta['limit_probe']['bytes']} bytes -> {meta['limit_probe']['status']}", flush=True)
        gw_pids = sorted({t.proc.pid for t in [*targets.values(), *stream_targets.values()] if t.proc is not None})
        await asyncio.sleep(args.settle_s)  # the warm-up's deferred work done before the idle rate is taken
        idle = idle_rates(gw_pids, 2.0)
        meta["idle_cpu_us_per_s"] = {str(pid): rate * 1e6 for pid, rate in idle.items()}
        busy0 = sum(b for b, _ in cpu_busy().values())
        ours0 = sum(cpu_seconds(p) for p in ours)
        t_rounds = time.monotonic()
        body_n = max(1, args.body_requests // args.rounds)
        stream_n = max(1, args.stream_requests // args.rounds)
        for rnd in range(1, args.rounds + 1):
            r0 = time.monotonic()
            order = body_names[rnd % len(body_names):] + body_names[:rnd % len(body_names)] if body_names else []
            for size in sizes:
                for name in order if (size + rnd) % 2 else list(reversed(order)):
                    t = targets[name]
                    cell = cells.setdefault(("body", size, name), Cell("body", size, name))
                    await run_block(session, t, body_for(name, t.model, size), body_n,
                                    partial(check_json, name), cell, args.settle_s, idle, rnd)
            sorder = (stream_names[rnd % len(stream_names):] + stream_names[:rnd % len(stream_names)]
                      if stream_names else [])
            for n in chunks:
                for name in sorder if (n + rnd) % 2 else list(reversed(sorder)):
                    t = stream_targets[(n, name)]
                    cell = cells.setdefault(("stream", n, name), Cell("stream", n, name))
                    await run_block(session, t, body_for(name, t.model, 30, stream=True), stream_n,
                                    partial(check_stream, name, n), cell, args.settle_s,
                                    idle, rnd)
            print(f"round {rnd}/{args.rounds}: {time.monotonic() - r0:.0f} s", flush=True)
        wall = time.monotonic() - t_rounds
        busy = sum(b for b, _ in cpu_busy().values()) - busy0
        ours_cpu = sum(cpu_seconds(p) for p in ours) - ours0
        meta["others_pct"] = max(0.0, (busy - ours_cpu) / wall * 100)
    return cells


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", help="install this commit (git archive) into ${TMPDIR:-/tmp}/yourouter-bench-<sha>")
    p.add_argument("--yourouter-bin", help="default: <repo>/.venv/bin/yourouter, or the one --ref installs")
    p.add_argument("--only", choices=["bodies", "streams"], help="run one curve only")
    p.add_argument("--sizes", default="1K,4K,16K,64K,256K,1M,4M", help="body sizes (1K,4K,16K,64K,256K,1M,4M)")
    p.add_argument("--chunks", default="100,1000,10000", help="stream lengths in content chunks (100,1000,10000)")
    p.add_argument("--body-targets", default=",".join(BODY_TARGETS), help=f"({','.join(BODY_TARGETS)})")
    p.add_argument("--stream-targets", default=",".join(STREAM_TARGETS), help=f"({','.join(STREAM_TARGETS)})")
    p.add_argument("--rounds", type=int, default=3, help="rounds over every cell (3)")
    p.add_argument("--body-requests", type=int, default=30, help="requests per size and target, over all rounds (30)")
    p.add_argument("--stream-requests", type=int, default=12,
                   help="streams per length and target, over all rounds (12)")
    p.add_argument("--warmup", type=int, default=4, help="warm-up requests per target and size (4)")
    p.add_argument("--settle-s", type=float, default=0.6, help="after a gateway block, wait this long before "
                   "reading its CPU, so deferred work (ledger flush every 0.5 s) is counted (0.6)")
    p.add_argument("--log-level", default="info", help="gateway --log-level (info: production, access log on)")
    p.add_argument("--gw-cpus", default="1", help="taskset CPU for the gateway and floors ('' = no pinning)")
    p.add_argument("--load-cpus", default="0", help="taskset CPU for the mocks and this client ('' = none)")
    p.add_argument("--mock", default=str(SHARED / "mock_upstream.py"))
    p.add_argument("--floor", default=str(SHARED / "floor_proxy.py"))
    p.add_argument("--floor-python", default=os.environ.get("BENCH_VENV", "/tmp/bench-venv") + "/bin/python",
                   help="python for floor_proxy.py (default $BENCH_VENV/bin/python, else this one)")
    p.add_argument("--no-probe-limit", dest="probe_limit", action="store_false",
                   help="skip the max_body_bytes + 1 probe")
    p.add_argument("--request-timeout", type=float, default=60.0)
    p.add_argument("--no-md", action="store_true", help="do not touch bench/LARGE.md")
    p.add_argument("--out", help="output dir (default bench/results/large-<stamp>)")
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be positive")
    sizes = [] if args.only == "streams" else sorted({parse_size(s) for s in args.sizes.split(",") if s.strip()})
    chunks = [] if args.only == "bodies" else sorted({int(s) for s in args.chunks.split(",") if s.strip()})
    body_names = [t for t in args.body_targets.split(",") if t] if sizes else []
    stream_names = [t for t in args.stream_targets.split(",") if t] if chunks else []
    for t in body_names:
        if t not in BODY_TARGETS:
            p.error(f"unknown body target {t}")
    for t in stream_names:
        if t not in STREAM_TARGETS:
            p.error(f"unknown stream target {t}")
    t_start = time.monotonic()

    yr_bin, commit = resolve_yourouter(args, p)
    floor_py = args.floor_python if Path(args.floor_python).exists() else sys.executable
    for path in (args.mock, args.floor):
        if not Path(path).exists():
            p.error(f"not found: {path}")
    nproc = os.cpu_count() or 1
    pin_load(args, nproc)
    pinning = (f"pinned (taskset): gateway + floors on CPU {args.gw_cpus}, mocks + client on CPU {args.load_cpus} "
               f"(nproc {nproc})." if args.gw_cpus else f"NOT pinned (nproc {nproc}).")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out, work = make_out_dirs(args.out, "large", stamp)

    exit_on_signals()
    install_uvloop()

    meta: dict[str, Any] = {"stamp": stamp, "when": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": commit,
                            "bin": str(yr_bin), "floor_python": floor_py,
                            "command": ".venv/bin/python bench/large.py" + "".join(f" {shlex.quote(a)}"
                                                                                 for a in sys.argv[1:]),
                            "pinning": pinning}
    machine = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   "?")
    meta["machine"] = f"{nproc} × {machine}, Python {sys.version.split()[0]} (client)"
    if args.probe_limit and sizes:
        meta["max_body_bytes"] = max_body_bytes(yr_bin.parent / "python")
    procs: list[Proc] = []
    cells: dict[tuple[str, int, str], Cell] = {}
    try:
        body_port = free_port()
        mocks = {BODY_MOCK_CHUNKS: body_port, **{n: free_port() for n in chunks}}
        mock_procs: dict[int, Proc] = {}
        for n, port in mocks.items():
            mock_procs[n] = Proc([sys.executable, args.mock, "--port", str(port), "--chunks", str(n)],
                                 work / f"mock-{n}.log", args.load_cpus)
            procs.append(mock_procs[n])
        floors: dict[int, tuple[Proc, int]] = {}
        need_floor = [BODY_MOCK_CHUNKS] if "floor" in body_names else []
        need_floor += [n for n in chunks if "floor-sse" in stream_names]
        for n in dict.fromkeys(need_floor):
            port = free_port()
            env = {**os.environ, "UPSTREAM_FAST": f"http://127.0.0.1:{mocks[n]}/v1",
                   "UPSTREAM_PACED": f"http://127.0.0.1:{mocks[n]}/v1", "UPSTREAM_KEY": UPSTREAM_KEY}
            proc = Proc([floor_py, args.floor, "--port", str(port)], work / f"floor-{n}.log", args.gw_cpus, env)
            procs.append(proc)
            floors[n] = (proc, port)
        gw_port = free_port()
        config = gateway_config(work, body_port, {n: mocks[n] for n in chunks}, work)
        env = {k: v for k, v in os.environ.items() if not k.startswith("YOUROUTER_")}
        gw = Proc([str(yr_bin), "serve", "--config", str(config), "--port", str(gw_port), "--log-level",
                   args.log_level], work / "gateway.log", args.gw_cpus, env)
        procs.append(gw)
        gw_base = f"http://127.0.0.1:{gw_port}"
        openai_h = {"content-type": "application/json"}
        free_h = {**openai_h, "authorization": f"Bearer {KEY_FREE}"}
        limited_h = {**openai_h, "authorization": f"Bearer {KEY_LIMITED}"}
        anth_h = {**openai_h, "x-api-key": KEY_FREE, "anthropic-version": "2023-06-01"}
        targets: dict[str, Target] = {}
        procs_by_name: dict[str, Proc] = {}
        for name in body_names:
            if name == "direct":
                targets[name] = Target(name, f"http://127.0.0.1:{body_port}/v1/chat/completions", free_h, "m", None)
                procs_by_name[name] = mock_procs[BODY_MOCK_CHUNKS]
            elif name == "floor":
                fp, fport = floors[BODY_MOCK_CHUNKS]
                targets[name] = Target(name, f"http://127.0.0.1:{fport}/v1/chat/completions", free_h, "m", fp)
                procs_by_name[name] = fp
            else:
                path = "/v1/messages" if name == "gateway-anthropic" else "/v1/chat/completions"
                headers = {"gateway": free_h, "gateway-limited": limited_h, "gateway-anthropic": anth_h}[name]
                targets[name] = Target(name, gw_base + path, headers, "m", gw, gateway=True)
                procs_by_name[name] = gw
        stream_targets: dict[tuple[int, str], Target] = {}
        for n in chunks:
            for name in stream_names:
                model = f"m-{n}"
                if name == "direct-sse":
                    t = Target(name, f"http://127.0.0.1:{mocks[n]}/v1/chat/completions", free_h, model, None)
                elif name == "floor-sse":
                    fp, fport = floors[n]
                    t = Target(name, f"http://127.0.0.1:{fport}/v1/chat/completions", free_h, model, fp)
                elif name == "gateway-sse":
                    t = Target(name, gw_base + "/v1/chat/completions", free_h, model, gw, gateway=True)
                else:
                    t = Target(name, gw_base + "/v1/messages", anth_h, model, gw, gateway=True)
                stream_targets[(n, name)] = t
        ours = [os.getpid(), *(proc.pid for proc in procs)]
        cells = asyncio.run(measure(args, targets, stream_targets, procs_by_name, sizes, chunks, body_names,
                                    stream_names, meta, ours, {n: (mock_procs[n], port) for n, port in mocks.items()}))
    finally:
        for proc in reversed(procs):
            proc.stop()
    meta["elapsed_s"] = time.monotonic() - t_start
    a = analyse(cells, sizes, chunks, body_names, stream_names)
    text = report(a, meta, args, sizes, chunks, body_names, stream_names)
    (out / "report.md").write_text(text)
    (out / "data.json").write_text(json.dumps(
        {"meta": meta, "args": vars(args), "analysis": a,
         "cells": {f"{k}/{x}/{t}": {"rounds": c.rounds, "latencies_ms": c.latencies_ms, "errors": c.errors,
                                    "first_error": c.first_error} for (k, x, t), c in cells.items()}},
        default=str))
    print(text)
    if not args.no_md:
        print(f"updated {write_md(text)}")
    print(f"written to {out}/report.md (+ data.json; configs and logs in {work})")
    return 0 if not any(c.errors for c in cells.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
