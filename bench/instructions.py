"""Instructions per request under callgrind: a cost measure this shared, noisy 2-core machine cannot disturb.

    .venv/bin/python bench/instructions.py                          # floor, then the working tree (full pipeline)
    .venv/bin/python bench/instructions.py --ref HEAD~3 --ref HEAD  # commits side by side (git archive -> venvs)
    .venv/bin/python bench/instructions.py --config bench/yourouter.yaml --requests 2000 --stream
    .venv/bin/python bench/instructions.py --stream --chunk-delay-ms 40 --requests 300   # one read per event

Wall-clock CPU time per request moved by ±25 % between identical runs here while other work ran; valgrind's
instruction count (`Ir`) for the same code, inputs and environment moves by about 1 % (bench/README.md, "Instructions
per request"). Each target runs under `valgrind --tool=callgrind --instr-atstart=no` (every thread; ~50-100× slower,
so throughput is meaningless here): the shared mock upstream and an aiohttp client run natively; after `--warmup`
requests, instrumentation is switched on with `callgrind_control -i on`, `--requests` requests are sent at
`--concurrency`, it is switched off and dumped; Ir / requests is the figure. The floor proxy is measured the same
way, so each YouRouter figure is also given as a ratio to the floor's. `--top N` lists the C functions with the most
instructions (uvicorn's header regexes show as `sre_*`, dict lookups as `*dict*`, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from _common import callgrind_total

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = Path(os.environ.get("SHARED_BENCH", ROOT.parent / "shared" / "bench")).resolve()
KEY = "sk-bench-instructions-0001"


def venv_for(ref: str | None) -> Path:
    """The working tree's .venv, or a snapshot venv of `ref` (the same one bench/run.sh builds)."""
    if ref is None:
        return ROOT / ".venv"
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", f"{ref}^{{commit}}"], check=True,
                         capture_output=True, text=True).stdout.strip()
    venv = Path(tempfile.gettempdir()) / f"yourouter-bench-{sha}"
    python = venv / "bin" / "python"
    if not python.exists() or subprocess.run([str(python), "-c", "import yourouter"], capture_output=True).returncode:
        with tempfile.TemporaryDirectory() as src:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha], check=True, capture_output=True)
            subprocess.run(["tar", "-x", "-C", src], input=archive.stdout, check=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", src], check=True)
    return venv


async def drive(url: str, body: bytes, total: int, concurrency: int, stream: bool) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    left = total
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=300)) as session:
        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with session.post(url, data=body, headers=headers) as response:
                    data = await response.read()
                    if response.status != 200 or (stream and not data.rstrip().endswith(b"[DONE]")):
                        raise RuntimeError(f"{response.status}: {data[:200]!r}")
        await asyncio.gather(*(worker() for _ in range(concurrency)))


