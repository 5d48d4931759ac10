#!/usr/bin/env python3
"""Instructions per admission cycle of the limits engine, in process and on Redis, under callgrind: the engine's
cost without HTTP, measured so that this machine's noise does not move it (bench/instructions.py does the same for
whole requests).

    .venv/bin/python bench/limits_instructions.py                       # memory and redis, 3,000 cycles at 10
    .venv/bin/python bench/limits_instructions.py --backend redis --cycles 5000 --concurrency 50

A cycle is what the pipeline does for a request of a limited key (bench/yourouter-full.yaml's: rpm, tpm,
concurrency and a daily budget, a priced model): `Admission.admit` (token estimate, reservation, the engine's
admission), the `x-ratelimit-*` headers, then the settlement (`Admission.settle` in process, `settle_soon` on Redis,
as `Pipeline.settle` does), with --concurrency cycles in flight on uvloop. Each backend runs in a child process
under `valgrind --tool=callgrind --instr-atstart=no`; after a warm-up the driver switches instrumentation on with
`callgrind_control`, the child runs --cycles cycles (and waits for the last settlements), the driver switches it off,
and the total over the child's threads divided by the cycles is the figure. Redis keys live under a prefix unique to
the run and are deleted at the end. Prints one line per backend.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import callgrind_total
from limits_micro import COST, TOKENS, ZeroSpend

HERE = Path(__file__).resolve().parent
BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"limits-bench 0000000"}]}'


async def child(backend_kind: str, redis_url: str, prefix: str, cycles: int, concurrency: int) -> None:
    os.environ.setdefault("BENCH_API_KEY", "sk-bench-limits-instructions")
    from yourouter.auth.keys import KeyStore
    from yourouter.config import load_settings
    from yourouter.limits import MemoryLimitBackend
    from yourouter.limits.redis import RedisLimitBackend
    from yourouter.pipeline.admission import Admission, key_scope, rate_headers
    from yourouter.pricing import PriceBook
    from yourouter.providers.base import CHAT
    from yourouter.providers.registry import build_provider
    from yourouter.routing.catalog import Catalog

    settings = load_settings(str(HERE / "yourouter-full.yaml"))
    routes = Catalog([build_provider(c) for c in settings.providers]).candidates("gpt-4o-mini", None, CHAT)
    static = KeyStore(settings.keys, None, 0).static_keys
    key = next(iter(static() if callable(static) else static))
    backend = (MemoryLimitBackend(ZeroSpend()) if backend_kind == "memory"
               else RedisLimitBackend.connect(redis_url, ZeroSpend(), prefix=prefix))
    admission = Admission(backend, PriceBook.from_config(settings.prices),
                          reserve_ceiling_usd=settings.limits.reserve_ceiling_usd,
                          default_max_output_tokens=settings.limits.default_max_output_tokens)
    settling: set[asyncio.Future[object]] = set()
    seq = 0

    async def loop(n: int) -> None:
        nonlocal seq
        for _ in range(n):
            seq += 1
            ticket = await admission.admit(f"cycle-{seq}", key, BODY, None, routes)
            assert ticket is not None
            rate_headers(ticket.states.get(key_scope(key)))
            if admission.settles_in_process:
                await admission.settle(ticket, TOKENS, COST)
            else:
                future = admission.settle_soon(ticket, TOKENS, COST)
                settling.add(future)
                future.add_done_callback(settling.discard)
            await asyncio.sleep(0)  # as between requests: other work runs

    async def run(n: int) -> None:
        await asyncio.gather(*(loop(n // concurrency) for _ in range(concurrency)))
        if settling:
            await asyncio.wait(list(settling))

    await run(max(concurrency, 300))  # warm-up
    print("ready", flush=True)
    sys.stdin.readline()
    await run(cycles)
    print("done", flush=True)
    sys.stdin.readline()
    await backend.close()


def measure(backend: str, args: argparse.Namespace, prefix: str, out: Path) -> float:
    dump = out / f"callgrind.{backend}"
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={dump}.%p", sys.executable,
         __file__, "--child", backend, "--redis", args.redis, "--prefix", prefix, "--cycles", str(args.cycles),
         "--concurrency", str(args.concurrency)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdin is not None and process.stdout is not None
    try:
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{backend}: the child did not start")
        subprocess.run(["callgrind_control", "-i", "on", str(process.pid)], check=True, capture_output=True)
        process.stdin.write("\n")
        process.stdin.flush()
        if process.stdout.readline().strip() != "done":
            raise RuntimeError(f"{backend}: the child failed")
        subprocess.run(["callgrind_control", "-i", "off", str(process.pid)], check=True, capture_output=True)
        process.stdin.write("\n")
        process.stdin.flush()
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return callgrind_total(sorted(out.glob(f"callgrind.{backend}.{process.pid}*"))) / args.cycles


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["memory", "redis", "both"], default="both")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--cycles", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import uvloop

        uvloop.run(child(args.child, args.redis, args.prefix, args.cycles, args.concurrency))
        return 0
    prefix = f"yr-bench-instr-{os.getpid()}-{int(time.time())}:"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for backend in (["memory", "redis"] if args.backend == "both" else [args.backend]):
                per_cycle = measure(backend, args, prefix, Path(tmp))
                print(f"{backend:>7}: {per_cycle / 1000:7.1f} k instructions per admission cycle "
                      f"({args.cycles} cycles, {args.concurrency} in flight)", flush=True)
    finally:
        if args.backend != "memory":
            import redis

            client = redis.Redis.from_url(args.redis)
            for key in client.scan_iter(match=prefix + "*", count=1000):
                client.delete(key)
            client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
