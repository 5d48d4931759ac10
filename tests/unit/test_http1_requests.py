"""The HTTP/1.1 upstream client (`pipeline/http1.py`) against raw-socket servers: the exact request bytes,
response framings (Content-Length, chunked, connection close), streaming, and gzip/deflate."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from typing import Any, cast

import aiohttp
import pytest
import yarl

from tests.support.http1_server import (
    FakeProvider,
    Peer,
    Server,
    fetch,
    head,
    pool_for,
    post,
    response,
    run,
    serve,
)
from yourouter.pipeline.http1 import (
    Http1Pool,
    Http1RequestContext,
    request_head,
)
from yourouter.pipeline.upstream import UpstreamPool

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


def test_the_pool_reuses_a_fixed_providers_head_and_rebuilds_any_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """The head up to Content-Length is cached per URL for a provider whose headers are one fixed dict; extra
    headers, or a provider that returns a new dict per request (SigV4 signing), get a head built for the call."""
    from yourouter.pipeline import upstream as upstream_module

    built: list[dict[str, str]] = []
    real = upstream_module.head_without_length

    def counting(url: yarl.URL, host: bytes, headers: dict[str, str]) -> bytes:
        built.append(headers)
        return real(url, host, headers)

    monkeypatch.setattr(upstream_module, "head_without_length", counting)
    url = "http://up.example:8080/v1/chat"
    parsed = yarl.URL(url, encoded=True)

    async def main() -> None:
        fixed_headers = {"Authorization": "Bearer sk-1"}
        fixed = FakeProvider()
        fixed.headers = lambda u, b: fixed_headers  # type: ignore[method-assign]
        upstream = UpstreamPool([cast(Any, fixed)])
        try:
            for body in (b"{}", b'{"a":1}', b'{"a":1}'):
                context = upstream.post(cast(Any, fixed), url, body)
                assert context._head == request_head(parsed, b"up.example:8080", fixed_headers, len(body))
            assert built == [fixed_headers]  # built once, for the first request
            extra = upstream.post(cast(Any, fixed), url, b"{}", {"X-Extra": "1"})
            assert extra._head.endswith(b"Authorization: Bearer sk-1\r\nX-Extra: 1\r\nContent-Length: 2\r\n\r\n")
            assert b"X-Extra" not in upstream.post(cast(Any, fixed), url, b"{}")._head
            signing = FakeProvider(name="signing")
            signatures = iter(["sig-1", "sig-2", "sig-3"])
            signing.headers = lambda u, b: {"Authorization": next(signatures)}  # type: ignore[method-assign]
            heads = [upstream.post(cast(Any, signing), url, b"{}")._head for _ in range(3)]
            assert [h.count(b"Authorization: sig-%d\r\n" % (i + 1)) for i, h in enumerate(heads)] == [1, 1, 1]
        finally:
            await upstream.close()

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
            with pool_for(server) as pool:
                body = b"{}"
                request = request_head(yarl.URL(server.url + "/p", encoded=True), pool.host_header,
                                       {"HOST": "signed.example.com"}, len(body))
                async with Http1RequestContext(pool, request, body) as answer:
                    assert await answer.read() == b"ok"
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
            with pool_for(server) as pool:
                body = bytes(range(256)) * 4096  # 1 MiB: above the single-buffer threshold
                assert await fetch(pool, server.url + "/big", body) == (200, b"ok")
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
            with pool_for(server) as pool:
                async with post(pool, server.url + "/a") as answer:
                    assert answer.status == 200
                    assert answer.headers["Content-Length"] == str(len(payload))
                    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
                    assert answer.content_type == "text/plain"
                    assert await answer.read() == payload
                    assert await answer.read() == b""  # at its end

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
            with pool_for(server) as pool:
                async with post(pool, server.url + "/stream") as answer:
                    assert answer.status == 200
                    assert "Content-Length" not in answer.headers
                    chunks = [chunk async for chunk in answer.content.iter_any()]
                    assert b"".join(chunks) == b"hello" + alphabet + b"!!!"
                    assert len(chunks) >= 4  # delivered as they came, not at the end
                # a chunked body's end leaves the connection reusable
                assert await fetch(pool, server.url + "/stream") == (200, b"hello" + alphabet + b"!!!")
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
            with pool_for(server) as pool:
                async with post(pool, server.url) as answer:
                    assert answer.status == 200
                    assert await answer.read() == b"first second third"
                async with post(pool, server.url) as answer:  # and the next request gets a new connection
                    chunks = [chunk async for chunk in answer.content.iter_any()]
                    assert b"".join(chunks) == b"first second third"
            assert server.accepted == 2

    run(main())


def test_http10_body_delimited_by_the_connection_close() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            if await peer.request() is not None:
                await peer.send(b"HTTP/1.0 200 OK\r\n\r\nold", b" style", pause_s=0.02)
                peer.close()

        async with Server(handler) as server:
            with pool_for(server) as pool:
                assert await fetch(pool, server.url) == (200, b"old style")
                assert await fetch(pool, server.url) == (200, b"old style")
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
            with pool_for(server) as pool:
                async with post(pool, server.url) as answer:
                    chunks: list[bytes] = []
                    async for chunk in answer.content.iter_any():
                        if not chunks:
                            assert not sent_second.is_set()
                            got_first.set()
                        chunks.append(chunk)
                    assert chunks == [b"first", b"second"]
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
            with pool_for(server) as pool:
                async with post(pool, server.url) as answer:
                    async for chunk in answer.content.iter_any():
                        received.append(chunk)
                        next_event.set()
            assert received == events

    run(main())


def test_read_returns_the_whole_body() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            while await peer.request() is not None:
                await peer.send(b"HTTP/1.1 201 Created\r\nContent-Length: 12\r\nX-Request-Id: r1\r\n\r\nhello",
                                b" ", b"world!", pause_s=0.02)

        async with Server(handler) as server:
            with pool_for(server) as pool:
                async with post(pool, server.url) as answer:
                    assert answer.status == 201
                    assert answer.headers.getall("x-request-id") == ["r1"]
                    assert answer.content_type == "application/octet-stream"  # none given
                    assert await answer.read() == b"hello world!"

    run(main())


def test_empty_bodies() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            while await peer.request() is not None:
                await peer.send(b"HTTP/1.1 204 No Content\r\n\r\n" if peer.server.requests[-1][0].startswith(
                    b"POST /204") else b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

        async with Server(handler) as server:
            with pool_for(server) as pool:
                assert await fetch(pool, server.url + "/204") == (204, b"")
                assert await fetch(pool, server.url + "/0") == (200, b"")
                chunks: list[bytes] = []
                async with post(pool, server.url + "/204") as answer:
                    chunks += [chunk async for chunk in answer.content.iter_any()]
                assert chunks == []
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
            with pool_for(server) as pool:
                assert await fetch(pool, server.url + "/whole") == (200, text)
                async with post(pool, server.url + "/chunked") as answer:
                    assert answer.headers["Content-Encoding"] == encoding
                    assert b"".join([chunk async for chunk in answer.content.iter_any()]) == text
                assert await fetch(pool, server.url + "/whole") == (200, text)
            assert server.accepted == 1

    run(main())


def test_identity_and_unknown_encodings_pass_through() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            while await peer.request() is not None:
                encoding = "br" if peer.server.requests[-1][0].startswith(b"POST /br") else "identity"
                await peer.send(response(b"\x8b\x00raw", f"Content-Encoding: {encoding}"))

        async with Server(handler) as server:
            with pool_for(server) as pool:
                assert await fetch(pool, server.url + "/identity") == (200, b"\x8b\x00raw")
                assert await fetch(pool, server.url + "/br") == (200, b"\x8b\x00raw")

    run(main())


def test_a_corrupt_gzip_body_raises() -> None:
    async def main() -> None:
        async with Server(serve(b"definitely not gzip", "Content-Encoding: gzip")) as server:
            with pool_for(server) as pool:
                with pytest.raises(aiohttp.ClientError):
                    await fetch(pool, server.url)

    run(main())
