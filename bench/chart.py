#!/usr/bin/env python3
"""The side-by-side chart (PNG) and issue #8's target table, from the shared harness's results.json files.

    python bench/chart.py bench/results/<main stamp> [bench/results/<100-stream stamp>] --out docs/benchmark.png

The first run is bench/run.sh's (non-streaming at c=1/10/50, 10 streams); the optional second one the 100-stream
run (bench/all.sh makes both). Needs matplotlib (bench/all.sh installs it into the bench venv). Prints a markdown
table of every target as a ratio to `floor` (or `direct`) of the same run, pass 1, which README.md quotes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ORDER = ["floor", "yourouter", "yourouter-redis", "yourouter-plain", "portkey", "litellm"]
LABELS = {"floor": "floor (minimal Python proxy)", "yourouter": "YouRouter (full pipeline)",
          "yourouter-redis": "YouRouter (full, Redis limits)", "yourouter-plain": "YouRouter (no limits)",
          "portkey": "Portkey (Node)", "litellm": "LiteLLM"}
COLORS = {"floor": "#9e9e9e", "yourouter": "#1565c0", "yourouter-redis": "#42a5f5", "yourouter-plain": "#90caf9",
          "portkey": "#ef6c00", "litellm": "#c62828"}


def load(path: str) -> dict[str, Any]:
    p = Path(path)
    return json.loads((p / "results.json" if p.is_dir() else p).read_text())


def test(run: dict[str, Any], target: str, kind: str, concurrency: int) -> dict[str, Any] | None:
    for t in run["targets"].get(target, {}).get("tests", []):
        if t.get("kind") == kind and t.get("concurrency") == concurrency and t.get("pass_") == 1:
            return t
    return None


def first_run(run: dict[str, Any], target: str) -> dict[str, Any]:
    runs = run["targets"].get(target, {}).get("runs") or [{}]
    return runs[0]


def chart(main: dict[str, Any], streams: dict[str, Any] | None, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = [t for t in ORDER if test(main, t, "chat", 1)]
    concs = [1, 10, 50]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
    width = 0.8 / max(1, len(targets))
    for panel, (key, title, log) in enumerate([
            ("rps", "Non-streaming throughput (req/s, one core)", True),
            ("added", "Added latency p50 over direct (ms)", True)]):
        ax = axes[panel]
        for i, target in enumerate(targets):
            values = []
            for c in concs:
                t = test(main, target, "chat", c)
                d = test(main, "direct", "chat", c)
                if t is None:
                    values.append(0.0)
                elif key == "rps":
                    values.append(t["rps"])
                else:
                    values.append(max(0.01, t["lat_p50_ms"] - (d["lat_p50_ms"] if d else 0.0)))
            xs = [c_i + (i - (len(targets) - 1) / 2) * width for c_i in range(len(concs))]
            ax.bar(xs, values, width, label=LABELS[target], color=COLORS[target])
        ax.set_xticks(range(len(concs)), [f"c={c}" for c in concs])
        ax.set_title(title)
        if log:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    ax = axes[2]
    stream_sets = [(main, main["settings"]["stream_concurrency"])]
    if streams is not None:
        stream_sets.append((streams, streams["settings"]["stream_concurrency"]))
    stream_targets = [t for t in ORDER if any(test(r, t, "stream", c) for r, c in stream_sets)]
    width = 0.8 / max(1, len(stream_targets))
    for i, target in enumerate(stream_targets):
        values = []
        for run, c in stream_sets:
            t = test(run, target, "stream", c)
            d = test(run, "direct", "stream", c)
            ok = t is not None and not t.get("errors")
            values.append(max(0.01, t["ttft_p50_ms"] - (d["ttft_p50_ms"] if d else 0.0)) if ok else 0.0)
        xs = [j + (i - (len(stream_targets) - 1) / 2) * width for j in range(len(stream_sets))]
        ax.bar(xs, values, width, label=LABELS[target], color=COLORS[target])
    ax.set_xticks(range(len(stream_sets)), [f"{c} streams" for _, c in stream_sets])
    ax.set_title("Streaming: added time to first token p50 (ms)")
    ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    machine = main.get("machine", {})
    fig.suptitle(f"Gateways side by side, same run ({main['date'][:16]}, {machine.get('cpus')} vCPU "
                 f"{machine.get('cpu_model', '')}; gateway pinned to one core; Portkey failed every stream: no bar)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None or not b else f"{a / b:.2f}×"


def table(main: dict[str, Any], streams: dict[str, Any] | None) -> str:
    def get(run: dict[str, Any] | None, target: str, kind: str, c: int, field: str) -> float | None:
        t = None if run is None else test(run, target, kind, c)
        return None if t is None or t.get(field) is None else float(t[field])

    rows = ["| figure | floor | YouRouter (full, in process) | YouRouter (full, Redis) | YouRouter (no limits) "
            "| Portkey | LiteLLM |", "|---|---|---|---|---|---|---|"]
    names = ["floor", "yourouter", "yourouter-redis", "yourouter-plain", "portkey", "litellm"]

    def row(label: str, run: dict[str, Any] | None, kind: str, c: int, field: str, nd: int = 2,
            minus: str | None = None) -> None:
        cells = []
        for n in names:
            v = get(run, n, kind, c, field)
            if v is not None and minus is not None:
                base = get(run, minus, kind, c, field)
                v = None if base is None else v - base
            cells.append("—" if v is None else (f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{nd}f}"))
        rows.append(f"| {label} | " + " | ".join(cells) + " |")

    for c in (1, 10, 50):
        row(f"req/s, c={c}", main, "chat", c, "rps", 0)
    for c in (1, 10, 50):
        row(f"gateway CPU ms/request, c={c}", main, "chat", c, "cpu_ms_per_req", 3)
    row("added p50 over direct, c=1 (ms)", main, "chat", 1, "lat_p50_ms", 3, minus="direct")
    row("added p99 over direct, c=1 (ms)", main, "chat", 1, "lat_p99_ms", 3, minus="direct")
    for run in [main, streams]:
        if run is None:
            continue
        c = run["settings"]["stream_concurrency"]
        row(f"{c} streams: added TTFT p50 (ms)", run, "stream", c, "ttft_p50_ms", 2, minus="direct")
        row(f"{c} streams: total p50 (ms)", run, "stream", c, "total_p50_ms", 1)
        row(f"{c} streams: gateway CPU ms/stream", run, "stream", c, "cpu_ms_per_req", 2)
    cells = []
    for n in names:
        r = first_run(main, n)
        cells.append(f"{r['startup_s']:.2f}" if r.get("startup_s") is not None else "—")
    rows.append("| startup to first 200 (s) | " + " | ".join(cells) + " |")
    for label, field in (("RSS after ready (MB)", "mem_after_ready"), ("RSS / peak at the end (MB)", "mem_end")):
        cells = []
        for n in names:
            m = first_run(main, n).get(field) or {}
            cells.append("—" if not m else (f"{m['rss_mb']:.0f}" if field == "mem_after_ready"
                                            else f"{m['rss_mb']:.0f} / {m['hwm_mb']:.0f}"))
        rows.append(f"| {label} | " + " | ".join(cells) + " |")

    checks = ["", "| target (issue #8) | measured | met |", "|---|---|---|"]

    def check(label: str, value: str, ok: bool | None) -> None:
        checks.append(f"| {label} | {value} | {'—' if ok is None else ('yes' if ok else '**no**')} |")

    fl50, yr50 = get(main, "floor", "chat", 50, "rps"), get(main, "yourouter", "chat", 50, "rps")
    check("c=50 throughput, full pipeline, ≥ 60 % of floor's", f"{ratio(yr50, fl50)} ({yr50} vs {fl50} req/s)",
          None if not (yr50 and fl50) else yr50 / fl50 >= 0.6)
    f1, y1 = get(main, "floor", "chat", 1, "lat_p50_ms"), get(main, "yourouter", "chat", 1, "lat_p50_ms")
    check("added p50 at c=1 within 0.15 ms of floor's", "—" if f1 is None or y1 is None else f"{y1 - f1:+.3f} ms",
          None if f1 is None or y1 is None else y1 - f1 <= 0.15)
    cm, cr = get(main, "yourouter", "chat", 50, "cpu_ms_per_req"), get(main, "yourouter-redis", "chat", 50,
                                                                       "cpu_ms_per_req")
    check("Redis limits backend: CPU/request ≤ 1.15× in-process (c=50)", ratio(cr, cm),
          None if not (cm and cr) else cr / cm <= 1.15)
    for run in [main, streams]:
        if run is None:
            continue
        c = run["settings"]["stream_concurrency"]
        ft, yt = get(run, "floor", "stream", c, "ttft_p50_ms"), get(run, "yourouter", "stream", c, "ttft_p50_ms")
        check(f"{c} streams: TTFT within 0.3 ms of floor's",
              "—" if ft is None or yt is None else f"{yt - ft:+.2f} ms", None if ft is None or yt is None
              else yt - ft <= 0.3)
        dt, ytot = get(run, "direct", "stream", c, "total_p50_ms"), get(run, "yourouter", "stream", c,
                                                                       "total_p50_ms")
        check(f"{c} streams: total within 2 % of direct", ratio(ytot, dt),
              None if not (dt and ytot) else ytot / dt <= 1.02)
        fc, yc = get(run, "floor", "stream", c, "cpu_ms_per_req"), get(run, "yourouter", "stream", c,
                                                                      "cpu_ms_per_req")
        check(f"{c} streams: CPU/stream ≤ 1.5× floor's", ratio(yc, fc), None if not (fc and yc) else yc / fc <= 1.5)
    r = first_run(main, "yourouter")
    ready = (r.get("mem_after_ready") or {}).get("rss_mb")
    check("RSS after ready < 100 MB", f"{ready} MB", None if ready is None else ready < 100)
    check("startup < 1.5 s (one worker)", f"{r.get('startup_s')} s",
          None if r.get("startup_s") is None else r["startup_s"] < 1.5)
    return "\n".join(rows + checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("main")
    parser.add_argument("streams", nargs="?")
    parser.add_argument("--out", default="docs/benchmark.png")
    parser.add_argument("--no-chart", action="store_true")
    args = parser.parse_args()
    main_run = load(args.main)
    streams = load(args.streams) if args.streams else None
    if not args.no_chart:
        chart(main_run, streams, Path(args.out))
        print(f"chart: {args.out}")
    print(table(main_run, streams))


if __name__ == "__main__":
    main()
