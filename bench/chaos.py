#!/usr/bin/env python3
"""Chaos benchmark: one of two deployments fails 30 % of requests; what do clients see, and what does a failover add?

    .venv/bin/python bench/chaos.py                       # the eight default scenarios, one pass (~4 min)
    .venv/bin/python bench/chaos.py --ref HEAD --repeat 3 # a commit (git archive -> own venv), 3 passes (~13 min)
    .venv/bin/python bench/chaos.py --scenarios d0-c1 d20-c1 --requests 2000
    .venv/bin/python bench/chaos.py --ref HEAD --profile --scenarios d0-c10 d0-c10-ok --requests 40000
    .venv/bin/python bench/chaos_profile.py bench/results/chaos-<stamp>      # where a failover's CPU goes

The question (routing issue): "one of two deployments fails 30 % of requests; report the success rate and added p99
latency seen by clients (target: 100 % success, p99 added under 5 ms for the retried requests beyond the failed
attempt's own time)".

Set-up (per scenario and pass: fresh processes). `bench/chaos_upstream.py`, one process with two ports: `flaky`
answers a chat completion, at random with probability 0.3, with an HTTP 500 at once (or after the scenario's
fail delay), else with a chat.completion after the scenario's delay; `healthy` always answers after that delay.
The gateway (`yourouter serve`, production defaults: log level info, access log on, SQLite ledger) has both as
`type: openai` deployments of model `m`, flaky first. Like bench/run.sh: the gateway is pinned to CPU 1, the
upstream and this client (aiohttp on uvloop) to CPU 0 (`taskset`; with `nproc` < 2 nothing is pinned and the
report says so).

Scenarios (default all; `--scenarios NAME ...`):

    d0-c1, d0-c10     upstream answers at once; concurrency 1 and 10        strategy ordered, cooldowns off
    d0-c10-ok         the same at c=10 without failures: the control for the gateway CPU a failover costs
    d20-c1, d20-c10   success after 20 ms, the 500 at once                  strategy ordered, cooldowns off
    d20j-c10          success after 10-30 ms (uniform), the 500 at once     strategy ordered, cooldowns off
                      (with a fixed delay, closed-loop clients fall into step and reach the gateway in bursts)
    d20f20-c10        success and 500 both after 20 ms                      strategy ordered, cooldowns off
    latency-d20-c10   success after 20 ms, 500 at once, --latency-requests (~35 s, longer than one 30 s
                      cooldown); strategy latency with the default breaker (3 failures in 30 s -> 30 s cooldown,
                      then a half-open probe): what users get with the default config

"ordered, cooldowns off" = `routing: {strategy: ordered, cooldown_failures: 1000000}`: the flaky deployment is
always tried first and never skipped, so ~30 % of requests fail over to the healthy one.

Measurement. Every request carries an id in its message content (`chaos-<n>`); the gateway passes an OpenAI body to
an OpenAI upstream untouched, so the upstream stamps each attempt with it. All stamps are
`clock_gettime(CLOCK_MONOTONIC)`, one system-wide clock, so the client's and the upstream's compare directly:

    client    S    request handed to aiohttp          E    response body read
    upstream  a_k  attempt k's first byte parsed      s_k  its response handed to the kernel

Per request: client latency C = E - S; each attempt's upstream time u_k = s_k - a_k; the gateway's time
G = C - sum_k u_k (everything that is not the upstream working: the gateway, the client, the kernel). A request
"answered at attempt 1" has one upstream attempt (a 200); a "failed-over" one has two (the flaky port's 500, then
the healthy port's 200), which must agree with the gateway's `x-yourouter-attempts` header (anything else is
"other"). The failed attempt's own time is F = u_1 of a failed-over request. For each failed-over request:

    added_gw  = G - median(G of the attempt-1 requests)                             judged: p99 < 5 ms
                = C - F - u_2 - median(C - u_1 of the attempt-1 requests): what the request spent beyond the
                failed attempt's own time and beyond an upstream answer, compared with the typical request
    added     = C - F - median(C of the attempt-1 requests)                          the issue's words literally
                (the same but for the healthy attempt's own time, so the upstream's delay jitter counts too:
                ≤ 1 ms with a fixed delay, libuv timers having 1 ms resolution; ±10 ms in d20j-c10)
    gap       = a_2 - s_1: the 500 leaving the flaky upstream -> the retry reaching the healthy one, i.e. the
                gateway's own failover work (read the 500, account it, pick the next deployment, send again)
    in, out   = a_1 - S and E - s_last, per group, for comparison
    tails     = p99(G | failed over) - p99(G | attempt 1): the two groups' tails compared

The target is judged on p99(added_gw) < 5 ms over the failed-over requests. It compares each retried request with
the typical (median) request, so the normal requests' own tail (a ledger flush, a GC pause, other requests' work
queued on the same core) is in it too; `tails` compares tail with tail, and `gap` isolates the failover itself.

Shared machine. Other engineers' test runs use the same two CPUs, and they show in every tail. A monitor samples
/proc every --monitor-interval s during the measured requests: per CPU, the busy time (user+nice+system+irq+
softirq+steal from /proc/stat) minus this benchmark's own processes pinned there (/proc/<pid>/stat). A request is
"quiet" when every interval it overlaps had others' load below --quiet-below % on both CPUs; the latency tables
are computed over quiet requests (the attempt-1 baseline too) and the failover table gives `added_gw` p99 over all
requests as well. Before each scenario the script also waits (up to --quiet-wait s) for a quiet second.

Writes bench/results/chaos-<stamp>/{report.md, data.json (every request's stamps and the monitor's intervals),
logs} (`--out`), prints the report. Only 127.0.0.1; every loop is bounded; the processes it starts are ended
(process group: SIGTERM, then SIGKILL) on exit, error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
from _common import exit_on_signals, install_uvloop, make_out_dirs, pin_load, resolve_yourouter

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KEY = "sk-chaos-0123456789abcdef"
CLOCK = time.CLOCK_MONOTONIC
TARGET_MS = 5.0
HZ = os.sysconf("SC_CLK_TCK")
NAN = float("nan")


def now_ns() -> int:
    return time.clock_gettime_ns(CLOCK)


@dataclass(frozen=True)
class Scenario:
    name: str
    delay_ms: float
    fail_delay_ms: float
    concurrency: int
    strategy: str  # "ordered" (cooldowns off) | "latency" (default routing section)
    requests: int | None = None  # None: --requests; -1: --latency-requests
    fail_rate: float | None = None  # None: --fail-rate
    jitter_ms: float = 0.0  # success delay uniform in delay ± jitter

    @property
    def label(self) -> str:
        fail = "500 at once" if self.fail_delay_ms == 0 else f"500 after {self.fail_delay_ms:g} ms"
        if self.fail_rate == 0:
            fail = "no failures (control)"
        routing = "ordered, cooldowns off" if self.strategy == "ordered" else "latency, default breaker"
        delay = f"{self.delay_ms:g} ± {self.jitter_ms:g}" if self.jitter_ms else f"{self.delay_ms:g}"
        return f"success after {delay} ms, {fail}; c={self.concurrency}; {routing}"


SCENARIOS = [
    Scenario("d0-c1", 0, 0, 1, "ordered"),
    Scenario("d0-c10", 0, 0, 10, "ordered"),
    Scenario("d0-c10-ok", 0, 0, 10, "ordered", fail_rate=0.0),
    Scenario("d20-c1", 20, 0, 1, "ordered"),
    Scenario("d20-c10", 20, 0, 10, "ordered"),
    Scenario("d20j-c10", 20, 0, 10, "ordered", jitter_ms=10),
    Scenario("d20f20-c10", 20, 20, 10, "ordered"),
    Scenario("latency-d20-c10", 20, 0, 10, "latency", requests=-1),
]


# ----------------------------------------------------------------------------------------------- processes

class Proc:
    """A child in its own session/process group; stop() = SIGTERM to the group, SIGKILL after a grace period."""

    def __init__(self, argv: list[str], log: Path, cpus: str | None, env: dict[str, str] | None = None) -> None:
        if cpus and shutil.which("taskset"):
            argv = ["taskset", "-c", cpus, *argv]
        self.argv, self.log_path = argv, log
        self.log = open(log, "wb")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True, env=env, cwd=str(log.parent))

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def cpu_seconds(pid: int) -> float:
    """CPU time of one process, all threads: the scheduler's ns run times (/proc/<pid>/task/*/schedstat), else
    utime + stime (10 ms ticks)."""
    try:
        return sum(int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
                   for tid in os.listdir(f"/proc/{pid}/task")) / 1e9
    except (OSError, IndexError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ
    except (OSError, IndexError, ValueError):
        return NAN


def cpu_busy() -> dict[str, tuple[float, float]]:
    """Per CPU (from /proc/stat), seconds: (busy incl. steal, steal); busy = user+nice+system+irq+softirq+steal."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *v = line.split()
                user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in v[:8])
                out[name[3:]] = ((user + nice + system + irq + softirq + steal) / HZ, steal / HZ)
    return out


