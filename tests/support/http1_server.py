"""A raw-socket HTTP/1.1 server on 127.0.0.1 and the helpers the `pipeline/http1.py` tests share."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
import yarl

from yourouter.pipeline.http1 import (
    Http1Pool,
    Http1RequestContext,
    request_head,
)

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


@contextmanager
def pool_for(server: Server, **options: Any) -> Iterator[Http1Pool]:
    """A pool to `server`, closed on the way out (inside a running loop)."""
    options.setdefault("connect_timeout_s", 2.0)
    options.setdefault("read_timeout_s", 3.0)
    pool = Http1Pool(yarl.URL(server.url), **options)
    try:
        yield pool
    finally:
        pool.close()


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


async def read_until_error(pool: Http1Pool, url: str, error: type[BaseException]) -> bytes:
    """Streams the answer with `iter_any` until it raises `error` (it must); returns the parts that came first."""
    received = b""
    async with post(pool, url) as answer:
        with pytest.raises(error):
            async for chunk in answer.content.iter_any():
                received += chunk
    return received
