#!/usr/bin/env python3
"""Total stream time at 100 concurrent streams against direct's, in short interleaved windows:

    .venv/bin/python bench/stream_total.py                    # 12 cycles of 5 s windows, the working tree (~6 min)
    .venv/bin/python bench/stream_total.py --ref HEAD --cycles 20

Issue #8's target: YouRouter's total stream time (request sent -> last event read, p50) within 2 % of `direct`'s
(the load generator against the mock, no proxy). A harness pass measures direct and YouRouter ~1 minute apart; on
this shared machine the load side's own speed drifts more than that between them (direct's p50 moved from 129 to 141
ms between windows 30 s apart in one test, the mock's own stream duration with it, and TTFT from 4.5 to 10.7 ms). So
here the same parts of ../shared/bench run side by side in windows of --duration seconds: its paced mock
(mock_upstream.py, 5 ms between events, CPU 0), its load generator (loadgen.py -c 100 --stream, CPU 0), its `floor`
proxy (floor_proxy.py, CPU 1) and YouRouter with the full pipeline (bench/yourouter-full.yaml: auth, limits, budget,
routing, the ledger in SQLite, the access log; CPU 1). Every cycle runs direct, floor, the floor again (a control: a
second floor_proxy.py process) and YouRouter once each, in an order that rotates every cycle; each window's figure
is read against the direct window of the same cycle. A first window of each, not recorded, warms them up. The
gateways stay up through all cycles (long-lived processes, as in production; bench/run.sh starts each fresh). The
floor is the control: what any Python proxy adds. Writes bench/STREAM_TOTAL.md (--out).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from statistics import median
from typing import Any

from _common import exit_on_signals, resolve_yourouter, write_marked

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = Path(os.environ.get("SHARED_BENCH", ROOT.parent / "shared" / "bench"))
BENCH_PY = Path(os.environ.get("BENCH_VENV", "/tmp/bench-venv")) / "bin" / "python"
MOCK_PORT, FLOOR_PORT, FLOOR_AGAIN_PORT, YR_PORT = 18201, 15301, 15303, 15302
TARGETS = ("direct", "floor", "floor-again", "yourouter")


def _start(cmd: list[str], cpu: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(["taskset", "-c", cpu, *cmd], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_ready(url: str, headers: dict[str, str], body: bytes, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited with {proc.returncode}")
        try:
            request = urllib.request.Request(url, data=body, headers={"content-type": "application/json", **headers})
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    response.read()
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} not ready in 30 s")


def _window(url: str, body: Path, key: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = ["taskset", "-c", args.load_cpus, str(BENCH_PY), str(SHARED / "loadgen.py"), url, "--body", str(body),
           "-c", str(args.streams), "-d", str(args.duration), "--warmup", "1", "--stream",
           "-H", f"Authorization: Bearer {key}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60)
    found = re.search(r"^LGJSON (.*)$", out.stdout, re.M)
    if not found:
        raise SystemExit(f"loadgen gave no summary: {(out.stdout + out.stderr)[-800:]}")
    result = json.loads(found.group(1))
    if result["err_status"] or result["err_other"] or not result["ok"]:
        raise SystemExit(f"{url}: errors in a window: {result['err_samples'][:3]}")
    return {"total": result["total_p50_ms"], "ttft": result["ttft_p50_ms"], "streams": result["ok"]}


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def report(cycles: list[dict[str, dict[str, Any]]], args: argparse.Namespace, commit: str, started: str) -> str:
    yr = [c["yourouter"]["total"] / c["direct"]["total"] for c in cycles]
    fl = [c["floor"]["total"] / c["direct"]["total"] for c in cycles]
    again = [c["floor-again"]["total"] / c["direct"]["total"] for c in cycles]
    yr_fl = [c["yourouter"]["total"] / c["floor"]["total"] for c in cycles]
    ttft = [c["yourouter"]["ttft"] - c["floor"]["ttft"] for c in cycles]
    ttft_again = [c["floor-again"]["ttft"] - c["floor"]["ttft"] for c in cycles]
    met = median(yr) <= 1.02
    lines = [
        f"`bench/stream_total.py --cycles {args.cycles} --duration {args.duration} --streams {args.streams}` — "
        f"{started}, yourouter {commit}. Each cycle: direct, floor, the floor again and YouRouter (full pipeline) for "
        f"{args.duration} s each ({args.streams} streams, 1 s warm-up), in an order that rotates every cycle.", "",
        "| figure (against the same cycle's direct) | median | range over cycles | target | met |",
        "|---|---|---|---|---|",
        f"| YouRouter's total stream time p50 ÷ direct's | **{median(yr):.3f}** | {min(yr):.3f} … {max(yr):.3f} "
        f"| ≤ 1.02 | {'yes' if met else '**no**'} |",
        f"| the floor's total stream time p50 ÷ direct's (control) | **{median(fl):.3f}** | {min(fl):.3f} … "
        f"{max(fl):.3f} | — | — |",
        f"| the floor again, ÷ direct's (control) | **{median(again):.3f}** | {min(again):.3f} … "
        f"{max(again):.3f} | — | — |",
        f"| YouRouter's ÷ the floor's | **{median(yr_fl):.3f}** | {min(yr_fl):.3f} … {max(yr_fl):.3f} | — | — |",
        f"| YouRouter's TTFT p50 − the floor's (ms) | **{median(ttft):+.2f}** | {min(ttft):+.2f} … "
        f"{max(ttft):+.2f} | ≤ +0.3 | {'yes' if median(ttft) <= 0.3 else '**no**'} |",
        f"| the floor again: TTFT p50 − the floor's (ms; control) | **{median(ttft_again):+.2f}** | "
        f"{min(ttft_again):+.2f} … {max(ttft_again):+.2f} | — | — |",
        "",
        "Medians over the cycles (ms):", "",
        "| target | total p50 | TTFT p50 | streams per window |", "|---|---|---|---|",
    ]
    for name in TARGETS:
        lines.append(f"| {name} | {median([c[name]['total'] for c in cycles]):.2f} | "
                     f"{median([c[name]['ttft'] for c in cycles]):.2f} | "
                     f"{median([c[name]['streams'] for c in cycles]):.0f} |")
    lines += ["", "Each cycle (total p50 ms, TTFT p50 ms):", "",
              "| cycle | first | direct | floor | floor again | YouRouter | YouRouter ÷ direct | floor ÷ direct |",
              "|---|---|---|---|---|---|---|---|"]
    for i, c in enumerate(cycles, 1):
        cells = " | ".join(f"{c[n]['total']:.1f} ({c[n]['ttft']:.1f})" for n in TARGETS)
        lines.append(f"| {i} | {c['first']} | {cells} | {yr[i - 1]:.3f} | {fl[i - 1]:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=12)
    parser.add_argument("--duration", type=int, default=5, help="seconds per window, after 1 s of warm-up")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--chunk-delay-ms", type=float, default=5.0, help="the paced mock's, as bench/run.sh's")
    parser.add_argument("--gw-cpus", default="1")
    parser.add_argument("--load-cpus", default="0", help="the load generator and the mock")
    parser.add_argument("--ref", help="measure this commit (installed into its own venv)")
    parser.add_argument("--yourouter-bin")
    parser.add_argument("--out", default=str(HERE / "STREAM_TOTAL.md"))
    args = parser.parse_args()
    if args.cycles < 1 or args.duration < 1:
        parser.error("--cycles and --duration must be at least 1")
    if not (SHARED / "loadgen.py").exists() or not BENCH_PY.exists():
        parser.error(f"needs {SHARED} and {BENCH_PY} (bash ../shared/bench/setup_peers.sh)")
    yr_bin, commit = resolve_yourouter(args, parser)
    exit_on_signals()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="stream-total-"))
    key = "sk-bench-" + secrets.token_hex(16)
    mock = f"http://127.0.0.1:{MOCK_PORT}/v1"
    env = dict(os.environ, UPSTREAM_FAST=mock, UPSTREAM_PACED=mock, UPSTREAM_KEY="sk-upstream-fixed",
               BENCH_API_KEY=key, MOCK_FAST_URL=mock, MOCK_PACED_URL=mock, YR_LOG_REQUESTS="true",
               YR_LIMITS_BACKEND="memory", YR_BENCH_DB=str(work / "yourouter.db"))
    procs = [
        _start([str(BENCH_PY), str(SHARED / "mock_upstream.py"), "--port", str(MOCK_PORT), "--chunk-delay-ms",
                str(args.chunk_delay_ms)], args.load_cpus, env, work / "mock.log"),
        _start([str(BENCH_PY), str(SHARED / "floor_proxy.py"), "--port", str(FLOOR_PORT)], args.gw_cpus, env,
               work / "floor.log"),
        _start([str(BENCH_PY), str(SHARED / "floor_proxy.py"), "--port", str(FLOOR_AGAIN_PORT)], args.gw_cpus, env,
               work / "floor-again.log"),
        _start([str(yr_bin), "serve", "--config", str(HERE / "yourouter-full.yaml"), "--port", str(YR_PORT),
                "--log-level", "info"], args.gw_cpus, env, work / "yourouter.log"),
    ]
    targets = {"direct": (f"{mock}/chat/completions", "gpt-4o-mini"),
               "floor": (f"http://127.0.0.1:{FLOOR_PORT}/v1/chat/completions", "gpt-4o-mini-paced"),
               "floor-again": (f"http://127.0.0.1:{FLOOR_AGAIN_PORT}/v1/chat/completions", "gpt-4o-mini-paced"),
               "yourouter": (f"http://127.0.0.1:{YR_PORT}/v1/chat/completions", "gpt-4o-mini-paced")}
    bodies = {}
    try:
        for name, (url, model) in targets.items():
            body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Say hello"}],
                               "stream": True}).encode()
            bodies[name] = work / f"{name}.json"
            bodies[name].write_bytes(body)
            _wait_ready(url, {"authorization": f"Bearer {key}"}, body, procs[TARGETS.index(name)])
        warm = argparse.Namespace(**{**vars(args), "duration": 2})
        for name in TARGETS:  # a first window, not recorded: fresh processes and connections run slower
            _window(targets[name][0], bodies[name], key, warm)
        cycles: list[dict[str, Any]] = []
        order = list(TARGETS)
        for i in range(args.cycles):
            cycle: dict[str, Any] = {"first": order[0]}
            for name in order:
                cycle[name] = _window(targets[name][0], bodies[name], key, args)
            cycles.append(cycle)
            print(f"cycle {i + 1}/{args.cycles}: " + ", ".join(
                f"{n} {cycle[n]['total']:.1f} ms (TTFT {cycle[n]['ttft']:.1f})" for n in TARGETS), flush=True)
            order = order[1:] + order[:1]
    finally:
        _stop(procs)
    text = report(cycles, args, commit, started)
    print(text)
    out = write_marked(Path(args.out), "<!-- stream_total:begin -->", "<!-- stream_total:end -->",
                       "## Total stream time at 100 streams against direct, interleaved", text,
                       "# Total stream time against direct (bench/stream_total.py)\n\n")
    print(f"written to {out}")


if __name__ == "__main__":
    sys.exit(main())
