"""The stream relay's pump (`pipeline/relay.py`) around the edges that a running gateway rarely reaches."""

from __future__ import annotations

import asyncio
import inspect
import warnings
from typing import Any

import pytest

from yourouter.metering.ledger import UsageRecord
from yourouter.pipeline import relay


class _Response:
    """Forwards nothing itself: the test decides when forwarding ends and with what."""

    def __init__(self, forwarding: asyncio.Future[Any]) -> None:
        self.forwarding = forwarding
        self.stopped = 0

    def forward(self, deliver: Any) -> asyncio.Future[Any]:
        return self.forwarding

    def stop_forwarding(self) -> None:
        self.stopped += 1


def test_a_cancelled_pump_closes_the_rest_of_a_send_it_will_not_await() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        response = _Response(loop.create_future())

        async def send(message: dict[str, Any]) -> None:
            raise AssertionError("nothing is sent")

        async def rest_of_a_send() -> None:
            raise AssertionError("never run")

        pump = loop.create_task(relay._pump(send, response, UsageRecord("req_1", "chat.completions"),  # type: ignore[arg-type]
                                            0.0, lambda events: b"".join(events)))
        await asyncio.sleep(0)  # the pump waits on its forwarding
        rest = rest_of_a_send()
        response.forwarding.set_result(rest)  # a send had to wait (the client's socket was full) ...
        pump.cancel()  # ... and the client left before the pump took it
        with pytest.raises(asyncio.CancelledError):
            await pump
        assert inspect.getcoroutinestate(rest) == inspect.CORO_CLOSED  # no "never awaited" warning at collection
        assert response.stopped == 1

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(main())


def test_send_now_finishes_a_send_that_does_not_wait_and_hands_back_one_that_does() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        writable = asyncio.Event()
        sent: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            if message["body"] == b"full":
                await writable.wait()  # as uvicorn's flow control does
            sent.append(message["body"])

        assert relay._send_now(send, {"body": b"now"}) is None and sent == [b"now"]
        rest = relay._send_now(send, {"body": b"full"})
        assert rest is not None and sent == [b"now"]
        loop.call_later(0.01, writable.set)
        await rest
        assert sent == [b"now", b"full"]

    asyncio.run(main())
