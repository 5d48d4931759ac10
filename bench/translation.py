#!/usr/bin/env python3
"""What dialect translation costs, side by side with passthrough, in one command from the repository root:

    python bench/translation.py                                   # N=3000, c=1 and c=10, 3 passes (~2 min)
    python bench/translation.py --requests 1000 --concurrency 10
    python bench/translation.py --yourouter-bin /tmp/yourouter-bench-<sha>/bin/yourouter
    python bench/translation.py --ref HEAD                        # install that commit into its own venv first

Starts the shared mock upstream (../shared/bench/mock_upstream.py, pinned to CPU 0, no chunk delay) and
`yourouter serve --log-level warning` (pinned to CPU 1; one static key, one `type: openai` provider -> the mock,
model gpt-4o-mini), then drives four scenarios from this process (pinned to CPU 0, aiohttp):

    a  openai-json      OpenAI client  -> OpenAI upstream, non-stream     (passthrough)
    b  anthropic-json   Anthropic client -> OpenAI upstream, non-stream   (translated)
    c  openai-sse       OpenAI client  -> OpenAI upstream, stream         (passthrough)
    d  anthropic-sse    Anthropic client -> OpenAI upstream, stream       (translated)

For each concurrency and pass (--repeat, default 3): the pair (a, b), then the pair (c, d), both warmed up
(--warmup), then N requests each in blocks (--block) alternating a,b,b,a,... so that the shared machine's noisy
stretches fall on both sides of a pair. Per scenario and pass: client latency p50/p99 (request start -> full body
read) and gateway CPU ms per request (utime+stime of the gateway's process tree from /proc, summed around each
block, / N). Every response is checked (status 200, the mock's text, the stream's first/last event). The report
(medians over the passes) is printed and written to bench/TRANSLATION.md (--out). Needs only the stdlib +
aiohttp (re-execs itself with the bench venv's python when aiohttp is missing here). All traffic is on 127.0.0.1;
every loop is bounded; the processes it starts are ended (process group, SIGTERM, then SIGKILL) on exit, error,
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import exit_on_signals, install_ref, install_uvloop

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCH_VENV_PY = Path(os.environ.get("BENCH_VENV", "/tmp/bench-venv")) / "bin" / "python"

try:
    import aiohttp
except ImportError:  # pragma: no cover - run with a python that lacks aiohttp: use the bench venv's
    if BENCH_VENV_PY.exists() and not os.environ.get("_YR_TRANSLATION_REEXEC"):
        os.environ["_YR_TRANSLATION_REEXEC"] = "1"
        os.execv(str(BENCH_VENV_PY), [str(BENCH_VENV_PY), *sys.argv])
    raise

MODEL = "gpt-4o-mini"
API_KEY = "sk-bench-translation-0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The mock's 20 content chunks (WORDS[i % 21] for i in range(20) in mock_upstream.py).
EXPECTED_TEXT = "Hello there! This is a mock response from the benchmark upstream, streamed one token per chunk for you"

SCENARIOS = {
    # name: (path, stream, translated, label)
    "openai-json": ("/v1/chat/completions", False, False, "a OpenAI → OpenAI, non-stream (passthrough)"),
    "anthropic-json": ("/v1/messages", False, True, "b Anthropic → OpenAI, non-stream (translated)"),
    "openai-sse": ("/v1/chat/completions", True, False, "c OpenAI → OpenAI, stream (passthrough)"),
    "anthropic-sse": ("/v1/messages", True, True, "d Anthropic → OpenAI, stream (translated)"),
}
PAIRS = (("non-stream", "openai-json", "anthropic-json"), ("stream", "openai-sse", "anthropic-sse"))


# ----------------------------------------------------------------------------------------------- processes

class Proc:
    """A child in its own session/process group; stop() = SIGTERM to the group, SIGKILL after a grace period."""

    def __init__(self, name: str, argv: list[str], log: Path, cpus: str | None, env: dict[str, str] | None = None):
        self.name, self.log_path = name, log
        if cpus and shutil.which("taskset"):
            argv = ["taskset", "-c", cpus, *argv]
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
        try:  # whatever is left in the group (also children of an exited leader)
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


def tree_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo and len(out) < 10_000:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root: int) -> float:
    """utime + stime (all threads) of the process tree under root."""
    total = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp: Path, mock_port: int, gw_port: int) -> Path:
    config = tmp / "yourouter.yaml"
    config.write_text(f"""\
