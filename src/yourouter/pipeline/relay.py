"""Relaying an upstream response to the client: whole bodies, and SSE streams event by event as they arrive."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp

from yourouter.asgi import Headers, Receive, Request, Send, send_bytes
from yourouter.codecs.sse import SseSplitter
from yourouter.ir.errors import ErrorKind, GatewayError
from yourouter.ir.usage import Usage
from yourouter.metering.ledger import UsageRecord

if TYPE_CHECKING:
    from yourouter.codecs import DialectCodec, StreamTap

_SSE_HEADERS: Headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                         (b"x-accel-buffering", b"no")]


def _apply_usage(record: UsageRecord, usage: Usage | None) -> None:
    if usage is not None:
        record.prompt_tokens = usage.prompt_tokens
        record.completion_tokens = usage.completion_tokens
        record.cached_tokens = usage.cached_tokens


async def relay_body(send: Send, response: aiohttp.ClientResponse, headers: Headers, record: UsageRecord,
                     started: float, provider_codec: DialectCodec) -> None:
    body = await response.read()
    record.ttfb_ms = (time.perf_counter() - started) * 1000
    status = record.status = response.status
    if status < 300:
        _apply_usage(record, provider_codec.usage_of_response(body))
    else:  # a 4xx the request itself caused: the upstream's own envelope is already the client's dialect
        record.outcome, record.error_type = "client_error", f"upstream_{status}"
    content_type = response.headers.get("Content-Type", "application/json").encode("latin-1")
    await send_bytes(send, status, body, [*headers, (b"content-type", content_type)])


async def _disconnected(receive: Receive) -> bool:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return True


async def relay_stream(request: Request, send: Send, response: aiohttp.ClientResponse, headers: Headers,
                       record: UsageRecord, started: float, tap: StreamTap,
                       error_event: Callable[[GatewayError], bytes]) -> None:
    """Forward complete SSE events as soon as they arrive. A client disconnect cancels the upstream read."""
    await send({"type": "http.response.start", "status": response.status, "headers": [*headers, *_SSE_HEADERS]})
    record.status = response.status
    relay_task = asyncio.current_task()
    watcher = asyncio.get_running_loop().create_task(_disconnected(request.receive))

    def on_disconnect(task: asyncio.Task[bool]) -> None:
        if not task.cancelled() and task.exception() is None and relay_task is not None:
            relay_task.cancel()

    watcher.add_done_callback(on_disconnect)
    splitter = SseSplitter()
    try:
        async for chunk in response.content.iter_any():
            if record.ttfb_ms is None:
                record.ttfb_ms = (time.perf_counter() - started) * 1000
            out = [forwarded for event in splitter.feed(chunk) if (forwarded := tap.event(event)) is not None]
            if out:
                await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
        rest = splitter.close()
        if rest.strip():
            forwarded = tap.event(rest + b"\n\n")
            if forwarded is not None:
                await send({"type": "http.response.body", "body": forwarded, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not watcher.done() or watcher.cancelled():
            raise
        if relay_task is not None:
            relay_task.uncancel()
        record.outcome, record.error_type = "cancelled", "client_disconnected"
    except (aiohttp.ClientError, TimeoutError) as exc:
        error = GatewayError(500, ErrorKind.UPSTREAM,
                             f"Upstream {record.deployment} failed mid-stream ({type(exc).__name__}).",
                             code="upstream_stream_error")
        record.outcome, record.error_type = "upstream_error", error.code
        await send({"type": "http.response.body", "body": error_event(error), "more_body": False})
    finally:
        watcher.remove_done_callback(on_disconnect)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        _apply_usage(record, tap.usage)