class LoadMonitor:
    """Samples, every `interval` s, each CPU's busy time and our own processes' CPU time; `others(i)` is the share of
    each CPU that processes other than ours used in interval i."""

    def __init__(self, ours: dict[str, list[int]], interval: float) -> None:
        self.ours, self.interval = ours, interval  # cpu -> pids pinned there
        self.ticks: list[tuple[int, dict[str, tuple[float, float]], dict[str, float]]] = []
        self._task: asyncio.Task[None] | None = None

    def tick(self) -> None:
        self.ticks.append((now_ns(), cpu_busy(),
                           {cpu: sum(cpu_seconds(pid) for pid in pids) for cpu, pids in self.ours.items()}))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.tick()

    def start(self) -> None:
        self.tick()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.tick()

    def intervals(self) -> list[dict[str, float]]:
        out = []
        for (t0, busy0, ours0), (t1, busy1, ours1) in zip(self.ticks, self.ticks[1:], strict=False):
            wall = (t1 - t0) / 1e9
            row: dict[str, float] = {"t0": t0, "t1": t1}
            for cpu in busy1:
                used = busy1[cpu][0] - busy0[cpu][0]
                mine = ours1.get(cpu, 0.0) - ours0.get(cpu, 0.0) if cpu in self.ours else 0.0
                row[f"other_cpu{cpu}"] = max(0.0, used - mine) / wall * 100
                row[f"steal_cpu{cpu}"] = (busy1[cpu][1] - busy0[cpu][1]) / wall * 100
            out.append(row)
        return out