host: 127.0.0.1
port: {gw_port}
database_url: "sqlite:///{tmp}/yourouter.db"
keys:
  - key: "{API_KEY}"
    name: bench
    models: ["*"]
providers:
  - name: mock
    vendor: mock
    type: openai
    base_url: "http://127.0.0.1:{mock_port}/v1"
    api_key: sk-upstream-fixed
    models: [{MODEL}]
""")
    return config


# ----------------------------------------------------------------------------------------------- load

def request_for(scenario: str) -> tuple[str, dict[str, str], bytes]:
    path, stream, _, _ = SCENARIOS[scenario]
    if path == "/v1/messages":
        headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
        body = {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    else:
        headers = {"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
    return path, headers, json.dumps(body, separators=(",", ":")).encode()


def _sse_events(body: bytes) -> list[tuple[str | None, str]]:
    out = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.decode().split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        out.append((name, "\n".join(data)))
    return out


def check(scenario: str, status: int, body: bytes) -> str | None:
    """None when the response is what the mock's answer should become; else what is wrong."""
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    try:
        if scenario == "openai-json":
            text = json.loads(body)["choices"][0]["message"]["content"]
        elif scenario == "anthropic-json":
            payload = json.loads(body)
            if payload.get("type") != "message" or payload.get("stop_reason") != "end_turn":
                return f"not a finished message: {body[:200]!r}"
            text = "".join(b.get("text", "") for b in payload["content"])
        elif scenario == "openai-sse":
            events = _sse_events(body)
            if not events or events[-1][1] != "[DONE]":
                return f"stream does not end with data: [DONE]: {body[-120:]!r}"
            text = "".join((c.get("delta") or {}).get("content") or ""
                           for _, d in events[:-1] for c in json.loads(d).get("choices") or [])
        else:
            events = _sse_events(body)
            if not events or events[-1][0] != "message_stop":
                return f"stream does not end with message_stop: {body[-120:]!r}"
            if events[0][0] != "message_start":
                return f"stream does not start with message_start: {body[:120]!r}"
            text = ""
            for name, data in events:
                if name == "content_block_delta":
                    text += json.loads(data)["delta"].get("text", "")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc}): {body[:200]!r}"
    if text != EXPECTED_TEXT:
        return f"wrong text {text[:80]!r}"
    return None


@dataclass
class Run:
    scenario: str
    concurrency: int
    rep: int
    n: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    first_error: str | None = None
    truncated: bool = False

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies_ms)
        if not xs:
            return float("nan")
        return xs[min(len(xs) - 1, max(0, round(q / 100 * len(xs) + 0.5) - 1))]

    @property
    def cpu_ms_per_req(self) -> float:
        return self.cpu_s * 1000 / self.n if self.n else float("nan")


async def drive(session: aiohttp.ClientSession, base: str, scenario: str, n: int, concurrency: int,
                deadline_s: float, run: Run | None, verify: bool = True) -> int:
    """n requests, `concurrency` at a time, each read to the end. Bounded by n and by deadline_s."""
    path, headers, body = request_for(scenario)
    url = base + path
    counter = iter(range(n))
    end = time.monotonic() + deadline_s
    done = 0

    async def worker() -> None:
        nonlocal done
        for _ in counter:
            if time.monotonic() > end:
                if run is not None:
                    run.truncated = True
                return
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    payload = await response.read()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                status, payload = -1, f"{type(exc).__name__}: {exc}".encode()
            elapsed = (time.perf_counter() - t0) * 1000
            done += 1
            if run is None:
                if status != 200:
                    raise RuntimeError(f"{scenario} warm-up failed: HTTP {status}: {payload[:300]!r}")
                continue
            problem = check(scenario, status, payload) if verify else (None if status == 200 else f"HTTP {status}")
            if problem is None:
                run.latencies_ms.append(elapsed)
            else:
                run.errors += 1
                run.first_error = run.first_error or problem

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


async def wait_ready(base: str, gw: Proc, timeout_s: float = 60.0) -> float:
    path, headers, body = request_for("openai-json")
    t0 = time.monotonic()
    last = ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() - t0 < timeout_s:
            if not gw.alive():
                raise RuntimeError(f"yourouter exited during start-up:\n{gw.tail()}")
            try:
                async with session.post(base + path, data=body, headers=headers) as r:
                    text = await r.read()
                    if r.status == 200:
                        return time.monotonic() - t0
                    last = f"HTTP {r.status}: {text[:200]!r}"
            except (TimeoutError, aiohttp.ClientError) as exc:
                last = f"{type(exc).__name__}"
            await asyncio.sleep(0.05)
    raise RuntimeError(f"yourouter not ready after {timeout_s:.0f} s (last: {last})\n{gw.tail()}")


