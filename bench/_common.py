"""Set-up shared by the bench/*.py scripts: the yourouter to measure, the output dirs, signals, uvloop, CPU
pinning, callgrind's totals, and the generated section of a bench/*.md report. Standard library only."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def install_ref(ref: str) -> tuple[Path, str]:
    """Like bench/run.sh with YOUROUTER_REF: `git archive` of the commit into its own (non-editable) venv."""
    sha = subprocess.check_output(["git", "-C", str(ROOT), "rev-parse", "--short=12", f"{ref}^{{commit}}"],
                                  text=True).strip()
    venv = Path(os.environ.get("TMPDIR", "/tmp")) / f"yourouter-bench-{sha}"
    py = venv / "bin" / "python"
    if not (py.exists() and subprocess.run([str(py), "-c", "import yourouter"], capture_output=True).returncode == 0):
        print(f"installing {sha} into {venv} ...", flush=True)
        with tempfile.TemporaryDirectory() as src:
            archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", sha], stdout=subprocess.PIPE)
            subprocess.run(["tar", "-x", "-C", src], stdin=archive.stdout, check=True, timeout=120)
            archive.wait(timeout=60)
            subprocess.run(["python3", "-m", "venv", str(venv)], check=True, timeout=120)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", src], check=True, timeout=600)
    return venv / "bin" / "yourouter", sha


def resolve_yourouter(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[Path, str]:
    """The yourouter to measure (--yourouter-bin, the one --ref installs, else <repo>/.venv's) and a description of
    its commit for the report; parser.error() when it does not exist."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "?"
    if args.yourouter_bin:
        yr_bin = Path(args.yourouter_bin)
        commit = f"? (--yourouter-bin; HEAD is {commit})"
    elif args.ref:
        yr_bin, commit = install_ref(args.ref)
    else:
        yr_bin = ROOT / ".venv" / "bin" / "yourouter"
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"], capture_output=True,
                               text=True).stdout.strip()
        commit += " + uncommitted src/ changes (the editable .venv)" if dirty else " (src/ clean)"
    if not yr_bin.exists():
        parser.error(f"yourouter not found at {yr_bin} (use --yourouter-bin or --ref)")
    return yr_bin, commit


def pin_load(args: argparse.Namespace, nproc: int, cpu_options: tuple[str, ...] = ("gw_cpus", "load_cpus")) -> None:
    """With fewer than 2 CPUs or no taskset, clear the --*-cpus options (nothing is pinned); then pin this process
    (the load side) to --load-cpus, if any."""
    if nproc < 2 or not shutil.which("taskset"):
        for name in cpu_options:
            setattr(args, name, "")
    if args.load_cpus:
        os.sched_setaffinity(0, {int(c) for c in args.load_cpus.split(",")})


def make_out_dirs(out: str | None, name: str, stamp: str) -> tuple[Path, Path]:
    """The output dir (--out, default bench/results/<name>-<stamp>), created, and a new work-* dir inside it."""
    out_dir = Path(out).resolve() if out else HERE / "results" / f"{name}-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir, Path(tempfile.mkdtemp(prefix="work-", dir=out_dir))


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def exit_on_signals() -> None:
    """SIGTERM/SIGHUP -> SystemExit(128 + signum), so that `finally` blocks stop the processes started."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)


def install_uvloop() -> None:
    """uvloop as the asyncio event loop, when it is installed."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass


def write_marked(path: Path, begin: str, end: str, heading: str, text: str, new_file_preamble: str) -> Path:
    """Put `heading` + `text` between the markers begin/end of a markdown file: replace the marked block, else
    append one, else create the file with new_file_preamble before it."""
    block = f"{begin}\n{heading}\n\n{text}{end}\n"
    if path.exists():
        old = path.read_text()
        if begin in old and end in old:
            head, rest = old.split(begin, 1)
            tail = rest.split(end, 1)[1].lstrip("\n")
            path.write_text(head + block + ("\n" + tail if tail else ""))
            return path
        path.write_text(old.rstrip("\n") + "\n\n" + block)
        return path
    path.write_text(new_file_preamble + block)
    return path


def callgrind_total(dumps: list[Path]) -> int:
    """Instructions (Ir) in callgrind output files, summed (one file per dump, and per thread when split)."""
    total = 0
    for dump in dumps:
        found = re.search(r"^totals: (\d+)", dump.read_text(errors="replace"), re.M)
        if found is None:
            raise RuntimeError(f"no totals line in {dump}")
        total += int(found.group(1))
    return total
