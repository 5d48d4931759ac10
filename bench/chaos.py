"""Chaos benchmark: one of two deployments fails 30 % of requests; what do clients see?

    python bench/chaos.py [--requests 3000] [--concurrency 10] [--fail-rate 0.3]

Starts two simulators (`yourouter simulate`; one with --fail-rate) and a gateway with both as deployments of one
model (strategy `ordered`, so the failing one is always tried first and every one of its failures is retried on
the healthy one; cooldowns off, so the failure rate stays 30 % of first attempts). Reports the success rate and
latency percentiles of requests answered at the first attempt and of those that failed over, and the added p99 of
failed-over requests beyond the failed attempt's own time. Only 127.0.0.1; bounded; cleans up its processes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-chaos-0001"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "yourouter", *args], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


async def wait_ready(url: str, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def drive(url: str, requests: int, concurrency: int) -> list[tuple[int, int, float]]:
    body = {"model": "m", "messages": [{"role": "user", "content": "chaos"}]}
    results: list[tuple[int, int, float]] = []
    queue = iter(range(requests))
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        async def worker() -> None:
            for _ in queue:
                started = time.perf_counter()
                async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=30)) as response:
                    await response.read()
                    attempts = int(response.headers.get("x-yourouter-attempts", "0"))
                    results.append((response.status, attempts, (time.perf_counter() - started) * 1000))
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


async def direct_latency(url: str, requests: int) -> list[float]:
    """The healthy simulator's own latency, for the added-p99 baseline."""
    body = {"model": "m", "messages": [{"role": "user", "content": "chaos"}]}
    out = []
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-sim"}) as session:
        for _ in range(requests):
            started = time.perf_counter()
            async with session.post(url, json=body) as response:
                await response.read()
            out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--fail-rate", type=float, default=0.3)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="yr-chaos-"))
    flaky, healthy, gateway = free_port(), free_port(), free_port()
    config = work / "gw.yaml"
    config.write_text(f"""
database_url: sqlite:///{work}/gw.db
keys: [{{key: {KEY}, name: chaos}}]
routing: {{strategy: ordered, cooldown_failures: 1000000}}
providers:
  - {{name: flaky, vendor: openai, base_url: "http://127.0.0.1:{flaky}/v1", api_key: sk-sim, models: [m]}}
  - {{name: healthy, vendor: openai, base_url: "http://127.0.0.1:{healthy}/v1", api_key: sk-sim, models: [m]}}
""")
    processes = [
        start(["simulate", "--port", str(flaky), "--api-key", "sk-sim", "--fail-rate", str(options.fail_rate),
               "--fail-status", "500"], work / "flaky.log"),
        start(["simulate", "--port", str(healthy), "--api-key", "sk-sim"], work / "healthy.log"),
        start(["serve", "--config", str(config), "--port", str(gateway), "--log-level", "warning"], work / "gw.log"),
    ]
    try:
        asyncio.run(wait_ready(f"http://127.0.0.1:{healthy}/health"))
        asyncio.run(wait_ready(f"http://127.0.0.1:{gateway}/health"))
        url = f"http://127.0.0.1:{gateway}/v1/chat/completions"
        asyncio.run(drive(url, 200, options.concurrency))  # warm-up
        results = asyncio.run(drive(url, options.requests, options.concurrency))
        baseline = asyncio.run(direct_latency(f"http://127.0.0.1:{healthy}/v1/chat/completions", 500))
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    ok = [r for r in results if r[0] == 200]
    first = [r[2] for r in ok if r[1] == 1]
    retried = [r[2] for r in ok if r[1] > 1]
    lines = [
        f"# Chaos: one of two deployments fails {options.fail_rate:.0%} of requests",
        "",
        f"`python bench/chaos.py --requests {options.requests} --concurrency {options.concurrency} "
        f"--fail-rate {options.fail_rate}` — {time.strftime('%Y-%m-%d %H:%M')}, gateway unpinned on this 2-core "
        "machine with both simulators and the client.",
        "",
        "| requests | success | answered at attempt 1 | failed over | p50 ms (all) | p99 ms (all) |",
        "|---|---|---|---|---|---|",
        f"| {len(results)} | {len(ok) / len(results):.2%} | {len(first)} | {len(retried)} | "
        f"{statistics.median([r[2] for r in ok]):.2f} | {pct([r[2] for r in ok], 0.99):.2f} |",
        "",
        "| group | p50 ms | p99 ms |",
        "|---|---|---|",
        f"| answered at attempt 1 | {pct(first, 0.5):.2f} | {pct(first, 0.99):.2f} |",
        f"| failed over (attempt 2) | {pct(retried, 0.5):.2f} | {pct(retried, 0.99):.2f} |",
        f"| healthy simulator alone (baseline, c=1) | {pct(baseline, 0.5):.2f} | {pct(baseline, 0.99):.2f} |",
        "",
        f"Added p99 of a failed-over request over one answered at attempt 1: "
        f"{pct(retried, 0.99) - pct(first, 0.99):+.2f} ms (the failed attempt's own time included: the simulator "
        "answers its injected 500 at once).",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    (ROOT / "bench" / "CHAOS.md").write_text(report)


if __name__ == "__main__":
    main()
