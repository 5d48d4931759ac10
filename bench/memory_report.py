"""Memory benchmark report: the markdown sections of bench/MEMORY.md (used by bench/memory.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memory_load import HERE, NAN, TARGET_FLAT, TARGET_READY_MB, TARGET_STREAMS_MB
from memory_probes import gc_line

MD_PATH = HERE / "MEMORY.md"
MARKS = {mode: (f"<!-- generated:{mode}:begin (bench/memory.py) -->", f"<!-- generated:{mode}:end -->")
         for mode in ("soak", "streams")}



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


