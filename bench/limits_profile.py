#!/usr/bin/env python3
"""Where a limited key's extra gateway CPU goes, from the py-spy profiles `bench/limits.py --profile` records.

    .venv/bin/python bench/limits.py --ref HEAD --profile            # records profile-<backend>-{limited,free}.txt
    .venv/bin/python bench/limits_profile.py bench/results/limits-<stamp> [--top 25]

py-spy samples only the thread holding the GIL (`--gil`), so a profile's samples are spread like the gateway's
Python CPU time; a function's share of the samples times the profiled block's measured gateway CPU per request
(from data.json, /proc schedstat) gives its µs per request (time outside the GIL — system calls — is spread in
proportion: approximate). For each backend it prints:

1. inclusive µs per request of the functions under which the limited key spends more than the free key (limited −
   free), frames named `function (file)` without line numbers, each counted once per stack (frames in ≥ 97 % of
   the samples, the process's roots, left out);
2. self µs per request by package (yourouter.limits, yourouter.pipeline, redis, asyncio, uvloop, ...), limited vs
   free;
3. for the limited key, the samples under `Admission.admit`, `Admission.settle` / `Pipeline._settle` and redis-py,
   by line of the innermost yourouter frame (what the admission code does on its own).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse(path: Path) -> list[tuple[list[tuple[str, str, int]], int]]:
    stacks = []
    for raw in path.read_text().splitlines():
        if not raw.strip():
            continue
        body, _, count = raw.rpartition(" ")
        frames = []
        for part in body.split(";"):
            m = FRAME.match(part.strip())
            if m:
                frames.append((m["func"], m["file"], int(m["line"] or 0)))
            else:
                frames.append((part.strip(), "", 0))
        stacks.append((frames, int(count)))
    return stacks


def short(file: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", "/src/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file.rsplit("/", 1)[-1]


def package(file: str) -> str:
    s = short(file)
    if s.startswith("yourouter/"):
        parts = s.split("/")
        return "/".join(parts[:2]) if len(parts) > 2 else s
    return s.split("/", 1)[0]


def inclusive(stacks) -> Counter:  # type: ignore[no-untyped-def]
    c: Counter = Counter()
    for frames, n in stacks:
        for name in {f"{fn} ({short(fl)})" for fn, fl, _ in frames}:
            c[name] += n
    return c


def selfpkg(stacks) -> Counter:  # type: ignore[no-untyped-def]
    c: Counter = Counter()
    for frames, n in stacks:
        c[package(frames[-1][1]) if frames else "?"] += n
    return c


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="bench/results/limits-<stamp>")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    run = Path(args.run)
    data = json.loads((run / "data.json").read_text())
    for variant, roles in (data.get("profile") or {}).items():
        per: dict[str, tuple[list, float]] = {}
        for role in ("limited", "free"):
            info = roles[role]
            stacks = parse(run / info["file"])
            total = sum(n for _, n in stacks)
            per[role] = (stacks, info["gw_cpu_us"] / total)  # µs per request per sample
            print(f"{variant}/{role}: {info['n']} requests, {info['gw_cpu_us']:.0f} µs gateway CPU per request, "
                  f"{total} samples")
        (ls, lk), (fs, fk) = per["limited"], per["free"]
        li, fi = inclusive(ls), inclusive(fs)
        print(f"\n{variant}: inclusive µs per request, limited − free (top {args.top})")
        print(f"{'limited':>9} {'free':>9} {'Δ':>9}  function")
        ltotal = sum(n for _, n in ls)
        rows = sorted(((li[k] * lk, fi.get(k, 0) * fk, k) for k in li if li[k] < 0.97 * ltotal),  # not the roots
                      key=lambda r: r[1] - r[0])
        for lv, fv, k in rows[: args.top]:
            print(f"{lv:9.1f} {fv:9.1f} {lv - fv:+9.1f}  {k}")
        print(f"\n{variant}: self µs per request by package")
        lp, fp = selfpkg(ls), selfpkg(fs)
        for k in sorted(set(lp) | set(fp), key=lambda k: -(lp.get(k, 0) * lk - fp.get(k, 0) * fk))[: args.top]:
            lv, fv = lp.get(k, 0) * lk, fp.get(k, 0) * fk
            print(f"{lv:9.1f} {fv:9.1f} {lv - fv:+9.1f}  {k}")
        print(f"\n{variant}/limited: under the admission calls, by innermost yourouter line (µs per request)")
        lines: Counter = Counter()
        for frames, n in ls:
            names = [f[0] for f in frames]
            if not any(x in names for x in ("Admission.admit", "Admission.settle", "Pipeline._settle")):
                continue
            ours = [f for f in frames if "yourouter/" in f[1]]
            inner = ours[-1] if ours else frames[-1]
            tail = frames[-1]
            lines[f"{inner[0]} ({short(inner[1])}:{inner[2]}) → {tail[0]} ({short(tail[1])})"] += n
        for k, n in lines.most_common(args.top):
            print(f"{n * lk:9.1f}  {k}")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
