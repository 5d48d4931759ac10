"""Issue #8's headline ratios over alternating rounds, not one pass: c=50 throughput and CPU against the floor, the
Redis backend's CPU against in-process limits, and time to first token and CPU per stream at 100 streams.

    .venv/bin/python bench/rounds.py                      # 6 rounds, the working tree
    .venv/bin/python bench/rounds.py --ref HEAD --rounds 8

Why: one harness pass is a coin toss on this shared 2-core machine. Three back-to-back passes of the same commit
read YouRouter's 100-stream TTFT p50 at -0.97, +0.46 and +0.12 ms from the floor's; in bench/all.sh's pass of
commit 038a8f8 the in-process full pipeline served 2,204 req/s at c=50 and the same pipeline on Redis 2,790, which
a quiet machine never shows (Redis costs more). So each round here is one bench/run.sh pass (the shared harness:
gateway pinned to CPU 1, wrk/loadgen and the mocks on CPU 0) of the floor, YouRouter (full pipeline, limits in
process) and YouRouter on Redis, in an order that rotates every round, at --concurrency and --streams; every
figure is read against the floor of the same round, and the report gives each round and the medians.

Every round also runs `direct` (the load generator against the mock, no proxy), for the total stream time's
target (within 2 % of direct's).

A control in every round: the floor a second time (`floor-again`, the same proxy on another port, added to a copy of
bench/targets.toml). What separates the floor from itself is what this machine's noise alone does to a figure in one
round, e.g. to the 100-stream TTFT, whose target (+0.3 ms) is smaller than that noise in a busy hour.
Writes bench/ROUNDS.md and bench/results/rounds-<stamp>/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGETS = ("direct", "floor", "floor-again", "yourouter", "yourouter-redis")


def targets_with_control(out: Path) -> Path:
    """bench/targets.toml plus `floor-again`: the floor's table under another name and port."""
    text = (HERE / "targets.toml").read_text()
    start = text.index("[floor]\n")
    end = text.index("\n[", text.index("[floor.env]\n"))
    control = text[start:end].replace("[floor]", "[floor-again]").replace("[floor.env]", "[floor-again.env]")
    control = control.replace("port = 15101", "port = 15103")
    assert "[floor-again]" in control and "port = 15103" in control, "bench/targets.toml's [floor] table changed"
    path = out / "targets.toml"
    path.write_text(text.rstrip() + "\n\n# the control of bench/rounds.py: the floor again\n" + control.strip() + "\n")
    return path


