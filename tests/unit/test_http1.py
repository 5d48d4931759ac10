"""The request path's HTTP/1.1 upstream client (`pipeline/http1.py`) against small raw-socket servers on 127.0.0.1:
the exact request bytes, response framings (Content-Length, chunked, connection close), streaming, gzip/deflate,
keep-alive reuse and its stale-connection retry, read timeouts, connection failures, the connection cap, early
release and backpressure, and invalid HTTP."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
import zlib
from collections.abc import Awaitable, Callable, Coroutine
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest
import yarl

from yourouter.pipeline import http1
from yourouter.pipeline.http1 import (
    Http1Pool,
    Http1RequestContext,
    Http1Response,
    UpstreamClosed,
    UpstreamReadTimeout,
    UpstreamUnreachable,
    request_head,
)
from yourouter.pipeline.upstream import UpstreamPool

TEST_TIMEOUT_S = 5.0  # no test may hang: each runs under this cap


def run(coro: Coroutine[Any, Any, None]) -> None:
    async def capped() -> None:
        await asyncio.wait_for(coro, TEST_TIMEOUT_S)

    asyncio.run(capped())


# -- a raw-socket server ------------------------------------------------------------------------------------------


class Peer:
    """One accepted connection, as the handler sees it."""

    def __init__(self, server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.index = index  # 0 for the first connection the server accepted
        sock = writer.get_extra_info("socket")
        if sock is not None:  # every write its own segment: the client sees the splits we make
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def request(self) -> tuple[bytes, bytes] | None:
        """The next request's head (up to and including the blank line) and body; None when the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        body = await self.reader.readexactly(length)
        self.server.requests.append((head, body))
        return head, body

    async def send(self, *parts: bytes, pause_s: float = 0.0) -> None:
        """Writes each part (flushed), pausing between them so that they arrive as separate reads."""
        for i, part in enumerate(parts):
            if i and pause_s:
                await asyncio.sleep(pause_s)
            self.writer.write(part)
            await self.writer.drain()

    async def client_closed(self) -> None:
        """Returns once the client closed (or reset) the connection; discards whatever else it sends."""
        try:
            while await self.reader.read(65536):
                pass
        except ConnectionError:
            pass

    def close(self) -> None:
        self.writer.close()


Handler = Callable[[Peer], Awaitable[None]]


