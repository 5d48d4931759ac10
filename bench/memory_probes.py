"""Memory benchmark probes: a process tree's RSS/fds/threads from /proc, the RSS sampler, and the gateway's
gc-callback hook and its log (used by bench/memory.py; see its docstring)."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaos import cpu_busy, cpu_seconds
from translation import tree_pids

NAN = float("nan")
MB = 1024 * 1024


# ----------------------------------------------------------------------------------------------- /proc


def status_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[name] = int(value.split()[0])
                elif name == "Threads":
                    out[name] = int(value)
    except (OSError, ValueError):
        pass
    return out


def memory_of(root: int) -> dict[str, float]:
    """The process tree's memory, MB (VmRSS, RssAnon, RssFile, VmHWM summed), open fds and threads."""
    total: dict[str, float] = {"rss_mb": 0.0, "anon_mb": 0.0, "file_mb": 0.0, "hwm_mb": 0.0, "fds": 0.0,
                               "threads": 0.0, "procs": 0.0}
    for pid in tree_pids(root):
        kb = status_kb(pid)
        if not kb:
            continue
        total["procs"] += 1
        total["rss_mb"] += kb.get("VmRSS", 0) / 1024
        total["anon_mb"] += kb.get("RssAnon", 0) / 1024
        total["file_mb"] += kb.get("RssFile", 0) / 1024
        total["hwm_mb"] += kb.get("VmHWM", 0) / 1024
        total["threads"] += kb.get("Threads", 0)
        try:
            total["fds"] += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return total


class Sampler:
    """Every `interval` s: the gateway's memory_of(), its CPU time, our own processes' CPU time, both CPUs' busy
    time, plus whatever `extra()` returns (the client's counters). Samples carry t = s since `t0`."""

    def __init__(self, gw_pid: int, ours: list[int], interval: float, t0: float,
                 extra: Callable[[], dict[str, float]]) -> None:
        self.gw_pid, self.ours, self.interval, self.t0, self.extra = gw_pid, ours, interval, t0, extra
        self.samples: list[dict[str, Any]] = []
        self._last: tuple[float, float, float, dict[str, tuple[float, float]]] | None = None
        self._task: asyncio.Task[None] | None = None

    def sample(self, label: str = "") -> dict[str, Any]:
        now = time.monotonic()
        gw_cpu = cpu_seconds(self.gw_pid)
        load_cpu = sum(cpu_seconds(pid) for pid in self.ours)
        busy = cpu_busy()
        row: dict[str, Any] = {"t": round(now - self.t0, 3), **memory_of(self.gw_pid), "gw_cpu_s": gw_cpu}
        if self._last is not None and now - self._last[0] >= 0.5:  # shorter: too coarse for CPU shares
            t_prev, gw_prev, load_prev, busy_prev = self._last
            wall = max(now - t_prev, 1e-6)
            row["gw_cpu_pct"] = (gw_cpu - gw_prev) / wall * 100
            row["load_cpu_pct"] = (load_cpu - load_prev) / wall * 100
            for cpu in busy:
                row[f"busy_cpu{cpu}_pct"] = (busy[cpu][0] - busy_prev[cpu][0]) / wall * 100
        if self._last is None or now - self._last[0] >= 0.5:
            self._last = (now, gw_cpu, load_cpu, busy)
        row.update(self.extra())
        if label:
            row["label"] = label
        self.samples.append(row)
        return row

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.sample()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


# ----------------------------------------------------------------------------------------------- processes

#: `--gc-log` (default): the gateway is started as `<venv>/bin/python -c GC_HOOK serve ...`, i.e. `yourouter serve`
#: with a gc callback that writes one line per collection of generation 1 or 2 (CLOCK_MONOTONIC time, objects
#: collected, pause) to its log. It observes only: the thresholds, freeze and everything else are the gateway's own.
GC_HOOK = r'''
import gc, sys, time
_start = [0.0]
def _yr_memory_gc(phase, info):
    if phase == "start":
        _start[0] = time.perf_counter()
    elif info["generation"] >= 1:
        sys.stderr.write("YR-MEMORY-GC %d %.3f %d %.2f\n" % (info["generation"], time.monotonic(),
                         info["collected"], (time.perf_counter() - _start[0]) * 1000))
        sys.stderr.flush()
gc.callbacks.append(_yr_memory_gc)
from yourouter.cli import main
sys.argv[0] = "yourouter"
main()
'''


def gc_events(log: Path, t0: float) -> list[dict[str, float]]:
    """The GC_HOOK lines of a gateway log: generation, t (s since t0, the sampler's CLOCK_MONOTONIC origin),
    objects collected, pause ms."""
    out: list[dict[str, float]] = []
    try:
        with open(log, errors="replace") as f:
            for line in f:
                if line.startswith("YR-MEMORY-GC "):
                    _, gen, mono, collected, pause = line.split()
                    out.append({"gen": int(gen), "t": round(float(mono) - t0, 3), "collected": int(collected),
                                "pause_ms": float(pause)})
    except (OSError, ValueError):
        pass
    return out


def gc_line(events: list[dict[str, float]], t_from: float, t_to: float) -> str:
    """One sentence on the gateway's generation-1/2 collections between t_from and t_to (s)."""
    parts = []
    for gen in (1, 2):
        xs = [e for e in events if e["gen"] == gen and t_from <= e["t"] <= t_to]
        if xs:
            times = ", ".join(f"{e['t']:.0f}" for e in xs[:12]) + (", ..." if len(xs) > 12 else "")
            collected = statistics.fmean(e["collected"] for e in xs)
            pauses = [e["pause_ms"] for e in xs]
            parts.append(f"{len(xs)} of generation {gen} (at t = {times} s; {collected:,.0f} objects collected on "
                         f"average; pause max {max(pauses):.0f} ms, mean {statistics.fmean(pauses):.0f} ms)")
        else:
            parts.append(f"none of generation {gen}")
    return "; ".join(parts)