def wait_quiet(max_wait_s: float, threshold: float) -> tuple[float, float]:
    """Waits (up to max_wait_s) for a 1 s window in which the busiest CPU was busy below threshold %. Returns
    (seconds waited, that window's load %)."""
    t0 = time.monotonic()
    while True:
        before = cpu_busy()
        time.sleep(1.0)
        after = cpu_busy()
        load = max((after[c][0] - before[c][0]) * 100 for c in after)
        waited = time.monotonic() - t0
        if load < threshold or waited >= max_wait_s:
            return waited, load


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gateway_config(work: Path, name: str, scenario: Scenario, flaky: int, healthy: int) -> Path:
    routing = "routing: {strategy: ordered, cooldown_failures: 1000000}\n" if scenario.strategy == "ordered" else ""
    config = work / f"{name}.yaml"
    config.write_text(f"""\
host: 127.0.0.1
database_url: "sqlite:///{work}/{name}.db"
keys: [{{key: "{KEY}", name: chaos, models: ["*"]}}]
{routing}providers:
  - {{name: flaky, vendor: openai, type: openai, base_url: "http://127.0.0.1:{flaky}/v1", api_key: sk-up,
      models: [m]}}
  - {{name: healthy, vendor: openai, type: openai, base_url: "http://127.0.0.1:{healthy}/v1", api_key: sk-up,
      models: [m]}}
""")
    return config


def start_profiler(args: argparse.Namespace, pid: int, out: Path, name: str) -> Proc:
    """py-spy record of the gateway during the measured requests: collapsed stacks with line numbers, only of the
    thread holding the GIL (`--gil`), so that the samples are where the gateway's CPU goes. Not `--nonblocking`:
    stacks read while the gateway runs come out truncated (half the samples lose their `_attempt` frame)."""
    py_spy = Path(sys.executable).parent / "py-spy"
    binary = str(py_spy) if py_spy.exists() else shutil.which("py-spy")
    if binary is None:
        raise SystemExit("--profile needs py-spy (.venv/bin/pip install py-spy)")
    proc = Proc([binary, "record", "--pid", str(pid), "--rate", str(args.profile_rate), "--format", "raw",
                 "--gil", "--full-filenames", "-o", str(out / f"{name}.pyspy.txt")],
                out / f"{name}.py-spy.log", args.load_cpus)
    time.sleep(1.0)  # attached before the load starts
    if not proc.alive():
        raise SystemExit(f"py-spy failed:\n{proc.tail()}")
    return proc


def stop_profiler(proc: Proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGINT)  # py-spy writes its file on SIGINT
        proc.p.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    proc.stop()


# ----------------------------------------------------------------------------------------------- load

@dataclass
class Sample:
    rid: int
    start_ns: int
    end_ns: int
    status: int
    attempts: int  # x-yourouter-attempts
    provider: str
    problem: str | None = None  # None: the body is the answer to this request
    upstream: list[tuple[int, int, int, int]] = field(default_factory=list)  # (role, arrival, sent, status)
    quiet: bool = True
    run: int = 0  # pass


async def wait_ready(url: str, proc: Proc, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{proc.argv} exited during start-up:\n{proc.tail()}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f} s\n{proc.tail()}")