class Server:
    """`asyncio.start_server` on 127.0.0.1 with a handler per connection; counts connections and requests."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0
        self.accepted = 0
        self.open_now = 0
        self.max_open = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self.errors: list[BaseException] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._on_connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = Peer(self, reader, writer, self.accepted)
        self.accepted += 1
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)
        try:
            await self._handler(peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: some tests do that on purpose
        except asyncio.CancelledError:
            pass  # the test is over (ends the task quietly: asyncio's stream callback logs a cancelled one)
        except Exception as exc:  # noqa: BLE001 - reported by the test that owns the server
            self.errors.append(exc)
        finally:
            self.open_now -= 1
            writer.close()
            self._tasks.discard(task)


def response(body: bytes = b"ok", *headers: str, status: str = "200 OK") -> bytes:
    """A whole answer with a Content-Length."""
    lines = [f"HTTP/1.1 {status}", *headers, f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def serve(body: bytes = b"ok", *headers: str) -> Handler:
    """Answers every request on the connection with `body` (keep-alive)."""

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(response(body, *headers))

    return handler


def head(pool: Http1Pool, url: str, body: bytes = b"{}", headers: dict[str, str] | None = None) -> bytes:
    return request_head(yarl.URL(url, encoded=True), pool.host_header, headers or {}, len(body))


def post(pool: Http1Pool, url: str, body: bytes = b"{}") -> Http1RequestContext:
    return Http1RequestContext(pool, head(pool, url, body), body)


async def fetch(pool: Http1Pool, url: str, body: bytes = b"{}") -> tuple[int, bytes]:
    async with post(pool, url, body) as answer:
        return answer.status, await answer.read()


def pool_for(server: Server, **options: Any) -> Http1Pool:
    options.setdefault("connect_timeout_s", 2.0)
    options.setdefault("read_timeout_s", 3.0)
    return Http1Pool(yarl.URL(server.url), **options)


class FakeProvider:
    """What `UpstreamPool.post` reads of a provider."""

    def __init__(self, name: str = "fake", headers: dict[str, str] | None = None, **config: Any) -> None:
        self.name = name
        self.config = SimpleNamespace(**{"max_connections": 0, "connect_timeout_s": 2.0, "read_timeout_s": 3.0,
                                         "total_timeout_s": None, **config})
        self._headers = headers if headers is not None else {}
        self.seen: list[tuple[str, bytes]] = []

    def headers(self, url: str, body: bytes) -> dict[str, str]:
        self.seen.append((url, body))
        return dict(self._headers)


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- 1. request bytes ---------------------------------------------------------------------------------------------


def test_request_bytes_through_upstream_pool() -> None:
    async def main() -> None:
        async with Server(serve(b'{"ok":true}', "Content-Type: application/json")) as server:
            provider = FakeProvider(headers={"Authorization": "Bearer sk-1", "X-Api-Flavour": "plain"})
            upstream = UpstreamPool([cast(Any, provider)])
            url = f"{server.url}/v1/x%2Fy?alt=sse&q=a%20b"
            body = b'{"model":"m","input":"\xc3\xa9"}'
            try:
                async with upstream.post(cast(Any, provider), url, body, {"X-Extra": "1"}) as answer:
                    assert answer.status == 200
                    assert answer.content_type == "application/json"
                    assert await answer.read() == b'{"ok":true}'
            finally:
                await upstream.close()
            assert provider.seen == [(url, body)]
            assert server.requests == [(
                b"POST /v1/x%2Fy?alt=sse&q=a%20b HTTP/1.1\r\n"
                + f"Host: 127.0.0.1:{server.port}\r\n".encode()
                + b"Authorization: Bearer sk-1\r\n"
                b"X-Api-Flavour: plain\r\n"
                b"X-Extra: 1\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode(),
                body,
            )]

    run(main())


def test_host_header_omits_only_the_default_port() -> None:
    async def main() -> None:
        cases = {
            "http://api.example.com/v1/chat": b"api.example.com",
            "http://api.example.com:80/v1/chat": b"api.example.com",
            "https://api.example.com/v1/chat": b"api.example.com",
            "https://api.example.com:443/v1/chat": b"api.example.com",
            "http://api.example.com:8080/v1": b"api.example.com:8080",
            "https://api.example.com:8443/v1": b"api.example.com:8443",
            "http://api.example.com:443/v1": b"api.example.com:443",
            "https://api.example.com:80/v1": b"api.example.com:80",
            "http://[::1]:8080/v1": b"[::1]:8080",
            "https://[::1]/v1": b"[::1]",
        }
        for url, expected in cases.items():
            pool = Http1Pool(yarl.URL(url))
            try:
                assert pool.host_header == expected, url
                assert head(pool, url, b"").startswith(b"POST /v1")
                assert b"\r\nHost: " + expected + b"\r\n" in head(pool, url, b"")
            finally:
                pool.close()

    run(main())


def test_request_head_exact_bytes() -> None:
    url = yarl.URL("https://example.com/model/a%3Ab/invoke?x=%2F&y=1", encoded=True)
    assert request_head(url, b"example.com", {"Authorization": "k"}, 7) == (
        b"POST /model/a%3Ab/invoke?x=%2F&y=1 HTTP/1.1\r\n"
        b"Host: example.com\r\n"
        b"Authorization: k\r\n"
        b"Content-Length: 7\r\n\r\n"
    )
    assert request_head(yarl.URL("http://example.com", encoded=True), b"example.com", {}, 0) == (
        b"POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n"
    )


@pytest.mark.parametrize("name", ["host", "Host", "HOST", "hOsT"])
def test_a_host_header_of_the_caller_suppresses_the_generated_one(name: str) -> None:
    url = yarl.URL("https://bedrock.example.com/model/m/invoke", encoded=True)
    head_bytes = request_head(url, b"generated.example.com", {name: "signed.example.com", "X-Amz-Date": "d"}, 2)
    assert b"generated.example.com" not in head_bytes
    assert head_bytes.lower().count(b"\r\nhost: ") == 1
    assert head_bytes == (b"POST /model/m/invoke HTTP/1.1\r\n"
                          + name.encode() + b": signed.example.com\r\n"
                          b"X-Amz-Date: d\r\n"
                          b"Content-Length: 2\r\n\r\n")


def test_a_signed_host_header_goes_on_the_wire_once() -> None:
    async def main() -> None:
        async with Server(serve()) as server:
            pool = pool_for(server)
            try:
                body = b"{}"
                request = request_head(yarl.URL(server.url + "/p", encoded=True), pool.host_header,
                                       {"HOST": "signed.example.com"}, len(body))
                async with Http1RequestContext(pool, request, body) as answer:
                    assert await answer.read() == b"ok"
            finally:
                pool.close()
            sent = server.requests[0][0]
            assert sent.lower().count(b"\r\nhost: ") == 1
            assert b"\r\nHOST: signed.example.com\r\n" in sent

    run(main())


@pytest.mark.parametrize("headers", [{"X-A": "v\r\nX-Injected: 1"}, {"X-A\nB": "v"}, {"X-A": "v\rx"}])
def test_header_injection_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        request_head(yarl.URL("http://example.com/", encoded=True), b"example.com", headers, 0)


def test_a_large_request_body_arrives_whole() -> None:
    async def main() -> None:
        async with Server(serve()) as server:
            pool = pool_for(server)
            body = bytes(range(256)) * 4096  # 1 MiB: above the single-buffer threshold
            try:
                assert await fetch(pool, server.url + "/big", body) == (200, b"ok")
            finally:
                pool.close()
            assert server.requests[0][1] == body

    run(main())


# -- 2. response framings -----------------------------------------------------------------------------------------


def test_content_length_body() -> None:
    async def main() -> None:
        payload = b"x" * 5000 + b"end"

        async def handler(peer: Peer) -> None:
            while await peer.request() is not None:  # the head and the body's parts in separate writes
                whole = response(payload, "Content-Type: text/plain; charset=utf-8")
                await peer.send(whole[:20], whole[20:200], whole[200:3000], whole[3000:], pause_s=0.01)

        async with Server(handler) as server:
            pool = pool_for(server)
            try:
                async with post(pool, server.url + "/a") as answer:
                    assert answer.status == 200
                    assert answer.headers["Content-Length"] == str(len(payload))
                    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
                    assert answer.content_type == "text/plain"
                    assert await answer.read() == payload
                    assert await answer.read() == b""  # at its end
            finally:
                pool.close()

    run(main())


def test_chunked_body_split_at_awkward_places() -> None:
    async def main() -> None:
        alphabet = b"abcdefghijklmnopqrstuvwxyz"
        parts = [
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5",
            b"\r\nhel",  # ... the rest of the chunk-size line, then part of the data
            b"lo\r\n1",  # the data's end, its CRLF and the start of the next size
            b"a;ext=1\r\nabcdefghijklm",  # a size in lower-case hex with an extension
            b"nopqrstuvwxyz\r",  # CRLF split
            b"\n3\r\n!!!\r\n0",
            b"\r\n",
            b"\r\n",  # the last chunk and the empty trailer
        ]

        async def handler(peer: Peer) -> None:
            while await peer.request() is not None:
                await peer.send(*parts, pause_s=0.02)

        async with Server(handler) as server:
            pool = pool_for(server)
            try:
                async with post(pool, server.url + "/stream") as answer:
                    assert answer.status == 200
                    assert "Content-Length" not in answer.headers
                    chunks = [chunk async for chunk in answer.content.iter_any()]
                    assert b"".join(chunks) == b"hello" + alphabet + b"!!!"
                    assert len(chunks) >= 4  # delivered as they came, not at the end
                # a chunked body's end leaves the connection reusable
                assert await fetch(pool, server.url + "/stream") == (200, b"hello" + alphabet + b"!!!")
            finally:
                pool.close()
            assert server.accepted == 1

    run(main())


def test_body_delimited_by_the_connection_close() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nfirst ",
                                b"second ", b"third", pause_s=0.02)
                peer.close()

        async with Server(handler) as server:
            pool = pool_for(server)
            try:
                async with post(pool, server.url) as answer:
                    assert answer.status == 200
                    assert await answer.read() == b"first second third"
                async with post(pool, server.url) as answer:  # and the next request gets a new connection
                    chunks = [chunk async for chunk in answer.content.iter_any()]
                    assert b"".join(chunks) == b"first second third"
            finally:
                pool.close()
            assert server.accepted == 2

    run(main())


def test_http10_body_delimited_by_the_connection_close() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(b"HTTP/1.0 200 OK\r\n\r\nold", b" style", pause_s=0.02)
                peer.close()

        async with Server(handler) as server:
            pool = pool_for(server)
            try:
                assert await fetch(pool, server.url) == (200, b"old style")
                assert await fetch(pool, server.url) == (200, b"old style")
            finally:
                pool.close()
            assert server.accepted == 2

    run(main())


# -- 3. streaming -------------------------------------------------------------------------------------------------


def test_iter_any_yields_each_part_as_it_arrives() -> None:
    async def main() -> None:
        got_first = asyncio.Event()
        sent_second = asyncio.Event()

        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nfirst")
                await asyncio.wait_for(got_first.wait(), 2.0)  # the client must have it before we go on
                sent_second.set()
                await peer.send(b"second")
                await peer.client_closed()

        async with Server(handler) as server:
            pool = pool_for(server)
            try:
                async with post(pool, server.url) as answer:
                    chunks: list[bytes] = []
                    async for chunk in answer.content.iter_any():
                        if not chunks:
                            assert not sent_second.is_set()
                            got_first.set()
                        chunks.append(chunk)
                    assert chunks == [b"first", b"second"]
            finally:
                pool.close()
            assert not server.errors

    run(main())


def test_streamed_chunked_events_arrive_one_by_one() -> None:
    async def main() -> None:
        events = [f"data: {{\"i\": {i}}}\n\n".encode() for i in range(5)]
        received: list[bytes] = []
        next_event = asyncio.Event()

        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for event in events:
                    next_event.clear()
                    await peer.send(b"%x\r\n%s\r\n" % (len(event), event))
                    await asyncio.wait_for(next_event.wait(), 2.0)
                await peer.send(b"0\r\n\r\n")
                await peer.client_closed()

        async with Server(handler) as server:
            pool = pool_for(server)
            try:
                async with post(pool, server.url) as answer:
                    async for chunk in answer.content.iter_any():
                        received.append(chunk)
                        next_event.set()
            finally:
                pool.close()
            assert received == events

    run(main())


def test_read_returns_the_whole_body() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            while await peer.request() is not None:
                await peer.send(b"HTTP/1.1 201 Created\r\nContent-Length: 12\r\nX-Request-Id: r1\r\n\r\nhello",
                                b" ", b"world!", pause_s=0.02)

        async with Server(handler) as server:
            pool = pool_for(server)
            try:
                async with post(pool, server.url) as answer:
                    assert answer.status == 201
                    assert answer.headers.getall("x-request-id") == ["r1"]
                    assert answer.content_type == "application/octet-stream"  # none given
                    assert await answer.read() == b"hello world!"
            finally:
                pool.close()

    run(main())


def test_empty_bodies() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            while await peer.request() is not None:
                await peer.send(b"HTTP/1.1 204 No Content\r\n\r\n" if peer.server.requests[-1][0].startswith(
                    b"POST /204") else b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

        async with Server(handler) as server:
            pool = pool_for(server)
            try:
                assert await fetch(pool, server.url + "/204") == (204, b"")
                assert await fetch(pool, server.url + "/0") == (200, b"")
                chunks: list[bytes] = []
                async with post(pool, server.url + "/204") as answer:
                    chunks += [chunk async for chunk in answer.content.iter_any()]
                assert chunks == []
            finally:
                pool.close()
            assert server.accepted == 1

    run(main())


# -- 4. content encodings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "GZIP", "deflate"])
def test_compressed_bodies_are_decoded(encoding: str) -> None:
    async def main() -> None:
        text = b"".join(b'data: {"token": %d, "text": "lorem ipsum dolor"}\n\n' % i for i in range(500))
        packed = zlib.compress(text) if encoding == "deflate" else gzip.compress(text)

        async def handler(peer: Peer) -> None:
            while await peer.request() is not None:
                path = peer.server.requests[-1][0].split(b" ")[1]
                if path == b"/chunked":
                    third = len(packed) // 3
                    pieces = [packed[:third], packed[third:2 * third], packed[2 * third:]]
                    await peer.send(f"HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\n"
                                    "Transfer-Encoding: chunked\r\n\r\n".encode(),
                                    *[b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces], b"0\r\n\r\n",
                                    pause_s=0.01)
                else:
                    whole = response(packed, f"Content-Encoding: {encoding}")
                    await peer.send(whole[:60], whole[60:], pause_s=0.01)

        async with Server(handler) as server:
            pool = pool_for(server)
            try:
                assert await fetch(pool, server.url + "/whole") == (200, text)
                async with post(pool, server.url + "/chunked") as answer:
                    assert answer.headers["Content-Encoding"] == encoding
                    assert b"".join([chunk async for chunk in answer.content.iter_any()]) == text
                assert await fetch(pool, server.url + "/whole") == (200, text)
            finally:
                pool.close()
            assert server.accepted == 1

    run(main())


def test_identity_and_unknown_encodings_pass_through() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            while await peer.request() is not None:
                encoding = "br" if peer.server.requests[-1][0].startswith(b"POST /br") else "identity"
                await peer.send(response(b"\x8b\x00raw", f"Content-Encoding: {encoding}"))

        async with Server(handler) as server:
            pool = pool_for(server)
            try:
                assert await fetch(pool, server.url + "/identity") == (200, b"\x8b\x00raw")
                assert await fetch(pool, server.url + "/br") == (200, b"\x8b\x00raw")
            finally:
                pool.close()

    run(main())


def test_a_corrupt_gzip_body_raises() -> None:
    async def main() -> None:
        async with Server(serve(b"definitely not gzip", "Content-Encoding: gzip")) as server:
            pool = pool_for(server)
            try:
                with pytest.raises(aiohttp.ClientError):
                    await fetch(pool, server.url)
            finally:
                pool.close()

    run(main())


# -- 5. keep-alive ------------------------------------------------------------------------------------------------


def test_sequential_requests_share_one_connection() -> None:
    async def main() -> None:
        async with Server(serve(b"pong")) as server:
            pool = pool_for(server)
            try:
                for i in range(5):
                    assert await fetch(pool, f"{server.url}/ping/{i}", b"%d" % i) == (200, b"pong")
            finally:
                pool.close()
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
            pool = pool_for(server)
            try:
                for _ in range(3):
                    assert await fetch(pool, server.url) == (200, b"bye")
            finally:
                pool.close()
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
            pool = pool_for(server)
            try:
                assert await fetch(pool, server.url) == (200, b"ok")
                assert await fetch(pool, server.url) == (200, b"ok")
            finally:
                pool.close()
            assert server.accepted == 2

    run(main())


def test_idle_connections_expire_after_keepalive() -> None:
    async def main() -> None:
        async with Server(serve()) as server:
            pool = pool_for(server, keepalive_s=0.2)
            try:
                assert await fetch(pool, server.url) == (200, b"ok")
                assert await fetch(pool, server.url) == (200, b"ok")
                assert server.accepted == 1
                await asyncio.sleep(0.3)
                assert await fetch(pool, server.url) == (200, b"ok")
            finally:
                pool.close()
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
            pool = pool_for(server)
            try:
                assert await fetch(pool, server.url) == (200, b"once")
                await asyncio.sleep(0.1)  # the close arrives while the connection idles
                assert await fetch(pool, server.url) == (200, b"once")
            finally:
                pool.close()
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
            pool = pool_for(server)
            try:
                assert await fetch(pool, server.url, b"1") == (200, b"fresh")
                assert await fetch(pool, server.url, b"2") == (200, b"fresh")  # retried on a new connection
                assert await fetch(pool, server.url, b"3") == (200, b"fresh")  # which is kept
            finally:
                pool.close()
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
            pool = pool_for(server)
            try:
                assert await fetch(pool, server.url) == (200, b"first")
                with pytest.raises(UpstreamClosed) as caught:
                    await fetch(pool, server.url)
                assert isinstance(caught.value, aiohttp.ClientConnectionError)
            finally:
                pool.close()
            assert server.accepted == 2  # the reused connection and one retry: no more

    run(main())


def test_a_new_connection_closed_before_any_answer_is_not_retried() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            await peer.request()
            peer.close()

        async with Server(handler) as server:
            pool = pool_for(server)
            try:
                with pytest.raises(UpstreamClosed):
                    await fetch(pool, server.url)
            finally:
                pool.close()
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
            pool = pool_for(server)
            try:
                assert await fetch(pool, server.url) == (200, b"ok")
                with pytest.raises(aiohttp.ClientConnectionError) as caught:
                    await fetch(pool, server.url)
                assert isinstance(caught.value, UpstreamClosed)
            finally:
                pool.close()
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
            pool = pool_for(server)
            received = b""
            try:
                async with post(pool, server.url) as answer:
                    with pytest.raises(aiohttp.ClientConnectionError):
                        async for chunk in answer.content.iter_any():
                            received += chunk
            finally:
                pool.close()
            assert received == b"abcdef"

    run(main())


# -- 7. timeouts --------------------------------------------------------------------------------------------------


def test_read_timeout_without_any_answer() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            await peer.request()
            await peer.client_closed()  # never answers

        async with Server(handler) as server:
            pool = pool_for(server, read_timeout_s=0.4)  # swept every 0.1 s
            started = time.monotonic()
            try:
                with pytest.raises(UpstreamReadTimeout) as caught:
                    await fetch(pool, server.url)
            finally:
                pool.close()
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
            pool = pool_for(server, read_timeout_s=0.4)
            received: list[bytes] = []
            try:
                async with post(pool, server.url) as answer:
                    started = time.monotonic()
                    with pytest.raises(UpstreamReadTimeout):
                        async for chunk in answer.content.iter_any():
                            received.append(chunk)
                    elapsed = time.monotonic() - started
                with pytest.raises(UpstreamReadTimeout):  # the error stays
                    await answer.read()
            finally:
                pool.close()
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
            pool = pool_for(server, read_timeout_s=0.3)  # the whole stream takes ~0.9 s, no gap 0.3 s
            try:
                assert await fetch(pool, server.url) == (200, b"01234567")
            finally:
                pool.close()

    run(main())


def test_total_timeout_before_the_headers() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            await peer.request()
            await peer.client_closed()

        async with Server(handler) as server:
            pool = pool_for(server, read_timeout_s=3.0, total_timeout_s=0.3)
            started = time.monotonic()
            try:
                with pytest.raises(TimeoutError):
                    await fetch(pool, server.url)
            finally:
                pool.close()
            assert time.monotonic() - started < 1.0

    run(main())


def test_total_timeout_covers_the_streamed_body() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                *[b"1\r\nx\r\n" for _ in range(15)], b"0\r\n\r\n", pause_s=0.1)

        async with Server(handler) as server:
            pool = pool_for(server, read_timeout_s=3.0, total_timeout_s=0.4)
            started = time.monotonic()
            try:
                with pytest.raises(TimeoutError):
                    await fetch(pool, server.url)  # the stream lasts ~1.5 s
            finally:
                pool.close()
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
            pool = pool_for(server, limit=1)
            try:
                results = await asyncio.gather(*[fetch(pool, server.url, b"%d" % i) for i in range(3)])
            finally:
                pool.close()
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
            pool = pool_for(server, limit=1)
            try:
                results = await asyncio.gather(*[fetch(pool, server.url) for _ in range(3)])
            finally:
                pool.close()
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
            pool = pool_for(server, limit=2)
            try:
                results = await asyncio.gather(*[fetch(pool, server.url) for _ in range(6)])
            finally:
                pool.close()
            assert results == [(200, b"abcd")] * 6
            assert server.accepted == 2
            assert server.max_open == 2

    run(main())


def test_a_cancelled_waiter_does_not_swallow_the_free_connection() -> None:
    async def main() -> None:
        async with Server(serve()) as server:
            pool = pool_for(server, limit=1)
            url = server.url
            try:
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
            finally:
                pool.close()

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
            pool = pool_for(server, limit=1)
            try:
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
            finally:
                pool.close()
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
            pool = pool_for(server)
            try:
                assert await fetch(pool, server.url + "/small") == (200, b"small")  # read whole: kept
                assert await fetch(pool, server.url + "/small") == (200, b"small")
                assert server.accepted == 1
                async with post(pool, server.url + "/big") as answer:  # released with the body unread
                    assert answer.status == 200
                    assert await answer.content.iter_any().__anext__() == b"x" * 1000
                await asyncio.wait_for(closed.wait(), 1.0)  # the client closed that connection
                assert await fetch(pool, server.url + "/small") == (200, b"small")
                assert await fetch(pool, server.url + "/small") == (200, b"small")
            finally:
                pool.close()
            assert server.accepted == 2

    run(main())


def test_release_without_reading_a_complete_body_is_not_reused() -> None:
    async def main() -> None:
        async with Server(serve(b"unread")) as server:
            pool = pool_for(server)
            try:
                async with post(pool, server.url) as answer:
                    assert answer.status == 200
                    await asyncio.sleep(0.05)  # the body is in, but nobody read it
                assert await fetch(pool, server.url) == (200, b"unread")
                assert await fetch(pool, server.url) == (200, b"unread")
            finally:
                pool.close()
            assert server.accepted == 2

    run(main())


def test_release_after_an_error_status_body_is_read_keeps_the_connection() -> None:
    async def main() -> None:
        async with _status_server() as server:
            pool = pool_for(server)
            try:
                for _ in range(3):
                    async with post(pool, server.url) as answer:
                        assert answer.status == 429
                        assert answer.headers["Retry-After"] == "1"
                        assert await answer.read() == b'{"error":"rate limited"}'
            finally:
                pool.close()
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
            pool = pool_for(server, read_timeout_s=0.3)  # a client that stalls is not the upstream's silence
            received = bytearray()
            try:
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
            finally:
                pool.close()

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
            pool = pool_for(server)
            received = bytearray()
            try:
                async with post(pool, server.url) as answer:
                    async for chunk in answer.content.iter_any():
                        received += chunk
                        await asyncio.sleep(0)
            finally:
                pool.close()
            assert bytes(received) == text

    run(main())


# -- 12. invalid HTTP ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("garbage", [
    b"HELLO WORLD\r\n\r\n",
    b"HTTP/1.1 abc OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header Without Colon\r\n\r\n",
    b"\x00\x01\x02\x03\r\n\r\n",
])
def test_invalid_http_before_the_body_raises(garbage: bytes) -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(garbage)
                await peer.client_closed()

        async with Server(handler) as server:
            pool = pool_for(server)
            try:
                with pytest.raises(aiohttp.ClientError):
                    await asyncio.wait_for(fetch(pool, server.url), 2.0)
            finally:
                pool.close()

    run(main())


def test_invalid_chunk_framing_mid_body_raises() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
                                b"zz\r\nnot a chunk\r\n", pause_s=0.02)
                await peer.client_closed()

        async with Server(handler) as server:
            pool = pool_for(server)
            received = b""
            try:
                async with post(pool, server.url) as answer:
                    with pytest.raises(aiohttp.ClientError):
                        async for chunk in answer.content.iter_any():
                            received += chunk
            finally:
                pool.close()
            assert received == b"abc"

    run(main())


def test_a_protocol_switch_is_refused() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                b"Connection: Upgrade\r\n\r\n")
                await peer.client_closed()

        async with Server(handler) as server:
            pool = pool_for(server)
            try:
                with pytest.raises(aiohttp.ClientError):
                    await asyncio.wait_for(fetch(pool, server.url), 2.0)
            finally:
                pool.close()

    run(main())


def test_an_interim_1xx_answer_is_skipped() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            while await peer.request() is not None:
                await peer.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                                + response(b"final"))

        async with Server(handler) as server:
            pool = pool_for(server)
            try:
                assert await asyncio.wait_for(fetch(pool, server.url), 2.0) == (200, b"final")
            finally:
                pool.close()

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
