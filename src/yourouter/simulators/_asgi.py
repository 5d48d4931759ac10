"""Minimal raw-ASGI plumbing shared by the simulators: reading bodies, sending JSON/SSE, watching disconnects.

No framework on purpose: the simulators must show exactly what goes on the wire, one ASGI message per SSE event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_CONTENT_TYPE = (b"content-type", b"application/json")
SSE_CONTENT_TYPE = (b"content-type", b"text/event-stream; charset=utf-8")


class SimulatedDisconnect(Exception):
    """Raised to make the ASGI server drop the connection when the transport is not reachable directly."""


async def read_body(receive: Receive) -> bytes:
    """Read the whole request body (the simulators never need to stream uploads)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def header_map(scope: Scope) -> dict[str, str]:
    """Request headers as {lowercased name: value}; repeated headers are joined with ", "."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


async def send_json(send: Send, status: int, payload: object, headers: Headers | None = None) -> None:
    body = orjson.dumps(payload)
    start_headers = [JSON_CONTENT_TYPE, (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def sse_event(payload: object) -> bytes:
    """One SSE event: a single `data:` line and a blank line, no `event:` line (OpenAI framing)."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


class ClientWatch:
    """Watches for the client going away while a handler sleeps or streams.

    Once the request body is read, the only message `receive()` can yield is `http.disconnect`, so a background
    task can wait for it; sleeps then end early instead of holding the server (and its shutdown) hostage.
    """

    def __init__(self, receive: Receive) -> None:
        self.gone = asyncio.Event()
        self._task = asyncio.create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone.set()

    async def pause(self, seconds: float) -> bool:
        """Sleep up to `seconds`; return False when the client disconnected meanwhile."""
        if seconds > 0 and not self.gone.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gone.wait(), seconds)
        return not self.gone.is_set()

    def close(self) -> None:
        self._task.cancel()


async def drop_connection(send: Send, watch: ClientWatch) -> None:
    """Close the TCP connection, flushing what was already written but sending nothing more.

    uvicorn answers an exception raised before `http.response.start` with its own plain-text 500, so raising is
    not a connection drop. Its request cycle exposes the asyncio transport behind `send` (a bound method), and
    closing that transport gives the client a real drop: no status line before the response started, or a
    truncated body after it. On servers without that attribute we fall back to raising `SimulatedDisconnect`
    (uvicorn: 500 before the response started, connection closed after).
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None or not callable(getattr(transport, "close", None)):
        raise SimulatedDisconnect("simulated connection drop")
    transport.close()
    # Wait until the server has noticed, so it does not report an unfinished response or answer on a dead socket.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(watch.gone.wait(), 1.0)


async def run_lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class Cut(Protocol):
    """A fault that interrupts a response (the simulators' `Fault`)."""

    @property
    def kind(self) -> str: ...

    @property
    def after_events(self) -> int: ...


async def send_half_body(send: Send, payload: object, watch: ClientWatch, headers: Headers) -> None:
    """Start a JSON response, send half its body, then drop the connection (a mid-body disconnect)."""
    body = orjson.dumps(payload)
    start_headers = [JSON_CONTENT_TYPE, (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": 200, "headers": start_headers})
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
    await drop_connection(send, watch)


async def stream_events(send: Send, events: list[bytes], cut: Cut | None, watch: ClientWatch, delay_s: float,
                        start_headers: Headers, error_event: Callable[[int], bytes], tail: bytes = b"") -> None:
    """Send each event as its own ASGI body message, `delay_s` apart. A cut stops after `after_events` events and
    either drops the connection or ends with `error_event(position)`; `tail` closes a complete stream's framing."""
    await send({"type": "http.response.start", "status": 200, "headers": start_headers})
    stop_at = min(cut.after_events, len(events) - 1) if cut is not None else len(events)
    for position, event in enumerate(events[:stop_at]):
        if position and not await watch.pause(delay_s):
            return
        await send({"type": "http.response.body", "body": event, "more_body": True})
    if cut is not None and cut.kind == "midstream_disconnect":
        await drop_connection(send, watch)
        return
    body = (error_event(stop_at) if cut is not None else b"") + tail
    await send({"type": "http.response.body", "body": body, "more_body": False})


def serve(app: ASGIApp, host: str, port: int) -> None:
    """Serve a simulator with uvicorn until interrupted."""
    import importlib.util

    import uvicorn

    uvicorn.run(app, host=host, port=port, loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
                http="httptools", access_log=False, log_level="warning", lifespan="on")
