"""One due time per request for the two things that interrupt it: the client leaving, and an upstream that does
not answer in time.

`asyncio.timeout` around each upstream attempt plus a `call_later` for the disconnect watcher cost two timer handles,
a `Timeout` object and its bookkeeping per request: about 7 % of the gateway's CPU per proxied request in py-spy
(bench/README.md). A `RequestGuard` keeps one due time per request and moves it to whichever comes first: the
moment to start watching for a disconnect (`watch_after_s` into the request: quick requests never start the watcher
task), or the current attempt's first-byte deadline.

The due times of all guards are kept by one `_Sweeper` per event loop, whose single timer repeats every
`RESOLUTION_S` while any guard has something due. A timer per request was most of a guard's cost: on uvloop a
`call_at` plus its `cancel` costs ~5.7 µs (a libuv timer handle), a dictionary entry well under one. A due time is
acted on up to `RESOLUTION_S` late.

A disconnect cancels the request's task (and with it the upstream request); a missed first-byte deadline cancels it
too, and `first_byte()` turns that cancellation into `TimeoutError` for the attempt that waited.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from yourouter.asgi import Receive

log = logging.getLogger("yourouter.pipeline")
RESOLUTION_S = 0.025


class _Sweeper:
    """The due times of one event loop's live guards, checked every `RESOLUTION_S` while there are any."""

    __slots__ = ("loop", "_due", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._due: dict[RequestGuard, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def set(self, guard: RequestGuard, at: float) -> None:
        self._due[guard] = at
        if self._timer is None:
            self._timer = self.loop.call_later(RESOLUTION_S, self._sweep)

    def clear(self, guard: RequestGuard) -> None:
        self._due.pop(guard, None)

    def _sweep(self) -> None:
        self._timer = None
        now = self.loop.time()
        for guard in [guard for guard, at in self._due.items() if at <= now]:
            del self._due[guard]
            try:
                guard._tick(now)
            except Exception:  # one guard's failure must not stop the others' clock
                log.exception("a request guard failed")
        if self._due and self._timer is None:
            self._timer = self.loop.call_later(RESOLUTION_S, self._sweep)


_sweeper: _Sweeper | None = None  # the last loop's; another loop (a test's, a thread's) gets one of its own


def _sweeper_for(loop: asyncio.AbstractEventLoop) -> _Sweeper:
    global _sweeper
    sweeper = _sweeper
    if sweeper is None or sweeper.loop is not loop:
        sweeper = _sweeper = _Sweeper(loop)
    return sweeper


class RequestGuard:
    __slots__ = ("_sweeper", "_task", "_receive", "_watch_at", "_deadline", "_due_at", "_watcher",
                 "_cancelling", "client_gone")

    def __init__(self, receive: Receive, watch_after_s: float) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = _sweeper_for(loop)  # its `loop` is this guard's
        self._task = asyncio.current_task(loop)  # with the loop: no second get_running_loop()
        self._receive = receive
        self._watch_at: float | None = loop.time() + watch_after_s  # None once the watcher runs
        self._deadline: float | None = None  # the current attempt's first-byte deadline
        self._due_at: float | None = None  # what the sweeper holds for this guard
        self._watcher: asyncio.Task[bool] | None = None
        self._cancelling: str | None = None  # "client" | "timeout": why this guard cancelled the task
        self.client_gone = False
        self._arm(self._watch_at)

    async def run(self, work: Coroutine[Any, Any, None]) -> bool:
        """Runs the request's work; returns False when the client left (the work was cancelled), True otherwise."""
        try:
            await work
        except asyncio.CancelledError:
            if self._cancelling != "client" or self._task is None:
                raise
            self._task.uncancel()
            return False
        finally:
            self.close()
        await self._take_back("client")  # the client left just as the work finished: nothing to interrupt
        return True

    async def first_byte(self, timeout_s: float, start: Callable[[], Awaitable[Any]]) -> Any:
        """`await start()` within `timeout_s` (an upstream's response headers); TimeoutError when it takes longer."""
        deadline = self._deadline = self._sweeper.loop.time() + timeout_s
        if self._due_at is None or self._due_at > deadline:
            self._arm(deadline)
        try:
            result = await start()
        except asyncio.CancelledError:
            if self._cancelling != "timeout" or self._task is None:
                raise
            self._cancelling = None
            self._task.uncancel()
            raise TimeoutError from None
        finally:
            self._deadline = None
        await self._take_back("timeout")  # the deadline passed as the answer arrived: the answer counts
        return result

    async def _take_back(self, reason: str) -> None:
        """A cancellation this guard requested for `reason` that the work outran: absorb it before it lands on
        an unrelated `await` further on."""
        if self._cancelling != reason or self._task is None:
            return
        self._cancelling = None
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            self._task.uncancel()

    def close(self) -> None:
        if self._due_at is not None:
            self._due_at = None
            self._sweeper.clear(self)
        watcher = self._watcher
        if watcher is not None:
            self._watcher = None
            watcher.remove_done_callback(self._on_disconnect)
            watcher.cancel()

    def _arm(self, at: float) -> None:
        self._due_at = at
        self._sweeper.set(self, at)

    def _tick(self, now: float) -> None:
        """Called by the sweeper once `_due_at` has passed (the sweeper has dropped it)."""
        self._due_at = None
        if self._watch_at is not None and now >= self._watch_at:
            self._watch_at = None
            self._watcher = self._sweeper.loop.create_task(_disconnected(self._receive))
            self._watcher.add_done_callback(self._on_disconnect)
        if self._deadline is not None and now >= self._deadline and self._cancelling is None:
            if self._task is not None:
                self._cancelling = "timeout"
                self._task.cancel()
            return
        upcoming = [at for at in (self._watch_at, self._deadline) if at is not None]
        if upcoming:
            self._arm(min(upcoming))

    def _on_disconnect(self, done: asyncio.Task[bool]) -> None:
        if done.cancelled() or done.exception() is not None or self._task is None:
            return
        self.client_gone = True
        if self._cancelling is None:
            self._cancelling = "client"
            self._task.cancel()
        else:  # a timeout's cancellation is already on its way: the client's leaving wins
            self._cancelling = "client"


async def _disconnected(receive: Receive) -> bool:
    """Returns when the client has gone away."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return True
