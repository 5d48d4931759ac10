#!/usr/bin/env python3
"""Where a failover's gateway CPU goes, from the py-spy profiles `bench/chaos.py --profile` records.

    .venv/bin/python bench/chaos.py --ref HEAD --profile --scenarios d0-c10 d0-c10-ok --requests 20000
    .venv/bin/python bench/chaos_profile.py bench/results/chaos-<stamp> [--failing d0-c10] [--control d0-c10-ok]

py-spy samples only the thread holding the GIL (`--gil`), so a profile's samples are spread like the gateway's
Python CPU time; an item's share of the samples times the run's measured gateway CPU per request (/proc) gives its
µs per request (time without the GIL, i.e. system calls, is thereby spread in proportion: approximate).

1. Within the failing run (no run-to-run noise): every sample under `Pipeline._attempt` is classed by the source
   text of the `_attempt` line it is in or under: `attempt` = work every upstream attempt does (request body, URL,
   headers, health begin/end, `upstream.post`, the first-byte timeout, `__aenter__` = send + wait for the response
   head, `__aexit__`), `failure` = the failure branch (`_upstream_failure`, `health.failed`, ...), `success` =
   relaying the answer and `health.succeeded`, `order` = choosing the deployments. One failover = one more
   attempt's work + the failure branch: per failover = attempt µs/request / attempts per request + failure
   µs/request / failovers per request.
2. Against the control (no failures): the excess µs per request of each line, divided by the failed-over share.
   This one carries the two runs' noise (CPU per request varies by ±10-20 % between runs on a shared machine).
The profiled source is read from the file paths py-spy recorded (`--full-filenames`), so line texts are the
measured version's.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
CLASSES = (  # (class, substrings of the `_attempt` source line), first match wins
    ("failure", ("_upstream_failure", "health.failed", "tried[provider.name] = error", "errors.append")),
    ("success", ("relay_", "health.succeeded", "streaming =", "_translated_client_error")),
    ("order", ("policy.order", "plan =", "retry_wait")),
    ("attempt", ("request_cm", "asyncio.timeout", "health.begin", "health.end", "upstream.post", "_same_dialect_body",
                 "_upstream_body", "provider.url", "_routing_headers", "codec(provider", "health = ", "record.attempts",
                 "body = ", "if provider.name in tried", "for attempt, route", "same = ", "response.status >=")),
)


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            stacks.append((stack.split(";"), int(n)))
    return stacks


def split(frame: str) -> tuple[str, str, int]:
    m = FRAME.match(frame)
    if not m:
        return frame, "", 0
    return m.group("func"), m.group("file"), int(m.group("line") or 0)


_sources: dict[str, list[str]] = {}


def source_line(file: str, line: int) -> str:
    if file not in _sources:
        try:
            _sources[file] = Path(file).read_text().splitlines()
        except OSError:
            _sources[file] = []
    lines = _sources[file]
    return lines[line - 1].strip() if 0 < line <= len(lines) else "?"


def short_file(file: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def classify(text: str) -> str:
    for name, needles in CLASSES:
        if any(n in text for n in needles):
            return name
    return "other"


class Profile:
    def __init__(self, path: Path, samples: list[dict], runs: list[dict]) -> None:  # type: ignore[type-arg]
        self.requests = len(samples)
        self.attempts = sum(len(s["upstream"]) for s in samples)
        self.failovers = sum(len(s["upstream"]) == 2 for s in samples)
        self.cpu_us = sum(r["gateway_cpu_s"] for r in runs) * 1e6 / self.requests
        self.by_line: Counter[str] = Counter()
        self.by_class: Counter[str] = Counter()
        self.by_leaf: dict[str, Counter[str]] = {}
        total = 0
        for frames, n in parse(path):
            total += n
            at = next((i for i, f in enumerate(frames) if split(f)[0] == "Pipeline._attempt"), None)
            if at is None:
                handle = any(split(f)[0] == "Pipeline.handle" for f in frames)
                key, cls = ("(outside _attempt, in Pipeline.handle)" if handle else "(outside Pipeline.handle)",
                            "outside")
            else:
                _, file, line = split(frames[at])
                text = source_line(file, line)
                cls = classify(text)
                key = f"{line}: {text[:80]}"
            self.by_line[key] += n
            self.by_class[cls] += n
            func, file, _ = split(frames[-1])
            self.by_leaf.setdefault(cls, Counter())[f"{func} ({short_file(file)})"] += n
        self.unit = self.cpu_us / total if total else 0.0  # µs per request per sample

    def us(self, samples: int) -> float:
        return samples * self.unit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path)
    p.add_argument("--failing", default="d0-c10")
    p.add_argument("--control", default="d0-c10-ok")
    p.add_argument("--top", type=int, default=12)
    a = p.parse_args()
    data = json.loads((a.dir / "data.json").read_text())["scenarios"]

    def load(name: str) -> Profile:
        return Profile(a.dir / f"{name}.pyspy.txt", data[name]["samples"], data[name]["runs"])

    f = load(a.failing)
    share = f.failovers / f.requests
    per_attempt = f.us(f.by_class["attempt"]) * f.requests / f.attempts
    per_failure = f.us(f.by_class["failure"]) * f.requests / max(1, f.failovers)
    print(f"# Failover CPU from py-spy ({a.failing}: {f.requests} requests, {f.failovers} failed over = {share:.1%}, "
          f"{f.attempts / f.requests:.3f} attempts per request; gateway CPU {f.cpu_us:.0f} µs/request)\n")
    print("## 1. Within the failing run, by what the `_attempt` line does (µs per request)\n")
    print("| class | µs/request | share |")
    print("|---|---|---|")
    for cls in ("outside", "order", "attempt", "failure", "success", "other"):
        print(f"| {cls} | {f.us(f.by_class[cls]):.1f} | {f.by_class[cls] / max(1, sum(f.by_class.values())):.1%} |")
    print(f"\nOne upstream attempt's work: {per_attempt:.0f} µs; the failure branch: {per_failure:.0f} µs per "
          f"failover; so one failover ≈ **{per_attempt + per_failure:.0f} µs** of gateway CPU.\n")
    for cls in ("attempt", "failure"):
        print(f"Top leaf functions in `{cls}` (µs per {'attempt' if cls == 'attempt' else 'failover'}):\n")
        print("| leaf function | µs |")
        print("|---|---|")
        scale = f.requests / (f.attempts if cls == "attempt" else max(1, f.failovers))
        for leaf, n in f.by_leaf.get(cls, Counter()).most_common(a.top):
            print(f"| `{leaf}` | {f.us(n) * scale:.1f} |")
        print()
    print("Lines of `_attempt` (µs per request):\n")
    print("| line | class | µs/request |")
    print("|---|---|---|")
    for key, n in f.by_line.most_common(a.top):
        text = key.split(": ", 1)[-1]
        print(f"| `{key}` | {classify(text) if not key.startswith('(') else 'outside'} | {f.us(n):.1f} |")
    if (a.dir / f"{a.control}.pyspy.txt").exists():
        c = load(a.control)
        print(f"\n## 2. Against {a.control} ({c.requests} requests, gateway CPU {c.cpu_us:.0f} µs/request)\n")
        print(f"Whole gateway: {f.cpu_us - c.cpu_us:+.0f} µs/request → {(f.cpu_us - c.cpu_us) / share:.0f} µs per "
              "failover (run-to-run noise included).\n")
        print(f"| class | {a.failing} µs/req | {a.control} µs/req | Δ per failover |")
        print("|---|---|---|---|")
        for cls in ("outside", "order", "attempt", "failure", "success", "other"):
            fu, cu = f.us(f.by_class[cls]), c.us(c.by_class[cls])
            print(f"| {cls} | {fu:.1f} | {cu:.1f} | {(fu - cu) / share:+.0f} |")


if __name__ == "__main__":
    main()