def wait_ready(url: str, body: bytes, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            asyncio.run(drive(url, body, 1, 1, False))
            return
        except (aiohttp.ClientError, RuntimeError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def measure(name: str, command: list[str], env: dict[str, str], port: int, args: argparse.Namespace,
            out: Path) -> dict[str, object]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    model = "gpt-4o-mini-paced" if args.stream else "gpt-4o-mini"
    body = (b'{"model":"%s","messages":[{"role":"user","content":"How many instructions does a request take?"}]%s}'
            % (model.encode(), b',"stream":true' if args.stream else b""))
    dump = out / f"callgrind.{name}"
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={dump}.%p"]
    log = open(out / f"{name}.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(valgrind + command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        wait_ready(url, body, 300)
        asyncio.run(drive(url, body, args.warmup, args.concurrency, args.stream))
        subprocess.run(["callgrind_control", "-i", "on", str(process.pid)], check=True, capture_output=True)
        started = time.monotonic()
        asyncio.run(drive(url, body, args.requests, args.concurrency, args.stream))
        elapsed = time.monotonic() - started
        subprocess.run(["callgrind_control", "-i", "off", str(process.pid)], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-d", str(process.pid)], check=True, capture_output=True)
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    dumps = sorted(out.glob(f"callgrind.{name}.{process.pid}.*"))
    total = callgrind_total(dumps)
    top = ""
    if args.top and dumps and shutil.which("callgrind_annotate"):
        annotated = subprocess.run(["callgrind_annotate", str(dumps[-1])], capture_output=True, text=True).stdout
        rows = [line for line in annotated.splitlines() if re.match(r"^\s*[\d,]+ \(", line)][1:args.top + 1]
        top = "\n".join(re.sub(r"python-build[^ ]*/Python-3[^/]*/", "", row) for row in rows)
    return {"name": name, "instructions_per_request": total / args.requests, "seconds": round(elapsed, 1),
            "top": top}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", action="append", help="commit to measure (repeatable); default: the working tree")
    parser.add_argument("--config", default=str(HERE / "yourouter-full.yaml"))
    parser.add_argument("--limits-backend", default="memory", help="YR_LIMITS_BACKEND for yourouter-full.yaml")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--stream", action="store_true", help="streamed chat completions (23 events each)")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0,
                        help="the mock's delay between a stream's events (default 0: a stream in one write; the "
                             "harness's paced mock uses 5 ms, so each event is a read and a write of its own)")
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--top", type=int, default=0, help="list the N C functions with the most instructions")
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is needed (apt-get install valgrind)")
    out = HERE / "results" / f"instructions-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True)
    bench_python = os.environ.get("BENCH_VENV", "/tmp/bench-venv") + "/bin/python"
    mock_port = 18350
    mock = subprocess.Popen([bench_python if Path(bench_python).exists() else sys.executable,
                             str(SHARED / "mock_upstream.py"), "--port", str(mock_port),
                             "--chunk-delay-ms", str(args.chunk_delay_ms)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    upstream = f"http://127.0.0.1:{mock_port}/v1"
    results = []
    try:
        time.sleep(1)
        if not args.no_floor:
            floor_script = os.environ.get("FLOOR_SCRIPT", str(SHARED / "floor_proxy.py"))
            results.append(measure("floor", [bench_python, floor_script, "--port", "15451"],
                                   {"UPSTREAM_FAST": upstream, "UPSTREAM_PACED": upstream,
                                    "UPSTREAM_KEY": "sk-upstream-fixed"}, 15451, args, out))
        for index, ref in enumerate(args.ref or [None]):
            venv = venv_for(ref)
            db = out / f"yourouter-{index}.db"
            env = {"BENCH_API_KEY": KEY, "MOCK_FAST_URL": upstream, "MOCK_PACED_URL": upstream,
                   "YR_BENCH_DB": str(db), "YR_LOG_REQUESTS": "true", "YR_LIMITS_BACKEND": args.limits_backend}
            command = [str(venv / "bin" / "python"), "-m", "yourouter", "serve", "--config", args.config,
                       "--port", str(15452 + index), "--log-level", "info"]
            results.append(measure(f"yourouter-{ref or 'worktree'}".replace("/", "_"), command, env,
                                   15452 + index, args, out))
    finally:
        mock.terminate()
    floor = next((r["instructions_per_request"] for r in results if r["name"] == "floor"), None)
    kind = "streams" if args.stream else "requests"
    if args.stream and args.chunk_delay_ms:
        kind += f" paced {args.chunk_delay_ms:g} ms"
    print(f"\n{args.requests} {kind} at c={args.concurrency}, config {Path(args.config).name}; results in {out}")
    for r in results:
        ratio = f"  ({r['instructions_per_request'] / floor:.2f}x floor)" if floor else ""  # type: ignore[operator]
        print(f"{r['name']:>28}: {r['instructions_per_request'] / 1000:9.1f} k instructions per request{ratio}")
        if r["top"]:
            print(r["top"])


if __name__ == "__main__":
    main()
