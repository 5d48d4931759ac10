"""The HTTP/1.1 upstream client (`pipeline/http1.py`) against raw-socket servers: read and total timeouts,
connection failures, invalid HTTP, and freedom from reference cycles."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import aiohttp
import pytest
import yarl

from tests.support.http1_server import (
    FakeProvider,
    Peer,
    Server,
    closed_port,
    fetch,
    head,
    pool_for,
    post,
    read_until_error,
    response,
    run,
    serve,
)
from yourouter.pipeline.http1 import (
    Http1Pool,
    Http1RequestContext,
    UpstreamReadTimeout,
    UpstreamUnreachable,
)
from yourouter.pipeline.upstream import UpstreamPool

# -- 7. timeouts --------------------------------------------------------------------------------------------------


def test_read_timeout_without_any_answer() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            await peer.request()
            await peer.client_closed()  # never answers

        async with Server(handler) as server:
            with pool_for(server, read_timeout_s=0.4) as pool:  # swept every 0.1 s
                started = time.monotonic()
                with pytest.raises(UpstreamReadTimeout) as caught:
                    await fetch(pool, server.url)
            elapsed = time.monotonic() - started
            assert 0.35 <= elapsed < 0.4 + 0.1 + 0.5, elapsed
            assert isinstance(caught.value, aiohttp.ClientConnectionError)
            assert isinstance(caught.value, TimeoutError)
            assert server.accepted == 1

    run(main())


def test_read_timeout_mid_body() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart one")
                await peer.client_closed()  # then silence

        async with Server(handler) as server:
            with pool_for(server, read_timeout_s=0.4) as pool:
                received: list[bytes] = []
                async with post(pool, server.url) as answer:
                    started = time.monotonic()
                    with pytest.raises(UpstreamReadTimeout):
                        async for chunk in answer.content.iter_any():
                            received.append(chunk)
                    elapsed = time.monotonic() - started
                with pytest.raises(UpstreamReadTimeout):  # the error stays
                    await answer.read()
            assert received == [b"part one"]
            assert elapsed < 0.4 + 0.1 + 0.5, elapsed

    run(main())


def test_a_slow_but_steady_stream_is_not_a_read_timeout() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                *[b"1\r\n%d\r\n" % (i % 10) for i in range(8)], b"0\r\n\r\n", pause_s=0.1)

        async with Server(handler) as server:
            with pool_for(server, read_timeout_s=0.3) as pool:  # the whole stream takes ~0.9 s, no gap 0.3 s
                assert await fetch(pool, server.url) == (200, b"01234567")

    run(main())


def test_total_timeout_before_the_headers() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            await peer.request()
            await peer.client_closed()

        async with Server(handler) as server:
            with pool_for(server, read_timeout_s=3.0, total_timeout_s=0.3) as pool:
                started = time.monotonic()
                with pytest.raises(TimeoutError):
                    await fetch(pool, server.url)
            assert time.monotonic() - started < 1.0

    run(main())


def test_total_timeout_covers_the_streamed_body() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                *[b"1\r\nx\r\n" for _ in range(15)], b"0\r\n\r\n", pause_s=0.1)

        async with Server(handler) as server:
            with pool_for(server, read_timeout_s=3.0, total_timeout_s=0.4) as pool:
                started = time.monotonic()
                with pytest.raises(TimeoutError):
                    await fetch(pool, server.url)  # the stream lasts ~1.5 s
            assert time.monotonic() - started < 1.2

    run(main())


# -- 8. connection failures ---------------------------------------------------------------------------------------


def test_connect_to_a_closed_port_is_unreachable() -> None:
    async def main() -> None:
        port = closed_port()
        pool = Http1Pool(yarl.URL(f"http://127.0.0.1:{port}/v1"), connect_timeout_s=2.0, limit=1)
        try:
            for _ in range(2):  # a failed connect frees its slot under the cap
                with pytest.raises(UpstreamUnreachable) as caught:
                    await fetch(pool, f"http://127.0.0.1:{port}/v1")
                assert isinstance(caught.value, aiohttp.ClientConnectionError)
                assert isinstance(caught.value.__cause__, OSError)
        finally:
            pool.close()

        provider = FakeProvider()
        upstream = UpstreamPool([cast(Any, provider)])
        try:
            with pytest.raises(aiohttp.ClientConnectionError):
                async with upstream.post(cast(Any, provider), f"http://127.0.0.1:{port}/x", b"{}"):
                    pass
        finally:
            await upstream.close()

    run(main())


# -- 12. invalid HTTP ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("garbage", [
    b"HELLO WORLD\r\n\r\n",
    b"HTTP/1.1 abc OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header Without Colon\r\n\r\n",
    b"\x00\x01\x02\x03\r\n\r\n",
    pytest.param(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                 id="a-protocol-switch-is-refused"),
])
def test_invalid_http_before_the_body_raises(garbage: bytes) -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(garbage)
                await peer.client_closed()

        async with Server(handler) as server:
            with pool_for(server) as pool:
                with pytest.raises(aiohttp.ClientError):
                    await asyncio.wait_for(fetch(pool, server.url), 2.0)

    run(main())


def test_invalid_chunk_framing_mid_body_raises() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
                                b"zz\r\nnot a chunk\r\n", pause_s=0.02)
                await peer.client_closed()

        async with Server(handler) as server:
            with pool_for(server) as pool:
                received = await read_until_error(pool, server.url, aiohttp.ClientError)
            assert received == b"abc"

    run(main())


def test_an_interim_1xx_answer_is_skipped() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            while await peer.request() is not None:
                await peer.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                                + response(b"final"))

        async with Server(handler) as server:
            with pool_for(server) as pool:
                assert await asyncio.wait_for(fetch(pool, server.url), 2.0) == (200, b"final")

    run(main())


# -- no reference cycles ------------------------------------------------------------------------------------------


def test_answers_closed_connections_and_refused_connects_leave_no_cyclic_garbage() -> None:
    """Everything the client makes per request is freed by reference counting: a cycle per response (the body
    stream pointing back at its response) or per connection (the parser pointing back at its protocol) made a
    10-minute soak's RSS climb until the cyclic collector ran."""
    import gc

    async def main() -> None:
        async with Server(serve(b"x" * 100, "Connection: close")) as server:
            pool = Http1Pool(yarl.URL(server.url + "/v1"))
            dead = Http1Pool(yarl.URL(f"http://127.0.0.1:{closed_port()}/v1"))
            try:
                for _ in range(3):  # warm: the loop's own one-time objects
                    await fetch(pool, server.url + "/v1")
                gc.collect()
                gc.disable()
                gc.set_debug(gc.DEBUG_SAVEALL)
                for _ in range(20):
                    context = Http1RequestContext(pool, head(pool, server.url + "/v1"), b"{}")
                    async with context as answer:
                        chunks = [chunk async for chunk in answer.content.iter_any()]
                    assert b"".join(chunks) == b"x" * 100
                    with pytest.raises(UpstreamUnreachable):
                        await fetch(dead, f"http://127.0.0.1:{closed_port()}/v1")
                await asyncio.sleep(0.05)  # connection_lost of the closed connections
                gc.collect()
                ours = [o for o in gc.garbage if type(o).__module__ in ("yourouter.pipeline.http1", "httptools")
                        or "HttpResponseParser" in type(o).__name__]
                assert ours == []
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()
                pool.close()
                dead.close()

    run(main())