def one_round(order: list[str], args: argparse.Namespace, env: dict[str, str], log: Path,
              targets: Path) -> dict[str, Any]:
    before = {p for p in (HERE / "results").glob("2*") if p.is_dir()}
    with open(log, "a") as out:
        subprocess.run([str(HERE / "run.sh"), "--only", *order, "--concurrency", str(args.concurrency),
                        "--duration", str(args.duration), "--repeat", "1", "--stream-concurrency", str(args.streams),
                        "--targets", str(targets)],
                       cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    runs = {p for p in (HERE / "results").glob("2*") if p.is_dir()} - before
    if not runs:
        raise RuntimeError("bench/run.sh wrote no results directory")
    run = max(runs, key=lambda p: p.stat().st_mtime)
    data = json.loads((run / "results.json").read_text())
    found: dict[str, Any] = {"run": run.name, "order": order,
                             "version": data["targets"]["yourouter"].get("version", "")}
    for name in TARGETS:
        tests = data["targets"][name]["tests"]
        chat = next(t for t in tests if t.get("kind") == "chat" and t["concurrency"] == args.concurrency)
        stream = next(t for t in tests if t.get("kind") == "stream")
        if chat["errors"] or stream["errors"]:
            raise RuntimeError(f"{name}: errors in {run}")
        found[name] = {"rps": chat["rps"], "cpu_ms_per_req": chat["cpu_ms_per_req"],
                       "ttft_p50_ms": stream["ttft_p50_ms"], "total_p50_ms": stream["total_p50_ms"],
                       "cpu_ms_per_stream": stream["cpu_ms_per_req"]}
    return found


def _spread(values: list[float], fmt: str) -> str:
    """The median (bold) and the range, as two table cells."""
    return (f"**{format(statistics.median(values), fmt)}** | {format(min(values), fmt)} … "
            f"{format(max(values), fmt)}")


def _median_line(label: str, values: list[float], fmt: str, target: str, met: bool) -> str:
    return f"| {label} | {_spread(values, fmt)} | {target} | {'yes' if met else '**no**'} |"


def report(rounds: list[dict[str, Any]], args: argparse.Namespace, elapsed: float) -> str:
    c = args.concurrency
    thr = [r["yourouter"]["rps"] / r["floor"]["rps"] for r in rounds]
    cpu = [r["yourouter"]["cpu_ms_per_req"] / r["floor"]["cpu_ms_per_req"] for r in rounds]
    redis = [r["yourouter-redis"]["cpu_ms_per_req"] / r["yourouter"]["cpu_ms_per_req"] for r in rounds]
    ttft = [r["yourouter"]["ttft_p50_ms"] - r["floor"]["ttft_p50_ms"] for r in rounds]
    stream_cpu = [r["yourouter"]["cpu_ms_per_stream"] / r["floor"]["cpu_ms_per_stream"] for r in rounds]
    total = [r["yourouter"]["total_p50_ms"] / r["floor"]["total_p50_ms"] for r in rounds]
    total_direct = [r["yourouter"]["total_p50_ms"] / r["direct"]["total_p50_ms"] for r in rounds]
    floor_direct = [r["floor"]["total_p50_ms"] / r["direct"]["total_p50_ms"] for r in rounds]
    control_thr = [r["floor-again"]["rps"] / r["floor"]["rps"] for r in rounds]
    control_ttft = [r["floor-again"]["ttft_p50_ms"] - r["floor"]["ttft_p50_ms"] for r in rounds]
    spread = statistics.median(abs(x) for x in control_ttft)
    lines = [f"`bench/rounds.py --rounds {args.rounds} --duration {args.duration} --concurrency {c} --streams "
             f"{args.streams}{' --ref ' + args.ref if args.ref else ''}` — "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {rounds[0]['version']}, "
             f"{elapsed / 60:.0f} min. Each round: one bench/run.sh pass of {', '.join(TARGETS)} (order rotating), "
             f"{args.duration} s per test.", "",
             "| figure (YouRouter against the same round's floor) | median | range over rounds | target | met |",
             "|---|---|---|---|---|",
             _median_line(f"c={c} throughput, full pipeline, ÷ floor's", thr, ".2f", "≥ 0.60",
                          statistics.median(thr) >= 0.60),
             _median_line(f"c={c} gateway CPU per request, full pipeline, ÷ floor's", cpu, ".2f", "—", True),
             _median_line(f"c={c} gateway CPU per request, Redis limits ÷ in process", redis, ".2f", "≤ 1.15",
                          statistics.median(redis) <= 1.15),
             _median_line(f"{args.streams} streams: TTFT p50 − floor's (ms)", ttft, "+.2f", "≤ +0.3",
                          statistics.median(ttft) <= 0.3),
             _median_line(f"{args.streams} streams: CPU per stream ÷ floor's", stream_cpu, ".2f", "≤ 1.5",
                          statistics.median(stream_cpu) <= 1.5),
             _median_line(f"{args.streams} streams: total stream time p50 ÷ floor's", total, ".3f", "—", True),
             _median_line(f"{args.streams} streams: total stream time p50 ÷ direct's", total_direct, ".3f", "≤ 1.02",
                          statistics.median(total_direct) <= 1.02),
             "", "The control, the floor against itself in the same rounds (what noise alone does), and the floor's "
             "total stream time against direct's:", "",
             "| figure (against the same round's floor or direct) | median | range over rounds |", "|---|---|---|",
             f"| c={c} throughput ÷ floor's | {_spread(control_thr, '.2f')} |",
             f"| {args.streams} streams: TTFT p50 − floor's (ms) | {_spread(control_ttft, '+.2f')} "
             f"(median distance {spread:.2f}) |",
             f"| {args.streams} streams: the floor's total stream time p50 ÷ direct's | "
             f"{_spread(floor_direct, '.3f')} |",
             "", "Each round:", "",
             "| round | first | floor req/s | floor-again | YouRouter req/s | Redis req/s | floor CPU ms/req | "
             "YouRouter | Redis | floor TTFT ms | floor-again | YouRouter TTFT ms | floor CPU ms/stream | "
             "YouRouter CPU ms/stream |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rounds, 1):
        f, a, y, d = r["floor"], r["floor-again"], r["yourouter"], r["yourouter-redis"]
        lines.append(f"| {i} | {r['order'][0]} | {f['rps']:.0f} | {a['rps']:.0f} | {y['rps']:.0f} | {d['rps']:.0f} | "
                     f"{f['cpu_ms_per_req']:.3f} | {y['cpu_ms_per_req']:.3f} | {d['cpu_ms_per_req']:.3f} | "
                     f"{f['ttft_p50_ms']:.2f} | {a['ttft_p50_ms']:.2f} | {y['ttft_p50_ms']:.2f} | "
                     f"{f['cpu_ms_per_stream']:.3f} | {y['cpu_ms_per_stream']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--duration", type=int, default=8, help="seconds per harness test")
    p.add_argument("--concurrency", type=int, default=50, help="non-streaming concurrency")
    p.add_argument("--streams", type=int, default=100, help="concurrent streams")
    p.add_argument("--ref", help="measure this commit (bench/run.sh's YOUROUTER_REF); default: the working tree")
    args = p.parse_args()
    out = HERE / "results" / f"rounds-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True)
    env = {**os.environ, "SKIP_INSTALL": "1"}
    if args.ref:
        env["YOUROUTER_REF"] = args.ref
    targets = targets_with_control(out)
    started = time.monotonic()
    rounds = []
    for k in range(args.rounds):
        order = list(TARGETS[k % len(TARGETS):] + TARGETS[:k % len(TARGETS)])
        r = one_round(order, args, env, out / "harness.log", targets)
        rounds.append(r)
        f, y = r["floor"], r["yourouter"]
        print(f"round {k + 1}/{args.rounds} ({order[0]} first): c={args.concurrency} {y['rps']:.0f} / "
              f"{f['rps']:.0f} req/s = {y['rps'] / f['rps']:.2f}; TTFT {y['ttft_p50_ms']:.2f} vs "
              f"{f['ttft_p50_ms']:.2f} ms (floor-again {r['floor-again']['ttft_p50_ms']:.2f})", flush=True)
    text = report(rounds, args, time.monotonic() - started)
    (out / "data.json").write_text(json.dumps(rounds, indent=1))
    (out / "report.md").write_text(text)
    (HERE / "ROUNDS.md").write_text("# Headline ratios over alternating rounds (bench/rounds.py)\n\n" + text)
    print(text)
    print(f"written to {out / 'report.md'} and {HERE / 'ROUNDS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
