"""The HTTP/1.1 upstream client (`pipeline/http1.py`) against raw-socket servers: keep-alive reuse and its
stale-connection retry, the connection cap, early release, and backpressure."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Coroutine
from typing import Any, cast

import aiohttp
import pytest

from tests.support.http1_server import (
    FakeProvider,
    Peer,
    Server,
    fetch,
    head,
    pool_for,
    post,
    read_until_error,
    response,
    run,
    serve,
)
from yourouter.pipeline import http1
from yourouter.pipeline.http1 import (
    Http1Response,
    UpstreamClosed,
)
from yourouter.pipeline.upstream import UpstreamPool

# -- 5. keep-alive ------------------------------------------------------------------------------------------------


def test_sequential_requests_share_one_connection() -> None:
    async def main() -> None:
        async with Server(serve(b"pong")) as server:
            with pool_for(server) as pool:
                for i in range(5):
                    assert await fetch(pool, f"{server.url}/ping/{i}", b"%d" % i) == (200, b"pong")
            assert server.accepted == 1
            assert [request[1] for request in server.requests] == [b"0", b"1", b"2", b"3", b"4"]
            assert [request[0].split(b" ")[1] for request in server.requests] == [
                b"/ping/%d" % i for i in range(5)]

    run(main())


def test_connection_close_from_the_server_opens_a_new_connection() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:  # the server says it will close, then waits for the client to
                await peer.send(response(b"bye", "Connection: close"))
                await peer.client_closed()  # ... which must not reuse the connection

        async with Server(handler) as server:
            with pool_for(server) as pool:
                for _ in range(3):
                    assert await fetch(pool, server.url) == (200, b"bye")
            assert server.accepted == 3
            assert len(server.requests) == 3

    run(main())


def test_an_http10_answer_is_not_kept_alive() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await peer.client_closed()

        async with Server(handler) as server:
            with pool_for(server) as pool:
                assert await fetch(pool, server.url) == (200, b"ok")
                assert await fetch(pool, server.url) == (200, b"ok")
            assert server.accepted == 2

    run(main())


def test_idle_connections_expire_after_keepalive() -> None:
    async def main() -> None:
        async with Server(serve()) as server:
            with pool_for(server, keepalive_s=0.2) as pool:
                assert await fetch(pool, server.url) == (200, b"ok")
                assert await fetch(pool, server.url) == (200, b"ok")
                assert server.accepted == 1
                await asyncio.sleep(0.3)
                assert await fetch(pool, server.url) == (200, b"ok")
            assert server.accepted == 2

    run(main())


def test_pools_per_origin_in_upstream_pool() -> None:
    async def main() -> None:
        async with Server(serve(b"a")) as one, Server(serve(b"b")) as two:
            provider = FakeProvider()
            upstream = UpstreamPool([cast(Any, provider)])
            try:
                for _ in range(2):
                    for server, expected in ((one, b"a"), (two, b"b")):
                        async with upstream.post(cast(Any, provider), server.url + "/x", b"{}") as answer:
                            assert await answer.read() == expected
                with pytest.raises(ValueError):
                    upstream.post(cast(Any, provider), "ftp://127.0.0.1/x", b"{}")
            finally:
                await upstream.close()
            assert (one.accepted, two.accepted) == (1, 1)

    run(main())


# -- 6. a stale reused connection -------------------------------------------------------------------------


def test_an_idle_connection_closed_by_the_server_is_not_used_again() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:  # keep-alive answer (no Connection: close), then the server hangs up
            if await peer.request() is not None:
                await peer.send(response(b"once"))
                peer.close()

        async with Server(handler) as server:
            with pool_for(server) as pool:
                assert await fetch(pool, server.url) == (200, b"once")
                await asyncio.sleep(0.1)  # the close arrives while the connection idles
                assert await fetch(pool, server.url) == (200, b"once")
            assert server.accepted == 2

    run(main())


def test_a_reused_connection_closed_before_any_answer_is_retried_once() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is None:
                return
            await peer.send(response(b"fresh"))
            if peer.index == 0:  # the first connection: the next request finds it closed (the race of an idle
                await peer.request()  # timeout on the server's side), no byte of an answer sent
                peer.close()
                return
            while await peer.request() is not None:
                await peer.send(response(b"fresh"))

        async with Server(handler) as server:
            with pool_for(server) as pool:
                assert await fetch(pool, server.url, b"1") == (200, b"fresh")
                assert await fetch(pool, server.url, b"2") == (200, b"fresh")  # retried on a new connection
                assert await fetch(pool, server.url, b"3") == (200, b"fresh")  # which is kept
            assert server.accepted == 2
            assert [request[1] for request in server.requests] == [b"1", b"2", b"2", b"3"]

    run(main())


def test_the_stale_retry_happens_only_once() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is None:
                return
            if peer.index == 0:
                await peer.send(response(b"first"))
                await peer.request()
            peer.close()  # every later connection: closed as soon as the request is in

        async with Server(handler) as server:
            with pool_for(server) as pool:
                assert await fetch(pool, server.url) == (200, b"first")
                with pytest.raises(UpstreamClosed) as caught:
                    await fetch(pool, server.url)
                assert isinstance(caught.value, aiohttp.ClientConnectionError)
            assert server.accepted == 2  # the reused connection and one retry: no more

    run(main())


def test_a_new_connection_closed_before_any_answer_is_not_retried() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            await peer.request()
            peer.close()

        async with Server(handler) as server:
            with pool_for(server) as pool:
                with pytest.raises(UpstreamClosed):
                    await fetch(pool, server.url)
            assert server.accepted == 1

    run(main())


@pytest.mark.parametrize("partial", [
    b"HTTP/1.1 200 OK\r\nContent-Le",  # inside the headers
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part",  # inside a sized body
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly part",  # inside a chunked body
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n",  # before the last chunk
])
def test_a_connection_dying_inside_an_answer_raises_and_is_not_retried(partial: bytes) -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is None:
                return
            await peer.send(response(b"ok"))
            if await peer.request() is not None:  # the reused connection: part of an answer, then the end
                await peer.send(partial)
                peer.close()

        async with Server(handler) as server:
            with pool_for(server) as pool:
                assert await fetch(pool, server.url) == (200, b"ok")
                with pytest.raises(aiohttp.ClientConnectionError) as caught:
                    await fetch(pool, server.url)
                assert isinstance(caught.value, UpstreamClosed)
            assert server.accepted == 1  # no retry
            assert len(server.requests) == 2

    run(main())


def test_a_body_dying_midway_raises_from_iter_any_after_the_parts_that_came() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", b"def", pause_s=0.02)
                peer.close()

        async with Server(handler) as server:
            with pool_for(server) as pool:
                received = await read_until_error(pool, server.url, aiohttp.ClientConnectionError)
            assert received == b"abcdef"

    run(main())


# -- 9. the connection cap ----------------------------------------------------------------------------------------


def test_connection_cap_with_keep_alive() -> None:
    async def main() -> None:
        in_flight = 0
        max_in_flight = 0

        async def handler(peer: Peer) -> None:
            nonlocal in_flight, max_in_flight
            while await peer.request() is not None:
                in_flight += 1
                max_in_flight = max(max_in_flight, in_flight)
                await asyncio.sleep(0.05)
                in_flight -= 1
                await peer.send(response(b"capped"))

        async with Server(handler) as server:
            with pool_for(server, limit=1) as pool:
                results = await asyncio.gather(*[fetch(pool, server.url, b"%d" % i) for i in range(3)])
            assert results == [(200, b"capped")] * 3
            assert server.accepted == 1
            assert server.max_open == 1
            assert max_in_flight == 1
            assert sorted(request[1] for request in server.requests) == [b"0", b"1", b"2"]

    run(main())


def test_connection_cap_when_every_answer_closes() -> None:
    async def main() -> None:
        in_flight = 0
        max_in_flight = 0

        async def handler(peer: Peer) -> None:
            nonlocal in_flight, max_in_flight
            if await peer.request() is not None:
                in_flight += 1
                max_in_flight = max(max_in_flight, in_flight)
                await asyncio.sleep(0.05)
                in_flight -= 1
                await peer.send(response(b"once", "Connection: close"))
                peer.close()

        async with Server(handler) as server:
            with pool_for(server, limit=1) as pool:
                results = await asyncio.gather(*[fetch(pool, server.url) for _ in range(3)])
            assert results == [(200, b"once")] * 3
            assert server.accepted == 3
            assert max_in_flight == 1

    run(main())


def test_connection_cap_of_two_with_streams() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            while await peer.request() is not None:
                await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"2\r\nab\r\n",
                                b"2\r\ncd\r\n0\r\n\r\n", pause_s=0.03)

        async with Server(handler) as server:
            with pool_for(server, limit=2) as pool:
                results = await asyncio.gather(*[fetch(pool, server.url) for _ in range(6)])
            assert results == [(200, b"abcd")] * 6
            assert server.accepted == 2
            assert server.max_open == 2

    run(main())


def test_a_cancelled_waiter_does_not_swallow_the_free_connection() -> None:
    async def main() -> None:
        async with Server(serve()) as server:
            with pool_for(server, limit=1) as pool:
                url = server.url
                first = await pool.request(head(pool, url), b"{}")  # holds the only connection
                assert await first.read() == b"ok"
                second = asyncio.create_task(pool.request(head(pool, url), b"{}"))
                third = asyncio.create_task(pool.request(head(pool, url), b"{}"))
                await asyncio.sleep(0.05)  # both wait for the connection
                first.release()  # puts the connection back and wakes `second` ...
                second.cancel()  # ... cancelled in the same loop iteration, before it could run
                try:
                    answer: Http1Response = await asyncio.wait_for(third, 1.0)
                finally:
                    third.cancel()
                assert await answer.read() == b"ok"
                answer.release()
                with pytest.raises(asyncio.CancelledError):
                    await second

    run(main())


def test_the_stale_retry_at_the_connection_cap() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is None:
                return
            await peer.send(response(b"ok"))
            if peer.index == 0:  # the warm connection goes stale: closed when the next request comes in
                await peer.request()
                peer.close()
                return
            while await peer.request() is not None:
                await peer.send(response(b"ok"))

        async with Server(handler) as server:
            with pool_for(server, limit=1) as pool:
                assert await fetch(pool, server.url) == (200, b"ok")  # warm: one idle connection
                # the first takes the stale connection, the second waits at the cap; when the stale one closes the
                # second gets the free slot first, and the first's retry must still get through
                first = asyncio.create_task(fetch(pool, server.url))
                second = asyncio.create_task(fetch(pool, server.url))
                try:
                    results = await asyncio.wait_for(asyncio.gather(first, second), 1.5)
                finally:
                    first.cancel()
                    second.cancel()
            assert list(results) == [(200, b"ok"), (200, b"ok")]

    run(main())


# -- 10. early release --------------------------------------------------------------------------------------------


def test_early_release_closes_the_connection() -> None:
    async def main() -> None:
        closed = asyncio.Event()

        async def handler(peer: Peer) -> None:
            while await peer.request() is not None:
                if peer.server.requests[-1][0].startswith(b"POST /big"):
                    await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
                    await peer.client_closed()
                    closed.set()
                    return
                await peer.send(response(b"small"))

        async with Server(handler) as server:
            with pool_for(server) as pool:
                assert await fetch(pool, server.url + "/small") == (200, b"small")  # read whole: kept
                assert await fetch(pool, server.url + "/small") == (200, b"small")
                assert server.accepted == 1
                async with post(pool, server.url + "/big") as answer:  # released with the body unread
                    assert answer.status == 200
                    assert await answer.content.iter_any().__anext__() == b"x" * 1000
                await asyncio.wait_for(closed.wait(), 1.0)  # the client closed that connection
                assert await fetch(pool, server.url + "/small") == (200, b"small")
                assert await fetch(pool, server.url + "/small") == (200, b"small")
            assert server.accepted == 2

    run(main())


def test_release_without_reading_a_complete_body_is_not_reused() -> None:
    async def main() -> None:
        async with Server(serve(b"unread")) as server:
            with pool_for(server) as pool:
                async with post(pool, server.url) as answer:
                    assert answer.status == 200
                    await asyncio.sleep(0.05)  # the body is in, but nobody read it
                assert await fetch(pool, server.url) == (200, b"unread")
                assert await fetch(pool, server.url) == (200, b"unread")
            assert server.accepted == 2

    run(main())


def test_release_after_an_error_status_body_is_read_keeps_the_connection() -> None:
    async def main() -> None:
        async with _status_server() as server:
            with pool_for(server) as pool:
                for _ in range(3):
                    async with post(pool, server.url) as answer:
                        assert answer.status == 429
                        assert answer.headers["Retry-After"] == "1"
                        assert await answer.read() == b'{"error":"rate limited"}'
            assert server.accepted == 1

    run(main())


def _status_server() -> Server:
    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(response(b'{"error":"rate limited"}', "Retry-After: 1", status="429 Too Many Requests"))

    return Server(handler)


# -- 11. backpressure ---------------------------------------------------------------------------------------------


def test_a_large_body_read_slowly_arrives_whole_and_in_order() -> None:
    async def main() -> None:
        piece_size = 16 * 1024
        pieces = [(b"%08d" % i) + bytes([i % 256]) * (piece_size - 8) for i in range(128)]  # 2 MiB
        expected = b"".join(pieces)
        all_written = asyncio.Event()

        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(expected))
                for piece in pieces:
                    await peer.send(piece)
                all_written.set()
                await peer.client_closed()

        async with Server(handler) as server:
            with pool_for(server, read_timeout_s=0.3) as pool:  # a client that stalls is not the upstream's silence
                received = bytearray()
                async with post(pool, server.url) as answer:
                    stream = answer.content.iter_any()
                    received += await stream.__anext__()
                    await asyncio.sleep(0.6)  # stall: the body piles up until reading pauses
                    assert answer._size < 2 * http1._BUFFER_HIGH  # bounded buffering
                    reads = 0
                    async for chunk in stream:
                        received += chunk
                        reads += 1
                        if reads % 4 == 0:
                            await asyncio.sleep(0.005)
                assert bytes(received) == expected
                assert all_written.is_set()

    run(main())


def test_a_large_chunked_gzip_body_read_slowly() -> None:
    async def main() -> None:
        text = b"".join(b"line %07d of the streamed answer\n" % i for i in range(60000))  # ~2 MiB
        packed = gzip.compress(text, compresslevel=1)

        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n")
                for start in range(0, len(packed), 16 * 1024):
                    piece = packed[start:start + 16 * 1024]
                    await peer.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                await peer.send(b"0\r\n\r\n")
                await peer.client_closed()

        async with Server(handler) as server:
            with pool_for(server) as pool:
                received = bytearray()
                async with post(pool, server.url) as answer:
                    async for chunk in answer.content.iter_any():
                        received += chunk
                        await asyncio.sleep(0)
            assert bytes(received) == text

    run(main())


# -- 12. forwarding (pieces handed over in the read callback) -------------------------------------------------------


async def _forward_all(answer: Http1Response, deliver: http1.Delivery) -> None:
    while (pending := await answer.forward(deliver)) is not None:
        await pending


def test_forwarding_hands_over_every_piece_in_order_and_waits_for_a_slow_receiver() -> None:
    async def main() -> None:
        pieces = [b"%06d:" % i + b"y" * 4000 for i in range(400)]  # ~1.6 MiB, sent as fast as the socket takes it

        async def handler(peer: Peer) -> None:
            while await peer.request() is not None:
                await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                await peer.send(b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n")

        async with Server(handler) as server:
            with pool_for(server) as pool:
                received = bytearray()
                held: list[int] = []

                async def slowly() -> None:  # what a full client socket does to `send`
                    await asyncio.sleep(0.05)
                    held.append(answer._size)  # pieces read meanwhile wait, a bounded amount

                def deliver(chunk: bytes) -> Coroutine[Any, Any, None] | None:
                    received.extend(chunk)
                    return slowly() if len(received) // 300_000 > len(held) else None

                async with post(pool, server.url) as answer:
                    await asyncio.sleep(0.05)  # pieces read before anyone forwards are handed over first
                    assert answer._chunks
                    await _forward_all(answer, deliver)
                assert bytes(received) == b"".join(pieces)
                assert held and max(held) < 2 * http1._BUFFER_HIGH
                assert await fetch(pool, server.url) == (200, b"".join(pieces))  # the connection was reusable
            assert server.accepted == 1

    run(main())


def test_forwarding_ends_with_the_receivers_error_or_the_upstreams() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"5\r\nfirst\r\n",
                                b"6\r\nsecond\r\n", pause_s=0.05)
                peer.close()  # mid-body

        async with Server(handler) as server:
            with pool_for(server) as pool:
                async with post(pool, server.url) as answer:
                    def refuse(chunk: bytes) -> None:
                        raise ValueError(f"cannot take {chunk!r}")

                    with pytest.raises(ValueError, match="first"):
                        await _forward_all(answer, refuse)
                got: list[bytes] = []
                async with post(pool, server.url) as answer:
                    with pytest.raises(UpstreamClosed):
                        await _forward_all(answer, lambda chunk: got.append(chunk))
                assert got == [b"first", b"second"]

    run(main())
