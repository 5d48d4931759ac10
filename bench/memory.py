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
import json
import os
import resource
import shlex
import sys
import time
from typing import Any

from _common import exit_on_signals, install_uvloop, make_out_dirs, pin_load, resolve_yourouter
from memory_load import DEFAULT_MIX, KINDS, SHARED, load_words, parse_mix, run_soak, run_streams
from memory_report import soak_md, streams_md, write_md

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


def main() -> int:
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
    load_words()

    yr_bin, commit = resolve_yourouter(args, p)
    nofile = raise_nofile()
    if args.mode != "soak" and nofile < 2 * args.streams + 100:
        print(f"warning: RLIMIT_NOFILE is {nofile}: the gateway needs ~2 fds per stream", file=sys.stderr)
    nproc = os.cpu_count() or 1
    pin_load(args, nproc)
    pinning = (f"Pinned (taskset): gateway on CPU {args.gw_cpus}, upstreams + client on CPU {args.load_cpus} "
               f"(nproc {nproc})." if args.gw_cpus else f"NOT pinned (nproc {nproc}).")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out, work = make_out_dirs(args.out, "memory", stamp)

    exit_on_signals()
    install_uvloop()
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
