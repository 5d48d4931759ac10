"""One timer per request for the two things that interrupt it: the client leaving, and an upstream that does not
answer in time.

`asyncio.timeout` around each upstream attempt plus a `call_later` for the disconnect watcher cost two timer handles,
a `Timeout` object and its bookkeeping per request: about 7 % of the gateway's CPU per proxied request in py-spy
(bench/README.md). A `RequestGuard` keeps one timer handle per request and re-arms it for whichever comes first:
the moment to start watching for a disconnect (`watch_after_s` into the request: quick requests never start the
watcher task), or the current attempt's first-byte deadline.

A disconnect cancels the request's task (and with it the upstream request); a missed first-byte deadline cancels it
too, and `first_byte()` turns that cancellation into `TimeoutError` for the attempt that waited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from yourouter.asgi import Receive


class RequestGuard:
    __slots__ = ("_loop", "_task", "_receive", "_watch_at", "_deadline", "_timer", "_timer_at", "_watcher",
                 "_cancelling", "client_gone")

    def __init__(self, receive: Receive, watch_after_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._receive = receive
        now = self._loop.time()
        self._watch_at: float | None = now + watch_after_s  # None once the watcher runs
        self._deadline: float | None = None  # the current attempt's first-byte deadline
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
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
        deadline = self._deadline = self._loop.time() + timeout_s
        if self._timer is None or self._timer_at > deadline:
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        watcher = self._watcher
        if watcher is not None:
            self._watcher = None
            watcher.remove_done_callback(self._on_disconnect)
            watcher.cancel()

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = self._loop.time()
        if self._watch_at is not None and now >= self._watch_at:
            self._watch_at = None
            self._watcher = self._loop.create_task(_disconnected(self._receive))
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
