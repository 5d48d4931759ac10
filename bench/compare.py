#!/usr/bin/env python3
"""Medians over several bench runs, and YouRouter's figures as ratios to `floor` against the project's targets.

    python bench/compare.py bench/results/<stamp> [bench/results/<stamp> ...] [--gateway yourouter] > summary.md

Each argument is a results directory (or its results.json) written by bench.py. Per target it prints the median
(and the range and n) of every figure over all runs and passes. The target checks pair each gateway measurement
with `floor`'s from the same run and pass (same machine conditions), then take the median of those paired values:
  * non-streaming throughput at c=50 >= 40 % of floor's (stretch 60 %)
  * added median latency at c=1 (p50 - floor p50) <= 0.2 ms (stretch 0.15 ms)
  * streaming TTFT p50 - floor's TTFT p50 <= 0.5 ms
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

ORDER = ["direct", "floor", "yourouter", "yourouter-nolog", "litellm", "portkey"]


def load(arg):
    p = Path(arg)
    p = p / "results.json" if p.is_dir() else p
    return p.parent.name, json.loads(p.read_text())


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, nd=2):
    if v is None:
        return "—"
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def cell(xs, nd=2):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "—"
    m = statistics.median(xs)
    if len(xs) == 1:
        return fmt(float(m), nd)
    return f"{fmt(float(m), nd)} ({fmt(float(min(xs)), nd)}–{fmt(float(max(xs)), nd)}, n={len(xs)})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--gateway", nargs="*", default=["yourouter", "yourouter-nolog"])
    a = ap.parse_args()
    runs = [load(r) for r in a.runs]
    names = []
    for _, R in runs:
        for n in R["targets"]:
            if n not in names:
                names.append(n)
    names.sort(key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))

    def tests(n, kind, c=None):
        out = []
        for stamp, R in runs:
            for t in R["targets"].get(n, {}).get("tests", []):
                if t.get("kind") == kind and (c is None or t.get("concurrency") == c) and "error" not in t:
                    out.append((stamp, t.get("pass_"), t))
        return out

    concs = sorted({t["concurrency"] for _, R in runs for tt in R["targets"].values() for t in tt.get("tests", [])
                    if t.get("kind") == "chat"})
    print(f"Runs: {', '.join(s for s, _ in runs)}. Cells: median (min–max, n) over runs and passes.\n")
    print("| target | startup s | RSS after ready MB | peak RSS MB |")
    print("|---|---|---|---|")
    for n in names:
        rr = [r for _, R in runs for r in R["targets"].get(n, {}).get("runs", []) if "error" not in r]
        print(f"| {n} | {cell([r['startup_s'] for r in rr])} | {cell([r['mem_after_ready']['rss_mb'] for r in rr], 1)} "
              f"| {cell([r.get('mem_end', {}).get('hwm_mb') for r in rr if r.get('pass') == 1], 1)} |")
    print("\nNon-streaming (wrk):\n")
    print("| target | conc | req/s | p50 ms | p99 ms | CPU ms/req | errors |")
    print("|---|---|---|---|---|---|---|")
    for n in names:
        for c in concs:
            T = [t for _, _, t in tests(n, "chat", c)]
            if T:
                print(f"| {n} | {c} | {cell([t['rps'] for t in T], 0)} | {cell([t['lat_p50_ms'] for t in T])} | "
                      f"{cell([t['lat_p99_ms'] for t in T])} | {cell([t.get('cpu_ms_per_req') for t in T], 3)} | "
                      f"{sum(t['errors'] for t in T)} |")
    print("\nStreaming (loadgen, paced mock):\n")
    print("| target | streams/s | TTFB p50 ms | TTFT p50 ms | TTFT p99 ms | total p50 ms | CPU ms/stream | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for n in names:
        T = [t for _, _, t in tests(n, "stream")]
        if T:
            print(f"| {n} | {cell([t['rps'] for t in T], 1)} | {cell([t.get('ttfb_p50_ms') for t in T])} | "
                  f"{cell([t.get('ttft_p50_ms') for t in T])} | {cell([t.get('ttft_p99_ms') for t in T])} | "
                  f"{cell([t.get('total_p50_ms') for t in T], 1)} | {cell([t.get('cpu_ms_per_req') for t in T], 3)} | "
                  f"{sum(t['errors'] for t in T)} |")

    def paired(n, kind, c, f):
        floor = {(s, p): t for s, p, t in tests("floor", kind, c)}
        return [(s, p, f(t, floor[(s, p)])) for s, p, t in tests(n, kind, c) if (s, p) in floor]

    print("\nTargets (each value paired with floor's from the same run and pass; median of the pairs):\n")
    print("| gateway | check | target | stretch | median | per run/pass | verdict |")
    print("|---|---|---|---|---|---|---|")
    for n in [g for g in a.gateway if g in names] + [g for g in names if g in ("litellm", "portkey")]:
        checks = [
            ("c=50 req/s ÷ floor's", "chat", 50, lambda t, f: t["rps"] / f["rps"], 0.40, 0.60, True, "{:.0%}"),
            ("c=1 p50 − floor's p50 (ms)", "chat", 1, lambda t, f: t["lat_p50_ms"] - f["lat_p50_ms"],
             0.20, 0.15, False, "{:+.3f}"),
            ("stream TTFT p50 − floor's (ms)", "stream", None,
             lambda t, f: None if t.get("ttft_p50_ms") is None else t["ttft_p50_ms"] - f["ttft_p50_ms"],
             0.50, None, False, "{:+.2f}"),
        ]
        for label, kind, c, f, goal, stretch, higher, pat in checks:
            vals = [(s, p, v) for s, p, v in paired(n, kind, c, f) if v is not None]
            if not vals:
                print(f"| {n} | {label} | — | — | no data | | |")
                continue
            m = statistics.median(v for _, _, v in vals)
            ok = m >= goal if higher else m <= goal
            verdict = "meets" if ok else "misses"
            if ok and stretch is not None and (m >= stretch if higher else m <= stretch):
                verdict = "meets + stretch"
            per = ", ".join(pat.format(v) for _, _, v in vals)
            gs = (f"≥ {goal:.0%}" if higher else f"≤ +{goal:.2f}")
            ss = "—" if stretch is None else (f"≥ {stretch:.0%}" if higher else f"≤ +{stretch:.2f}")
            print(f"| {n} | {label} | {gs} | {ss} | {pat.format(m)} | {per} | {verdict} |")


if __name__ == "__main__":
    main()