async def drive(session: aiohttp.ClientSession, url: str, ids: range, concurrency: int,
                deadline_s: float) -> list[Sample]:
    out: list[Sample] = []
    queue = iter(ids)
    end = time.monotonic() + deadline_s
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}

    async def worker() -> None:
        for rid in queue:
            if time.monotonic() > end:
                return
            body = b'{"model":"m","messages":[{"role":"user","content":"chaos-%d"}]}' % rid
            start = now_ns()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    payload = await response.read()
                    end_ns = now_ns()
                    status = response.status
                    attempts = int(response.headers.get("x-yourouter-attempts", "0"))
                    provider = response.headers.get("x-yourouter-provider", "")
            except (TimeoutError, aiohttp.ClientError) as exc:
                end_ns, status, attempts, provider = now_ns(), -1, 0, ""
                payload = f"{type(exc).__name__}: {exc}".encode()
            problem = None
            if status != 200:
                problem = f"HTTP {status}: {payload[:200]!r}"
            elif b'"content":"ok chaos-%d"' % rid not in payload:
                problem = f"not this request's answer: {payload[:200]!r}"
            out.append(Sample(rid, start, end_ns, status, attempts, provider, problem))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


async def run_scenario(scenario: Scenario, run: int, args: argparse.Namespace, yr_bin: Path, out: Path,
                       work: Path) -> tuple[list[Sample], dict[str, object]]:
    name = scenario.name if args.repeat == 1 else f"{scenario.name}.{run}"
    flaky, healthy, gw_port = free_port(), free_port(), free_port()
    requests = (args.latency_requests if scenario.requests == -1 else scenario.requests) or args.requests
    fail_rate = args.fail_rate if scenario.fail_rate is None else scenario.fail_rate
    upstream = Proc([sys.executable, str(HERE / "chaos_upstream.py"), "--flaky-port", str(flaky), "--healthy-port",
                     str(healthy), "--fail-rate", str(fail_rate), "--delay-ms", str(scenario.delay_ms),
                     "--delay-jitter-ms", str(scenario.jitter_ms),
                     "--fail-delay-ms", str(scenario.fail_delay_ms), "--seed", str(args.seed + run)],
                    work / f"{name}.upstream.log", args.load_cpus)
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOUROUTER_")}
    gateway = Proc([str(yr_bin), "serve", "--config", str(gateway_config(work, name, scenario, flaky, healthy)),
                    "--port", str(gw_port), "--log-level", args.log_level], work / f"{name}.gateway.log",
                   args.gw_cpus, env)
    try:
        await wait_ready(f"http://127.0.0.1:{healthy}/health", upstream)
        await wait_ready(f"http://127.0.0.1:{gw_port}/health", gateway)
        url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        connector = aiohttp.TCPConnector(limit=scenario.concurrency, limit_per_host=scenario.concurrency)
        timeout = aiohttp.ClientTimeout(total=args.request_timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session, \
                aiohttp.ClientSession() as control:
            warm = await drive(session, url, range(1, args.warmup + 1), scenario.concurrency, args.run_timeout)
            if sum(s.status == 200 for s in warm) < len(warm) * 0.9:
                raise RuntimeError(f"{name}: warm-up failed: {warm[0].problem}\n{gateway.tail()}")
            async with control.get(f"http://127.0.0.1:{flaky}/_records") as response:
                await response.read()  # drop the warm-up's records
            profiler = start_profiler(args, gateway.pid, out, name) if args.profile else None
            mine = [upstream.pid, os.getpid()] + ([profiler.pid] if profiler is not None else [])
            ours = {args.gw_cpus: [gateway.pid], args.load_cpus: mine} if args.gw_cpus else {}
            monitor = LoadMonitor(ours, args.monitor_interval)
            cpu0, load0 = cpu_seconds(gateway.pid), cpu_seconds(upstream.pid) + cpu_seconds(os.getpid())
            t0 = time.perf_counter()
            monitor.start()
            samples = await drive(session, url, range(args.warmup + 1, args.warmup + 1 + requests),
                                  scenario.concurrency, args.run_timeout)
            await monitor.stop()
            wall, cpu = time.perf_counter() - t0, cpu_seconds(gateway.pid) - cpu0
            load_cpu = cpu_seconds(upstream.pid) + cpu_seconds(os.getpid()) - load0
            if profiler is not None:
                stop_profiler(profiler)
            await asyncio.sleep(0.05)
            async with control.get(f"http://127.0.0.1:{flaky}/_records") as response:
                records = json.loads(await response.read())
        if not gateway.alive():
            raise RuntimeError(f"{name}: the gateway died:\n{gateway.tail()}")
    finally:
        gateway.stop()
        upstream.stop()
    by_id: dict[int, list[tuple[int, int, int, int]]] = {}
    for role, rid, arrival, sent, status in records:
        by_id.setdefault(rid, []).append((role, arrival, sent, status))
    intervals = monitor.intervals()
    noisy = [(iv["t0"], iv["t1"]) for iv in intervals
             if max(v for k, v in iv.items() if k.startswith("other_")) >= args.quiet_below]
    for sample in samples:
        sample.upstream = sorted(by_id.get(sample.rid, []), key=lambda r: r[1])
        sample.quiet = not any(t0 < sample.end_ns and sample.start_ns < t1 for t0, t1 in noisy)
        sample.run = run
    others = {k: sum(iv[k] * (iv["t1"] - iv["t0"]) for iv in intervals) / max(1, intervals[-1]["t1"]
                                                                             - intervals[0]["t0"])
              for k in intervals[0] if k.startswith(("other_", "steal_"))} if intervals else {}
    meta: dict[str, object] = {"run": run, "wall_s": wall, "gateway_cpu_s": cpu, "load_cpu_s": load_cpu,
                               "requests": requests, "fail_rate": fail_rate, "intervals": intervals, **others}
    return samples, meta


# ----------------------------------------------------------------------------------------------- analysis

def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return NAN
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def med(values: list[float]) -> float:
    return statistics.median(values) if values else NAN


def ms(ns: int) -> float:
    return ns / 1e6


def classify(samples: list[Sample]) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(answered at attempt 1, failed over flaky:500 -> healthy:200, anything else)."""
    first, over, other = [], [], []
    for s in samples:
        shape = [(role, status) for role, _, _, status in s.upstream]
        if s.problem is None and len(shape) == 1 and shape[0][1] == 200 and s.attempts == 1:
            first.append(s)
        elif s.problem is None and shape == [(0, 500), (1, 200)] and s.attempts == 2:
            over.append(s)
        else:
            other.append(s)
    return first, over, other


def figures(samples: list[Sample]) -> dict[str, float]:
    """Latency figures (ms) of one set of samples (one pass, or passes pooled): see the module docstring."""
    first, over, _ = classify(samples)
    f: dict[str, float] = {"n_first": len(first), "n_over": len(over)}
    c_first = [ms(s.end_ns - s.start_ns) for s in first]
    base_c = med(c_first)
    base_gw = med([ms(s.end_ns - s.start_ns - (s.upstream[0][2] - s.upstream[0][1])) for s in first])
    c_over = [ms(s.end_ns - s.start_ns) for s in over]
    fail = [ms(s.upstream[0][2] - s.upstream[0][1]) for s in over]
    c_minus_f = [c - x for c, x in zip(c_over, fail, strict=True)]
    added = [x - base_c for x in c_minus_f]
    added_gw = [ms(s.end_ns - s.start_ns - sum(sent - arr for _, arr, sent, _ in s.upstream)) - base_gw
                for s in over]
    gap = [ms(s.upstream[1][1] - s.upstream[0][2]) for s in over]
    for group, xs in (("first", first), ("over", over)):
        lat = [ms(s.end_ns - s.start_ns) for s in xs]
        for key, values in (("c", lat), ("up", [ms(s.upstream[-1][2] - s.upstream[-1][1]) for s in xs]),
                            ("in", [ms(s.upstream[0][1] - s.start_ns) for s in xs]),
                            ("out", [ms(s.end_ns - s.upstream[-1][2]) for s in xs])):
            f[f"{group}_{key}_p50"], f[f"{group}_{key}_p99"] = pct(values, 50), pct(values, 99)
        f[f"{group}_c_max"] = max(lat) if lat else NAN
    for key, values in (("fail", fail), ("added", added), ("added_gw", added_gw), ("gap", gap)):
        f[f"{key}_p50"], f[f"{key}_p99"] = pct(values, 50), pct(values, 99)
        f[f"{key}_max"] = max(values) if values else NAN
    g_first = [ms(s.end_ns - s.start_ns - (s.upstream[0][2] - s.upstream[0][1])) for s in first]
    f["tails"] = pct([g + base_gw for g in added_gw], 99) - pct(g_first, 99)
    return f


@dataclass
class Result:
    scenario: Scenario
    samples: list[Sample]
    runs: list[dict[str, object]]
    all: dict[str, float] = field(default_factory=dict)
    quiet: dict[str, float] = field(default_factory=dict)
    per_run: list[tuple[dict[str, float], dict[str, float]]] = field(default_factory=list)  # (all, quiet)

    def analyse(self) -> Result:
        self.all = figures(self.samples)
        self.quiet = figures([s for s in self.samples if s.quiet])
        for meta in self.runs:
            mine = [s for s in self.samples if s.run == meta["run"]]
            self.per_run.append((figures(mine), figures([s for s in mine if s.quiet])))
        return self

    def total(self, key: str) -> float:
        return sum(float(m[key]) for m in self.runs)  # type: ignore[arg-type]

    def mean_load(self, key: str) -> float:
        wall = self.total("wall_s")
        return sum(float(m.get(key, 0.0)) * float(m["wall_s"]) for m in self.runs) / wall  # type: ignore[arg-type]


def fmt(x: float, spec: str = ".2f") -> str:
    return "–" if x != x else format(x, spec)  # NaN -> dash


def report(results: list[Result], args: argparse.Namespace, meta: dict[str, str]) -> str:
    passes = f"{args.repeat} passes (all scenarios in turn, then again)" if args.repeat > 1 else "one pass"
    lines = [
        f"# Chaos: one of two deployments fails {args.fail_rate:.0%} of requests",
        "",
        f"`{meta['command']}` — {meta['when']}, commit {meta['commit']} ({meta['bin']}), {meta['machine']}. "
        f"{meta['pinning']} Gateway: `serve --log-level {args.log_level}` (access log "
        f"{'on' if args.log_level in ('debug', 'info') else 'off'}), fresh per scenario and pass; {passes}; "
        f"{args.warmup} warm-up requests, then the measured ones. Quiet requests: others' load below "
        f"{args.quiet_below:g} % on both CPUs in every {args.monitor_interval:g} s interval they overlap. Method: "
        "`bench/chaos.py`'s docstring and bench/CHAOS.md.",
        "",
        "## Success (all requests)",
        "",
        "| scenario | set-up | requests | success | at attempt 1 | failed over | other | quiet | gateway CPU ms/req | "
        "gateway core busy | upstream + client core busy | others' load CPU 0 / 1 (steal) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        first, over, other = classify(r.samples)
        n = len(r.samples)
        ok = sum(s.problem is None for s in r.samples)
        wall = r.total("wall_s")
        steal = r.mean_load("steal_cpu0") + r.mean_load("steal_cpu1")
        lines.append(
            f"| {r.scenario.name} | {r.scenario.label} | {n} | {ok / max(1, n):.2%} | {len(first)} | {len(over)} | "
            f"{len(other)} | {sum(s.quiet for s in r.samples) / max(1, n):.0%} | "
            f"{r.total('gateway_cpu_s') * 1000 / max(1, n):.3f} | {r.total('gateway_cpu_s') / wall * 100:.0f} % | "
            f"{r.total('load_cpu_s') / wall * 100:.0f} % | {r.mean_load('other_cpu0'):.0f} % / "
            f"{r.mean_load('other_cpu1'):.0f} % ({steal:.0f} %) |")
    ctrl = {r.scenario.name: r for r in results}
    if "d0-c10" in ctrl and "d0-c10-ok" in ctrl:
        a, b = ctrl["d0-c10"], ctrl["d0-c10-ok"]
        share = len(classify(a.samples)[1]) / len(a.samples)
        per_pass = []
        for ma, mb in zip(a.runs, b.runs, strict=True):
            na, nb = sum(s.run == ma["run"] for s in a.samples), sum(s.run == mb["run"] for s in b.samples)
            extra = float(ma["gateway_cpu_s"]) / na - float(mb["gateway_cpu_s"]) / nb  # type: ignore[arg-type]
            per_pass.append(extra * 1e6 / share)
        spread = f" (passes: {', '.join(f'{x:.0f}' for x in per_pass)})" if len(per_pass) > 1 else ""
        lines += ["", f"Gateway CPU one failover costs: (CPU per request of d0-c10 − of d0-c10-ok) / {share:.1%} "
                  f"failed over = {med(per_pass):.0f} µs{spread} (scheduler run time of the gateway's threads; "
                  "bench/chaos_profile.py splits it by code line)."]
    lines += [
        "",
        "Others' load: the share of each CPU used during the measured requests by processes other than this "
        "benchmark's (other engineers' test runs on this shared machine; steal = the hypervisor's).",
        "",
        "## Latency by group (quiet requests; ms)",
        "",
        "client = request start → body read; upstream = the answering attempt's own time at the upstream; in = client "
        "→ first upstream arrival; out = last upstream send → client.",
        "",
        "| scenario | group | n | client p50 | client p99 | client max | upstream p50 | in p50 | in p99 | out p50 | "
        "out p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        f = r.quiet
        for group, label in (("first", "attempt 1"), ("over", "failed over")):
            if not f[f"n_{group}"]:
                continue
            lines.append(f"| {r.scenario.name} | {label} | {f[f'n_{group}']:.0f} | {fmt(f[f'{group}_c_p50'])} | "
                         f"{fmt(f[f'{group}_c_p99'])} | {fmt(f[f'{group}_c_max'])} | {fmt(f[f'{group}_up_p50'])} | "
                         f"{fmt(f[f'{group}_in_p50'])} | {fmt(f[f'{group}_in_p99'])} | {fmt(f[f'{group}_out_p50'])} | "
                         f"{fmt(f[f'{group}_out_p99'])} |")
    lines += [
        "",
        "## What a failover adds (failed-over requests; ms)",
        "",
        "F = the failed attempt's own time at the upstream (arrival → 500 sent); gap = 500 sent → the retry's "
        "arrival at the healthy upstream; G = client latency − the attempts' upstream times; added_gw = G − median G "
        "of the attempt-1 requests (judged: p99 < 5 ms); added = C − F − median C of the attempt-1 requests; tails "
        "= p99(G | failed over) − p99(G | attempt 1). Quiet requests, except the `all` columns.",
        "",
        "| scenario | n quiet / all | F p50 | gap p50 | gap p99 | added_gw p50 | **added_gw p99** | added_gw max | "
        "added p99 | tails | added_gw p99, all | p99 < 5 ms (quiet / all) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        q, a = r.quiet, r.all
        if not a["n_over"]:
            lines.append(f"| {r.scenario.name} | 0 / 0 | | | | | | | | | | no failovers |")
            continue
        ok = all(s.problem is None for s in r.samples)
        verdict = " / ".join("–" if x != x else "met" if x < TARGET_MS else "**not met**"
                             for x in (q["added_gw_p99"], a["added_gw_p99"]))
        lines.append(f"| {r.scenario.name} | {q['n_over']:.0f} / {a['n_over']:.0f} | {fmt(q['fail_p50'], '.3f')} | "
                     f"{fmt(q['gap_p50'])} | {fmt(q['gap_p99'])} | {fmt(q['added_gw_p50'], '+.2f')} | "
                     f"**{fmt(q['added_gw_p99'], '+.2f')}** | {fmt(q['added_gw_max'], '+.2f')} | "
                     f"{fmt(q['added_p99'], '+.2f')} | {fmt(q['tails'], '+.2f')} | "
                     f"{fmt(a['added_gw_p99'], '+.2f')} | {verdict}{'' if ok else ' (success < 100 %)'} |")
    if args.repeat > 1:
        lines += ["", "## Per pass", "",
                  "| scenario | pass | others' load CPU 0 / 1 | quiet | failed over | gap p99 | added_gw p99 (quiet) "
                  "| added_gw p99 (all) | tails (quiet) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in results:
            for meta_run, (fa, fq) in zip(r.runs, r.per_run, strict=True):
                run = meta_run["run"]
                mine = [s for s in r.samples if s.run == run]
                lines.append(f"| {r.scenario.name} | {run} | {float(meta_run.get('other_cpu0', NAN)):.0f} % / "  # type: ignore[arg-type]
                             f"{float(meta_run.get('other_cpu1', NAN)):.0f} % | "  # type: ignore[arg-type]
                             f"{sum(s.quiet for s in mine) / max(1, len(mine)):.0%} | {fa['n_over']:.0f} | "
                             f"{fmt(fq['gap_p99'])} | {fmt(fq['added_gw_p99'], '+.2f')} | "
                             f"{fmt(fa['added_gw_p99'], '+.2f')} | {fmt(fq['tails'], '+.2f')} |")
    problems = sorted({s.problem for r in results for s in r.samples if s.problem})
    n_problems = sum(1 for r in results for s in r.samples if s.problem)
    lines += ["", f"Errors: {n_problems} of {sum(len(r.samples) for r in results)} requests"
              + (": " + "; ".join(problems[:3]) if problems else "") + "."]
    shapes: dict[tuple[str, str], int] = {}
    for r in results:
        for s in classify(r.samples)[2]:
            shape = "+".join(f"{'flaky' if ro == 0 else 'healthy'}:{st}" for ro, _, _, st in s.upstream) or "none"
            key = (r.scenario.name, f"{shape} (attempts header {s.attempts})")
            shapes[key] = shapes.get(key, 0) + 1
    if shapes:
        lines.append("Other request shapes (upstream attempts): "
                     + "; ".join(f"{n}: {shape} ×{count}" for (n, shape), count in sorted(shapes.items())) + ".")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- main

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", nargs="+", choices=[s.name for s in SCENARIOS], help="default: all")
    p.add_argument("--requests", "-n", type=int, default=3000, help="measured requests per scenario and pass (3000)")
    p.add_argument("--latency-requests", type=int, default=15000,
                   help="for latency-d20-c10 (15000, ~35 s: longer than one 30 s cooldown)")
    p.add_argument("--repeat", type=int, default=1, help="passes over the scenarios (1)")
    p.add_argument("--warmup", type=int, default=300, help="warm-up requests per scenario and pass (300)")
    p.add_argument("--fail-rate", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=1, help="the upstream's failure draws (+ the pass number)")
    p.add_argument("--log-level", default="info", help="gateway --log-level (info = production default, "
                   "access log on; warning = off)")
    p.add_argument("--yourouter-bin", help="default: <repo>/.venv/bin/yourouter, or the one --ref installs")
    p.add_argument("--ref", help="install this commit (git archive) into ${TMPDIR:-/tmp}/yourouter-bench-<sha>")
    p.add_argument("--gw-cpus", default="1", help="taskset CPU for the gateway ('' = no pinning)")
    p.add_argument("--load-cpus", default="0", help="taskset CPU for the upstream and this client ('' = none)")
    p.add_argument("--run-timeout", type=float, default=240.0, help="upper bound per scenario's load, s (240)")
    p.add_argument("--request-timeout", type=float, default=30.0, help="per request, s (30)")
    p.add_argument("--monitor-interval", type=float, default=0.5, help="load monitor interval, s (0.5)")
    p.add_argument("--quiet-below", type=float, default=10.0,
                   help="quiet = others' load below this %% of each CPU (10)")
    p.add_argument("--quiet-wait", type=float, default=60.0, help="before each scenario, wait up to this many s "
                   "for a second in which no CPU is busier than --quiet-below (0 = do not wait; 60)")
    p.add_argument("--profile", action="store_true", help="py-spy record the gateway during each scenario's "
                   "measured requests into <out>/<scenario>.pyspy.txt (summarise with bench/chaos_profile.py); "
                   "py-spy costs the gateway CPU, so latency figures of such a run are perturbed")
    p.add_argument("--profile-rate", type=int, default=250, help="py-spy samples per second (250)")
    p.add_argument("--out", help="output dir (default bench/results/chaos-<stamp>)")
    args = p.parse_args()
    scenarios = [s for s in SCENARIOS if not args.scenarios or s.name in args.scenarios]
    if args.repeat < 1 or args.requests < 1:
        p.error("--repeat and --requests must be positive")

    yr_bin, commit = resolve_yourouter(args, p)
    cpus = os.cpu_count() or 1
    pin_load(args, cpus)
    pinning = (f"Pinned (taskset): gateway on CPU {args.gw_cpus}, upstream + client on CPU {args.load_cpus} "
               f"(nproc {cpus})." if args.gw_cpus else f"NOT pinned (nproc {cpus}).")
    out, work = make_out_dirs(args.out, "chaos", time.strftime("%Y%m%d-%H%M%S"))

    exit_on_signals()
    install_uvloop()
    results = {s.name: Result(s, [], []) for s in scenarios}
    for run in range(1, args.repeat + 1):
        for scenario in scenarios:
            started = time.monotonic()
            waited, quiet = wait_quiet(args.quiet_wait, args.quiet_below) if args.quiet_wait > 0 else (0.0, NAN)
            samples, meta = asyncio.run(run_scenario(scenario, run, args, yr_bin, out, work))
            meta.update(quiet_waited_s=waited, quiet_load=quiet)
            results[scenario.name].samples += samples
            results[scenario.name].runs.append(meta)
            fa, fq = figures(samples), figures([s for s in samples if s.quiet])
            print(f"{scenario.name:16s} pass {run} n={len(samples)} ok={sum(s.problem is None for s in samples)} "
                  f"over={fa['n_over']:.0f} quiet={sum(s.quiet for s in samples) / len(samples):.0%} "
                  f"added_gw p99={fmt(fq['added_gw_p99'], '+.2f')} (all {fmt(fa['added_gw_p99'], '+.2f')}) ms "
                  f"gap p50/p99={fmt(fq['gap_p50'])}/{fmt(fq['gap_p99'])} ms; others' load "
                  f"{float(meta.get('other_cpu0', NAN)):.0f}/{float(meta.get('other_cpu1', NAN)):.0f} % "  # type: ignore[arg-type]
                  f"(waited {waited:.0f} s for quiet; {time.monotonic() - started:.0f} s)", flush=True)
    machine = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   "?")
    meta = {"command": ".venv/bin/python bench/chaos.py" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:]),
            "when": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": commit, "bin": str(yr_bin),
            "machine": f"{cpus} × {machine}", "pinning": pinning}
    analysed = [r.analyse() for r in results.values()]
    text = report(analysed, args, meta)
    (out / "report.md").write_text(text)
    (out / "data.json").write_text(json.dumps({"meta": meta, "scenarios": {
        r.scenario.name: {"scenario": asdict(r.scenario), "runs": r.runs, "samples": [asdict(s) for s in r.samples]}
        for r in analysed}}))
    print(text)
    print(f"written to {out}/report.md (+ data.json; configs and logs in {work})")
    return 0 if all(s.problem is None for r in analysed for s in r.samples) else 1


if __name__ == "__main__":
    sys.exit(main())
