"""Relaying an upstream response to the client: whole bodies, and SSE streams event by event as they arrive,
either untouched (same dialect) or translated through the IR."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from yourouter.asgi import Headers, Send, send_bytes
from yourouter.codecs.sse import SseSplitter
from yourouter.ir.chat import ChatRequest, EmbeddingRequest, StreamError, UsageUpdate
from yourouter.ir.errors import ErrorKind, GatewayError
from yourouter.ir.usage import Usage
from yourouter.metering.ledger import UsageRecord
from yourouter.pipeline.http1 import Http1Response

if TYPE_CHECKING:
    from yourouter.codecs import (
        DialectCodec,
        EmbeddingsCodec,
        StreamDecoder,
        StreamEncoder,
        StreamSplitter,
        StreamTap,
    )

_SSE_HEADERS: Headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                         (b"x-accel-buffering", b"no")]
_JSON: Headers = [(b"content-type", b"application/json")]


def _apply_usage(record: UsageRecord, usage: Usage | None) -> None:
    if usage is not None:
        record.prompt_tokens = usage.prompt_tokens
        record.completion_tokens = usage.completion_tokens
        record.cached_tokens = usage.cached_tokens


async def relay_body(send: Send, response: Http1Response, headers: Headers, record: UsageRecord,
                     started: float, provider_codec: DialectCodec,
                     accepted: Callable[[bytes], Awaitable[bytes]] | None = None) -> None:
    """`accepted`, when given, sees a successful body before the client does (and may replace it)."""
    body = await response.read()
    record.ttfb_ms = (time.perf_counter() - started) * 1000
    status = record.status = response.status
    if status < 300 and accepted is not None:
        body = await accepted(body)
    if status < 300:
        _apply_usage(record, provider_codec.usage_of_response(body))
    else:  # a 4xx the request itself caused: the upstream's own envelope is already the client's dialect
        record.outcome, record.error_type = "client_error", f"upstream_{status}"
    content_type = response.headers.get("Content-Type", "application/json").encode("latin-1")
    await send_bytes(send, status, body, [*headers, (b"content-type", content_type)])


async def _json_object(response: Http1Response, record: UsageRecord, started: float) -> dict[str, Any]:
    body = await response.read()
    record.ttfb_ms = (time.perf_counter() - started) * 1000
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict):
        raise GatewayError(500, ErrorKind.UPSTREAM, f"Upstream {record.deployment} sent an unreadable response.",
                           code="upstream_bad_response")
    return payload


async def relay_translated_embeddings(send: Send, response: Http1Response, headers: Headers,
                                      record: UsageRecord, started: float, provider_codec: EmbeddingsCodec,
                                      client_codec: EmbeddingsCodec, request: EmbeddingRequest) -> None:
    answer = provider_codec.decode_embeddings_response(await _json_object(response, record, started))
    if answer.usage is None:  # some upstreams do not count embedding tokens: estimate, about four chars a token
        answer = dataclasses.replace(answer, usage=Usage(prompt_tokens=sum(len(t) + 3 for t in request.inputs) // 4))
    _apply_usage(record, answer.usage)
    body = orjson.dumps(client_codec.encode_embeddings_response(answer, request))
    record.status = 200
    await send_bytes(send, 200, body, [*headers, *_JSON])


async def relay_translated_body(send: Send, response: Http1Response, headers: Headers,
                                record: UsageRecord, started: float, provider_codec: DialectCodec,
                                client_codec: DialectCodec, request: ChatRequest) -> None:
    answer = provider_codec.decode_response(await _json_object(response, record, started))
    _apply_usage(record, answer.usage)
    body = orjson.dumps(client_codec.encode_response(answer, request))
    record.status = 200
    await send_bytes(send, 200, body, [*headers, *_JSON])


async def _pump(send: Send, response: Http1Response, record: UsageRecord, started: float,
                convert: Callable[[list[bytes]], bytes], splitter: StreamSplitter | None = None) -> None:
    """The complete events of each upstream read (SSE unless another splitter is given), converted to the
    client's bytes and sent as they arrive: what one read brought goes out in one write (a 10,000-event burst is
    not 10,000 writes).

    Each read is converted and written inside the upstream connection's read callback (`Http1Response.forward`),
    with the ASGI `send` driven to its end there when it does not have to wait (`_send_now`); the request's task
    wakes only at the stream's end, on an error, or when the client's socket is full. Waking the task for every
    event (a future, a scheduled callback, and the request's await chain of ~11 coroutines resumed) cost ~9k
    instructions per event: a 23-event stream took 1,710k instructions with it and 1,501k without
    (bench/instructions.py --stream --chunk-delay-ms 40; the floor proxy 1,612k)."""
    splitter = splitter or SseSplitter()
    feed = splitter.feed

    def deliver(chunk: bytes) -> Awaitable[None] | None:
        if record.ttfb_ms is None:
            record.ttfb_ms = (time.perf_counter() - started) * 1000
        events = feed(chunk)
        if events:
            data = convert(events)
            if data:
                return _send_now(send, {"type": "http.response.body", "body": data, "more_body": True})
        return None

    while True:
        forwarding = response.forward(deliver)
        try:
            pending = await forwarding
        except asyncio.CancelledError:  # the rest of a send that had to wait may be in hand: it will not be awaited
            if forwarding.done() and not forwarding.cancelled() and forwarding.exception() is None:
                getattr(forwarding.result(), "close", lambda: None)()
            raise
        finally:
            response.stop_forwarding()  # a cancelled request (client gone, deadline) forwards nothing more
        if pending is None:
            break
        await pending
    last = splitter.last_event()
    if last:
        data = convert([last])
        if data:
            await send({"type": "http.response.body", "body": data, "more_body": True})


def _send_now(send: Send, message: dict[str, Any]) -> Awaitable[None] | None:
    """Runs `send(message)` here and now. ASGI's `send` is a coroutine, but uvicorn's returns without waiting
    unless the client's socket is full (flow control): then what is left of it is returned, to be awaited."""
    coroutine = send(message)
    try:
        waiting_on = coroutine.send(None)  # type: ignore[attr-defined]
    except StopIteration:
        return None
    return _finish(coroutine, waiting_on)


async def _finish(coroutine: Any, waiting_on: Any) -> None:
    """Carries on a coroutine that `_send_now` started and that stopped to wait, as a task would: whatever it
    waits on is awaited here, then it is resumed with the outcome."""
    while True:
        try:
            if waiting_on is None:  # a bare yield (asyncio.sleep(0))
                await asyncio.sleep(0)
            else:  # a future, marked as yielded by its `await`: a task clears the mark before it waits on it
                waiting_on._asyncio_future_blocking = False
                await waiting_on
        except BaseException as exc:  # noqa: BLE001 - handed to the coroutine, which decides (it re-raises)
            try:
                waiting_on = coroutine.throw(exc)
            except StopIteration:
                return
            continue
        try:
            waiting_on = coroutine.send(None)
        except StopIteration:
            return


async def _guarded(record: UsageRecord, error_event: Callable[[GatewayError], bytes], send: Send,
                   relay: Callable[[], Any]) -> None:
    """An upstream failure after the stream started ends the client's stream with its dialect's error event.
    (A client disconnect cancels the whole request: the pipeline watches for it.)"""
    try:
        await relay()
    except (aiohttp.ClientError, TimeoutError) as exc:
        error = GatewayError(500, ErrorKind.UPSTREAM,
                             f"Upstream {record.deployment} failed mid-stream ({type(exc).__name__}).",
                             code="upstream_stream_error")
        record.outcome, record.error_type = "upstream_error", error.code
        await send({"type": "http.response.body", "body": error_event(error), "more_body": False})


async def relay_stream(send: Send, response: Http1Response, headers: Headers,
                       record: UsageRecord, started: float, tap: StreamTap,
                       error_event: Callable[[GatewayError], bytes], framing: Any = None) -> None:
    """Same dialect: forward complete SSE events as soon as they arrive (the tap may drop the usage chunk)."""
    content_type = _SSE_HEADERS if framing is None else framing.headers
    await send({"type": "http.response.start", "status": response.status, "headers": [*headers, *content_type]})
    record.status = response.status

    tap_event = tap.event

    def convert(events: list[bytes]) -> bytes:
        out = []
        for event in events:
            forwarded = tap_event(event)
            if forwarded is not None:
                out.append(forwarded if framing is None else framing.frame(forwarded))
        return b"".join(out)

    async def relay() -> None:
        await _pump(send, response, record, started, convert)
        tail = framing.close() if framing is not None else b""
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    try:
        await _guarded(record, error_event, send, relay)
    finally:
        _apply_usage(record, tap.usage)


async def relay_translated_stream(send: Send, response: Http1Response, headers: Headers,
                                  record: UsageRecord, started: float, decoder: StreamDecoder,
                                  encoder: StreamEncoder, splitter: StreamSplitter | None = None) -> None:
    """Another dialect: each upstream event becomes the client's events as it arrives."""
    content_type = getattr(encoder, "headers", None) or _SSE_HEADERS
    await send({"type": "http.response.start", "status": 200, "headers": [*headers, *content_type]})
    record.status = 200
    usage: list[Usage] = []

    def encode(events: list[Any]) -> bytes:
        out = []
        for event in events:
            if isinstance(event, UsageUpdate):
                usage.append(event.usage)
            elif isinstance(event, StreamError):
                record.outcome, record.error_type = "upstream_error", "upstream_stream_error"
            out.append(encoder.encode(event))
        return b"".join(out)

    def convert(events: list[bytes]) -> bytes:
        return encode([decoded for event in events for decoded in decoder.feed(event)])

    async def relay() -> None:
        await _pump(send, response, record, started, convert, splitter)
        tail = encode(decoder.close()) + encoder.close()
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    def error_event(error: GatewayError) -> bytes:
        return encoder.encode(StreamError(error.status, error.message)) + encoder.close()

    try:
        await _guarded(record, error_event, send, relay)
    finally:
        _apply_usage(record, usage[-1] if usage else None)
