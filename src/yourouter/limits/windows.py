"""Sliding one-minute windows at one-second granularity, and the rules both backends share for reading them.

At time `t` a window holds the buckets of seconds `floor(t) - 59 .. floor(t)`; the bucket of second `s` leaves it at
`t = s + 60`. The Redis backend's Lua scripts implement the same rules over a hash of buckets."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from yourouter.limits.model import Kind, WindowState

WINDOW_S = 60


class SlidingWindow:
    """Per-second buckets of the last minute, with a running total. Only non-empty seconds are kept, oldest first,
    so reading and charging cost O(1) amortised (pruning pops at most what was pushed)."""

    __slots__ = ("_cells", "total")

    def __init__(self) -> None:
        self._cells: deque[list[int]] = deque()  # [second, count], seconds increasing
        self.total = 0

    def used(self, sec: int) -> int:
        """The window's sum at second `sec`, after dropping the buckets that left it."""
        cells = self._cells
        horizon = sec - WINDOW_S
        while cells and cells[0][0] <= horizon:
            self.total -= cells.popleft()[1]
        return self.total

    def add(self, sec: int, n: int) -> None:
        cells = self._cells
        if cells and cells[-1][0] >= sec:  # same second (or a clock that stepped back: keep the order)
            cells[-1][1] += n
        else:
            cells.append([sec, n])
        self.total += n

    def take_back(self, admitted_sec: int, sec: int, n: int) -> None:
        """Remove up to `n` from the bucket of `admitted_sec`, if it is still in the window (an estimate that turned
        out too high); once that bucket has left, there is nothing to give back."""
        if admitted_sec <= sec - WINDOW_S:
            return
        for cell in reversed(self._cells):
            if cell[0] < admitted_sec:
                return
            if cell[0] == admitted_sec:
                n = min(n, cell[1])
                cell[1] -= n
                self.total -= n
                return

    def until_at_most(self, now: float, target: int) -> float | None:
        """Seconds until the window's sum is at most `target` (0 if it already is; None if never: target < 0)."""
        if self.total <= target:
            return 0.0
        if target < 0:
            return None
        total = self.total
        for sec, count in self._cells:
            total -= count
            if total <= target:
                return max(0.0, sec + WINDOW_S - now)
        return None  # unreachable: the cells sum to the total

    def oldest_leaves(self, now: float) -> float:
        """Seconds until the oldest non-empty bucket leaves the window (0 if the window is empty)."""
        for sec, count in self._cells:
            if count:
                left = sec + WINDOW_S - now
                return left if left > 0.0 else 0.0
        return 0.0


# Called for every admitted request (its x-ratelimit-* headers): conditional expressions, not max(), which is a
# call with its argument tuple each time.
def request_state(window: SlidingWindow, now: float, limit: int) -> WindowState:
    used = window.total
    reset = window.oldest_leaves(now)
    if used >= limit:  # full (or over a limit since lowered): when one more request fits
        reset = max(reset, window.until_at_most(now, limit - 1) or 0.0)
        return WindowState(limit, 0, reset)
    return WindowState(limit, limit - used, reset)


def token_state(window: SlidingWindow, now: float, limit: int) -> WindowState:
    used = window.total
    return WindowState(limit, limit - used if used < limit else 0, window.oldest_leaves(now))


def requests_wait(window: SlidingWindow, now: float, limit: int) -> float | None:
    """Seconds until one more request fits under `limit` requests a minute (None: never, limit 0)."""
    return window.until_at_most(now, limit - 1)


def tokens_wait(window: SlidingWindow, now: float, limit: int, tokens: int) -> float | None:
    """Seconds until `tokens` more fit under `limit` tokens a minute, with some room left (None: never)."""
    if tokens > limit:
        return None
    return window.until_at_most(now, min(limit - tokens, limit - 1))


def tokens_fit(used: int, limit: int, tokens: int) -> bool:
    # A window at (or over) its limit refuses even a zero-token request, as a spent budget does.
    return used < limit and used + tokens <= limit


Failure = tuple[str, Kind, float | None]  # scope, kind, seconds until it could pass (None: unknown or never)
_RANK: dict[Kind, int] = {"budget": 0, "concurrency": 1, "requests": 2, "tokens": 2}


def pick_failure(failures: Sequence[Failure]) -> Failure:
    """The failure a 429 reports: a budget first (its own error code), then concurrency, then the window that frees
    last. The wait is the longest of all (the request passes only when every check does), None if any is None."""
    waits = [f[2] for f in failures]
    wait = None if any(w is None for w in waits) else max(w for w in waits if w is not None)
    scope, kind, _ = min(failures, key=lambda f: (_RANK[f[1]], -(f[2] if f[2] is not None else float("inf"))))
    return scope, kind, wait
