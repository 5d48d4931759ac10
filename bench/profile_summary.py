#!/usr/bin/env python3
"""Summarise a py-spy `--format raw` file (collapsed stacks, one `frame;frame;... count` per line).

    python bench/profile_summary.py profile.txt [--top 25]

Samples are split by thread (the event loop thread vs worker threads such as aiosqlite's), then, for the event
loop thread, as % of its samples: self time by package (the leaf frame's top-level package), inclusive time by
package, top functions by self and inclusive time, and the innermost YouRouter frame of each sample (which
YouRouter function a sample is in or under, each sample counted once).
"""
from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse(path):
    stacks = []
    with open(path) as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if stack and n.isdigit():
                stacks.append((stack.split(";"), int(n)))
    return stacks


def split(frame: str) -> tuple[str, str]:
    m = FRAME.match(frame)
    return (m.group("func"), m.group("file")) if m else (frame, "")


def short(frame: str) -> str:
    func, file = split(frame)
    return f"{func} ({file})" if file else func


def package(frame: str) -> str:
    file = split(frame)[1]
    if not file:
        return "?"
    top = file.split("/", 1)[0]
    return top[:-3] if top.endswith(".py") else top


def thread_of(frames: list[str]) -> str:
    for i, fr in enumerate(frames):
        if split(fr)[1] == "threading.py" and split(fr)[0] == "Thread.run" and i + 1 < len(frames):
            return "worker thread: " + short(frames[i + 1])
    return "main thread (event loop)"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args()
    stacks = parse(a.file)
    total = sum(n for _, n in stacks)
    if not total:
        raise SystemExit("no samples")
    by_thread = defaultdict(list)
    for frames, n in stacks:
        by_thread[thread_of(frames)].append((frames, n))
    print(f"{total} samples (all threads). py-spy skips threads it sees as idle, but not always (aiosqlite's worker\n"
          "thread blocked in queue.get is counted as busy): check a thread's share against its real CPU time\n")
    print("## samples by thread")
    for name, st in sorted(by_thread.items(), key=lambda kv: -sum(n for _, n in kv[1])):
        print(f"{100 * sum(n for _, n in st) / total:5.1f}%  {name}")
    for name, st in sorted(by_thread.items(), key=lambda kv: -sum(n for _, n in kv[1])):
        sub = sum(n for _, n in st)
        if name.startswith("worker") and sub < total * 0.02:
            continue
        self_c, incl_c, pkg_self, pkg_incl, yr = Counter(), Counter(), Counter(), Counter(), Counter()
        for frames, n in st:
            self_c[short(frames[-1])] += n
            pkg_self[package(frames[-1])] += n
            for fr in {short(f) for f in frames}:
                incl_c[fr] += n
            for pk in {package(f) for f in frames}:
                pkg_incl[pk] += n
            inner = next((short(f) for f in reversed(frames) if split(f)[1].startswith("yourouter/")), None)
            yr[inner or "(no YouRouter frame: server/loop/client code outside a request handler)"] += n

        def show(title, counter, top, sub=sub):
            print(f"\n### {title}")
            for k, v in counter.most_common(top):
                print(f"{100 * v / sub:5.1f}%  {k}")

        print(f"\n## {name}: {sub} samples, percentages of this thread's samples")
        show("self time by package (leaf frame)", pkg_self, 15)
        show("inclusive time by package", pkg_incl, 15)
        show(f"top {a.top} functions by self time", self_c, a.top)
        show(f"top {a.top} functions by inclusive time", incl_c, a.top)
        if name.startswith("main"):
            show("innermost YouRouter frame per sample", yr, a.top)


if __name__ == "__main__":
    main()