async def measure(args: argparse.Namespace, base: str, gw: Proc) -> list[Run]:
    runs: list[Run] = []
    startup = await wait_ready(base, gw)
    print(f"gateway ready in {startup:.2f} s", flush=True)
    for concurrency in args.concurrency:
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, force_close=False)
        timeout = aiohttp.ClientTimeout(total=args.request_timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
            for rep in range(1, args.repeat + 1):
                for _, a, b in PAIRS:
                    if not gw.alive():
                        raise RuntimeError(f"yourouter died:\n{gw.tail()}")
                    for scenario in (a, b):
                        await drive(session, base, scenario, args.warmup, concurrency, args.run_timeout, None)
                    pair = {a: Run(a, concurrency, rep), b: Run(b, concurrency, rep)}
                    # N requests each, in blocks that alternate a,b / b,a: a noisy stretch of the shared machine
                    # then falls on both sides of the pair, and linear drift cancels.
                    blocks = [min(args.block, args.requests - i) for i in range(0, args.requests, args.block)]
                    for i, size in enumerate(blocks):
                        for scenario in ((a, b) if (i + rep) % 2 == 0 else (b, a)):
                            run = pair[scenario]
                            budget = args.run_timeout - run.wall_s
                            if budget <= 0:
                                run.truncated = True
                                continue
                            c0, t0 = cpu_seconds(gw.pid), time.perf_counter()
                            run.n += await drive(session, base, scenario, size, concurrency, budget, run)
                            run.wall_s += time.perf_counter() - t0
                            run.cpu_s += cpu_seconds(gw.pid) - c0
                    for run in pair.values():
                        runs.append(run)
                        print(f"  c={concurrency} pass {rep} {run.scenario:15s} n={run.n} err={run.errors} "
                              f"p50={run.pct(50):.3f} ms p99={run.pct(99):.3f} ms "
                              f"cpu={run.cpu_ms_per_req:.3f} ms/req ({run.n / run.wall_s:.0f} req/s)"
                              f"{' TRUNCATED' if run.truncated else ''}"
                              + (f"  first error: {run.first_error}" if run.first_error else ""), flush=True)
    return runs


# ----------------------------------------------------------------------------------------------- report

def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def rng(xs: list[float], fmt: str, brackets: str = "()") -> str:
    """ ' (min–max)' over the passes, '' for a single pass."""
    if len(xs) < 2:
        return ""
    return f" {brackets[0]}{format(min(xs), fmt)}–{format(max(xs), fmt)}{brackets[1]}"


def report(runs: list[Run], args: argparse.Namespace, meta: dict[str, str]) -> tuple[str, bool]:
    lines = [
        "# Translation cost vs passthrough",
        "",
        f"`{meta['command']}` — {meta['when']}, yourouter {meta['version']} ({meta['bin']}), {meta['machine']}.",
        f"N={args.requests} requests per scenario and pass, after {args.warmup} warm-up requests; {args.repeat} "
        f"passes per concurrency; in a pass, passthrough and translated alternate in blocks of {args.block} "
        "(a,b,b,a,…). Figures are medians over the passes (range over the passes in brackets). "
        "Mock (no chunk delay: the whole SSE stream in one write) + this client on CPU "
        f"{args.load_cpus}, gateway (`--log-level warning`, so no access log) on CPU {args.gw_cpus}. "
        "Latency is client-side, request start → full body read (includes the Python client's own time, the same "
        "for every scenario); CPU is utime+stime of the gateway process tree / N; busy = CPU ms/req × req/s, the "
        "share of its one core the gateway used (near 100 %: saturated, latency is then mostly queueing).",
        "",
        "| conc | scenario | p50 ms | p99 ms | gateway CPU ms/req | req/s | gateway busy | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    all_ok = True
    for concurrency in args.concurrency:
        for scenario, (_, _, _, label) in SCENARIOS.items():
            rs = [r for r in runs if r.concurrency == concurrency and r.scenario == scenario]
            if not rs:
                continue
            p50, p99, cpu = [r.pct(50) for r in rs], [r.pct(99) for r in rs], [r.cpu_ms_per_req for r in rs]
            rps = [r.n / r.wall_s for r in rs if r.wall_s]
            busy = [r.cpu_s / r.wall_s * 100 for r in rs if r.wall_s]
            errors = sum(r.errors for r in rs)
            total = sum(r.n for r in rs)
            lines.append(f"| {concurrency} | {label} | {med(p50):.3f}{rng(p50, '.3f')} | {med(p99):.2f}"
                         f"{rng(p99, '.2f')} | {med(cpu):.3f}{rng(cpu, '.3f')} | {med(rps):,.0f} | {med(busy):.0f} % | "
                         f"{errors} / {total}{' (truncated)' if any(r.truncated for r in rs) else ''} |")
    lines += [
        "",
        "Deltas, translated − passthrough, within each pass, median over the passes [range]. The latency target "
        "is about the time translation adds to one request, so it is judged at c=1; at c>1 the gateway's one core "
        "is shared by the requests in flight and Δp50 grows with c × ΔCPU (queueing), shown for information.",
        "",
        "| conc | mode | Δ p50 ms | target Δ p50 | Δ CPU µs/req | CPU ratio | target CPU ratio | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for concurrency in args.concurrency:
        for mode, a, b in PAIRS:
            d50, ratio, dcpu = [], [], []
            for rep in range(1, args.repeat + 1):
                ra = [r for r in runs if (r.concurrency, r.scenario, r.rep) == (concurrency, a, rep)]
                rb = [r for r in runs if (r.concurrency, r.scenario, r.rep) == (concurrency, b, rep)]
                if ra and rb and ra[0].latencies_ms and rb[0].latencies_ms:
                    d50.append(rb[0].pct(50) - ra[0].pct(50))
                    dcpu.append((rb[0].cpu_ms_per_req - ra[0].cpu_ms_per_req) * 1000)
                    ratio.append(rb[0].cpu_ms_per_req / ra[0].cpu_ms_per_req if ra[0].cpu_ms_per_req else float("nan"))
            if not d50:
                continue
            judged_lat = concurrency == 1
            ok_lat = med(d50) < 1.0 if judged_lat else True
            ok_cpu = med(ratio) <= 2.0 if mode == "stream" else True
            if judged_lat or mode == "stream":
                verdict = ("met" if ok_lat and ok_cpu else "NOT met") + ("" if judged_lat else " (CPU only)")
            else:
                verdict = "—"
            all_ok = all_ok and ok_lat and ok_cpu
            lines.append(f"| {concurrency} | {mode} | {med(d50):+.3f}{rng(d50, '+.3f', '[]')} | "
                         f"{'< 1 ms' if judged_lat else '(queueing)'} | {med(dcpu):+.0f}{rng(dcpu, '+.0f', '[]')} | "
                         f"{med(ratio):.2f}×{rng(ratio, '.2f', '[]')} | {'≤ 2×' if mode == 'stream' else '—'} | "
                         f"{verdict} |")
    errors = sum(r.errors for r in runs)
    firsts = sorted({r.first_error for r in runs if r.first_error})
    lines += ["", f"Errors: {errors} of {sum(r.n for r in runs)} measured requests"
              + (": " + "; ".join(firsts[:3]) if firsts else "") + "."]
    return "\n".join(lines) + "\n", all_ok and errors == 0


# ----------------------------------------------------------------------------------------------- main

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", "-n", type=int, default=3000,
                   help="measured requests per scenario and pass (default 3000)")
    p.add_argument("--concurrency", "-c", default="1,10", help="comma list (default 1,10)")
    p.add_argument("--warmup", type=int, default=300,
                   help="warm-up requests per scenario before each pass's pair (default 300)")
    p.add_argument("--repeat", type=int, default=3, help="passes per concurrency (default 3)")
    p.add_argument("--block", type=int, default=500, help="within a pass, passthrough and translated alternate in "
                   "blocks of this many requests (default 500)")
    p.add_argument("--yourouter-bin", help="the yourouter executable (default: <repo>/.venv/bin/yourouter, "
                   "or the one --ref installs)")
    p.add_argument("--ref", help="install this commit (git archive) into ${TMPDIR:-/tmp}/yourouter-bench-<sha>, "
                   "as bench/run.sh does with YOUROUTER_REF, and measure it")
    shared = Path(os.environ.get("SHARED_BENCH", ROOT.parent / "shared" / "bench"))
    p.add_argument("--mock", default=str(shared / "mock_upstream.py"),
                   help="mock_upstream.py (default: $SHARED_BENCH or ../shared/bench)")
    p.add_argument("--mock-python", default=str(BENCH_VENV_PY) if BENCH_VENV_PY.exists() else sys.executable,
                   help="python for the mock (default: $BENCH_VENV or /tmp/bench-venv, else this python)")
    p.add_argument("--gw-cpus", default="1", help="taskset list for the gateway ('' = no pinning)")
    p.add_argument("--load-cpus", default="0", help="taskset list for the mock and this client ('' = none)")
    p.add_argument("--run-timeout", type=float, default=180.0,
                   help="upper bound per scenario and pass, s (default 180)")
    p.add_argument("--request-timeout", type=float, default=30.0, help="per request, s (default 30)")
    p.add_argument("--out", default=str(HERE / "TRANSLATION.md"), help="report file ('' = do not write)")
    p.add_argument("--json", help="also write every run's figures here")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (config, logs, SQLite)")
    args = p.parse_args()
    args.concurrency = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    if args.requests < 1 or args.repeat < 1 or args.block < 1 or not args.concurrency or min(args.concurrency) < 1:
        p.error("--requests, --repeat and --concurrency must be positive")

    revision = ""
    if args.yourouter_bin:
        yr_bin = Path(args.yourouter_bin)
    elif args.ref:
        yr_bin, revision = install_ref(args.ref)
    else:
        yr_bin = ROOT / ".venv" / "bin" / "yourouter"
    if not yr_bin.exists():
        p.error(f"yourouter not found at {yr_bin} (use --yourouter-bin or --ref)")
    if not Path(args.mock).exists():
        p.error(f"mock upstream not found at {args.mock} (use --mock or SHARED_BENCH)")

    if args.load_cpus:
        try:
            os.sched_setaffinity(0, {int(c) for c in args.load_cpus.split(",")})
        except (OSError, ValueError) as exc:
            print(f"warning: could not pin the client to CPU {args.load_cpus}: {exc}", file=sys.stderr)

    tmp = Path(tempfile.mkdtemp(prefix="yr-translation-"))
    procs: list[Proc] = []

    exit_on_signals()  # SIGTERM/SIGHUP -> exception, so `finally` cleans up
    try:
        mock_port, gw_port = free_port(), free_port()
        mock = Proc("mock", [args.mock_python, args.mock, "--host", "127.0.0.1", "--port", str(mock_port),
                             "--chunk-delay-ms", "0", "--delay-ms", "0"], tmp / "mock.log", args.load_cpus)
        procs.append(mock)
        config = write_config(tmp, mock_port, gw_port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("YOUROUTER_")}
        gw = Proc("yourouter", [str(yr_bin), "serve", "--config", str(config), "--port", str(gw_port),
                                "--log-level", "warning"], tmp / "yourouter.log", args.gw_cpus, env)
        procs.append(gw)
        try:
            version = subprocess.run([str(yr_bin.parent / "python"), "-c",
                                      "import importlib.metadata as m; print(m.version('yourouter'))"],
                                     capture_output=True, text=True, timeout=30).stdout.strip() or "?"
        except (OSError, subprocess.TimeoutExpired):
            version = "?"
        install_uvloop()
        runs = asyncio.run(measure(args, f"http://127.0.0.1:{gw_port}", gw))
        if not mock.alive():
            print(f"warning: the mock exited:\n{mock.tail()}", file=sys.stderr)
        cmd = "python bench/translation.py" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:])
        cpu = "?"
        try:
            cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        meta = {"command": cmd, "when": time.strftime("%Y-%m-%d %H:%M"),
                "version": version + (f" @ {revision}" if revision else ""),
                "bin": str(yr_bin), "machine": f"{os.cpu_count()} vCPU {cpu}, Python {platform.python_version()}"}
        text, ok = report(runs, args, meta)
        print()
        print(text)
        if args.out:
            Path(args.out).write_text(text)
            print(f"wrote {args.out}")
        if args.json:
            Path(args.json).write_text(json.dumps([
                {"scenario": r.scenario, "concurrency": r.concurrency, "rep": r.rep, "n": r.n, "errors": r.errors,
                 "p50_ms": r.pct(50), "p99_ms": r.pct(99), "cpu_ms_per_req": r.cpu_ms_per_req, "wall_s": r.wall_s,
                 "first_error": r.first_error} for r in runs], indent=1))
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        for proc in reversed(procs):
            proc.stop()
        if args.keep_tmp:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
