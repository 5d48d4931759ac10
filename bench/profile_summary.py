#!/usr/bin/env python3
"""Summarise a py-spy `--format raw` (collapsed stacks) file: where a gateway's samples go.

    python bench/profile_summary.py profile.txt [--top 25]

Prints, as % of all samples: self time by function (the leaf frame), inclusive time by function (any frame of
the stack, counted once per stack), and inclusive time by package/area (yourouter.*, aiohttp, uvicorn, logging,
sqlalchemy, asyncio/uvloop, ...), using the innermost frame of each area class for "self by area".
"""
from __future__ import annotations

import argparse
import re
from collections import Counter

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")

AREAS = [  # (label, substring of the file path or function) in priority order
    ("yourouter", "/yourouter/"),
    ("aiohttp (upstream client)", "/aiohttp/"),
    ("uvicorn (server, httptools protocol)", "/uvicorn/"),
    ("logging (access log)", "/logging/"),
    ("sqlalchemy/aiosqlite (usage ledger)", "/sqlalchemy/"),
    ("sqlalchemy/aiosqlite (usage ledger)", "/aiosqlite/"),
    ("sqlite3", "/sqlite3/"),
    ("asyncio (stdlib)", "/asyncio/"),
    ("orjson", "orjson"),
    ("uvloop", "uvloop"),
    ("multidict/yarl", "/multidict/"),
    ("multidict/yarl", "/yarl/"),
]


def parse(path):
    stacks = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, n = line.rpartition(" ")
            try:
                stacks.append((stack.split(";"), int(n)))
            except ValueError:
                continue
    return stacks


def short(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    f = m.group("file")
    for marker in ("site-packages/", "/lib/python3", "/src/"):
        if marker in f:
            f = f.split(marker, 1)[1]
            if marker == "/lib/python3":
                f = "stdlib" + f[f.find("/"):]
            break
    return f"{m.group('func')} ({f})"


def area(frame: str) -> str | None:
    for label, needle in AREAS:
        if needle in frame:
            return label
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args()
    stacks = parse(a.file)
    total = sum(n for _, n in stacks)
    if not total:
        raise SystemExit("no samples")
    self_c, incl_c, area_self, area_incl, yr_incl = Counter(), Counter(), Counter(), Counter(), Counter()
    for frames, n in stacks:
        self_c[short(frames[-1])] += n
        for fr in {short(f) for f in frames}:
            incl_c[fr] += n
        areas = [area(f) for f in frames]
        for ar in {x for x in areas if x}:
            area_incl[ar] += n
        inner = next((x for x in reversed(areas) if x), "other (native/unknown)")
        area_self[inner] += n
        # the innermost YouRouter frame: which YouRouter code a sample is under
        yr = next((short(f) for f in reversed(frames) if "/yourouter/" in f), None)
        if yr:
            yr_incl[yr] += n

    def pct(c):
        return f"{100 * c / total:5.1f}%"

    print(f"{total} samples\n")
    print("## self time by area (innermost frame that belongs to an area)")
    for k, v in area_self.most_common():
        print(f"{pct(v)}  {k}")
    print("\n## inclusive time by area (stack contains the area)")
    for k, v in area_incl.most_common():
        print(f"{pct(v)}  {k}")
    print(f"\n## top {a.top} functions by self time")
    for k, v in self_c.most_common(a.top):
        print(f"{pct(v)}  {k}")
    print(f"\n## top {a.top} functions by inclusive time")
    for k, v in incl_c.most_common(a.top):
        print(f"{pct(v)}  {k}")
    print(f"\n## innermost YouRouter frame (time spent in or below each YouRouter function, not double counted)")
    for k, v in yr_incl.most_common(a.top):
        print(f"{pct(v)}  {k}")


if __name__ == "__main__":
    main()
