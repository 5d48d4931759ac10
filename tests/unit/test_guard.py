"""RequestGuard: the first-byte deadline and the disconnect watcher, timed by one sweeper per event loop."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from yourouter.pipeline import guard as guard_module
from yourouter.pipeline.guard import RESOLUTION_S, RequestGuard


class Client:
    """An ASGI `receive` that reports a disconnect once `leave()` is called."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.calls = 0

    def leave(self) -> None:
        self.gone.set()

    async def receive(self) -> dict[str, Any]:
        self.calls += 1
        await self.gone.wait()
        return {"type": "http.disconnect"}


def pending(loop: asyncio.AbstractEventLoop) -> int:
    """Guards with a due time on this loop's sweeper."""
    sweeper = guard_module._sweeper
    assert sweeper is not None and sweeper.loop is loop
    return len(sweeper._due)


def test_first_byte_deadline_raises_timeout_and_frees_the_guard() -> None:
    async def main() -> None:
        client = Client()
        guard = RequestGuard(client.receive, watch_after_s=10.0)

        async def never() -> None:
            await asyncio.sleep(10)

        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await guard.first_byte(0.1, never)
        waited = time.monotonic() - started
        assert 0.1 <= waited < 0.1 + RESOLUTION_S + 0.2
        guard.close()
        assert pending(asyncio.get_running_loop()) == 0

    asyncio.run(main())


def test_an_answer_in_time_is_returned_and_many_guards_share_one_clock() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        guards = [RequestGuard(Client().receive, watch_after_s=5.0) for _ in range(200)]
        assert pending(loop) == 200

        async def answer() -> str:
            await asyncio.sleep(0.01)
            return "headers"

        assert await asyncio.gather(*(g.first_byte(1.0, answer) for g in guards)) == ["headers"] * 200
        for g in guards:
            g.close()
        assert pending(loop) == 0
        await asyncio.sleep(RESOLUTION_S * 3)
        assert guard_module._sweeper is not None and guard_module._sweeper._timer is None  # idle: no timer

    asyncio.run(main())


def test_a_client_that_leaves_cancels_the_work_once_the_watcher_started() -> None:
    async def main() -> None:
        client = Client()
        finished = asyncio.Event()

        async def request() -> bool:
            guard = RequestGuard(client.receive, watch_after_s=0.05)

            async def work() -> None:
                await asyncio.sleep(10)
                finished.set()

            return await guard.run(work())

        task = asyncio.create_task(request())
        await asyncio.sleep(0.05 + RESOLUTION_S * 3)
        assert client.calls == 1  # the watcher is listening
        client.leave()
        assert await asyncio.wait_for(task, 1.0) is False
        assert not finished.is_set()

    asyncio.run(main())


def test_quick_requests_never_start_the_watcher() -> None:
    async def main() -> None:
        client = Client()

        async def quick() -> None:
            await asyncio.sleep(0)

        for _ in range(50):
            assert await RequestGuard(client.receive, watch_after_s=0.05).run(quick()) is True
        await asyncio.sleep(0.05 + RESOLUTION_S * 3)
        assert client.calls == 0

    asyncio.run(main())


def test_each_event_loop_gets_its_own_sweeper() -> None:
    """A guard made on a new loop (a second asyncio.run) is timed by that loop, not by a sweeper bound to a closed
    one."""
    for _ in range(2):
        test_first_byte_deadline_raises_timeout_and_frees_the_guard()


class BrokenGuard(RequestGuard):
    __slots__ = ()

    def _tick(self, now: float) -> None:
        raise RuntimeError("boom")


def test_a_failing_guard_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        BrokenGuard(Client().receive, watch_after_s=0.0)
        healthy = RequestGuard(Client().receive, watch_after_s=10.0)

        async def never() -> None:
            await asyncio.sleep(10)

        with pytest.raises(TimeoutError):
            await healthy.first_byte(0.05, never)
        healthy.close()

    asyncio.run(main())
    assert "a request guard failed" in caplog.text
