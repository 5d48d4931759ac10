"""The upstream HTTP/1.1 client of the request path: keep-alive connections on `asyncio.Protocol` + httptools.

Why not aiohttp here (it stays for everything off the hot path: video task polls, search engines, image fetches):
counted with callgrind (bench/instructions.py), the shared harness's floor proxy takes ~512k instructions per
proxied request with aiohttp's client and ~164k with a minimal protocol client like this one; aiohttp's request
and response objects, its writer task, timer contexts and header machinery were ~a third of the gateway's own cost
per request. This client does what the pipeline needs and no more: one POST per connection at a time (no
pipelining), bodies sent in one write, the response parsed by httptools (llhttp, the parser uvicorn uses),
chunked bodies de-chunked, gzip/deflate bodies decoded, a pool of idle connections per deployment (LIFO, dropped
after `keepalive_s` idle), an optional cap on open connections, TLS through the event loop.

Its response has the part of `aiohttp.ClientResponse`'s interface that `pipeline/core.py` and `pipeline/relay.py`
use (`status`, `headers`, `content_type`, `read()`, `content.iter_any()`), and its errors are
`aiohttp.ClientConnectionError`s, so failover and mid-stream handling are unchanged. Timeouts: connecting
(`connect_timeout_s`), the first byte (the pipeline's `RequestGuard`), the longest silence from the upstream once
the request is written (`read_timeout_s`, checked by one timer per pool, not per request, every min(1 s, a quarter
of the timeout)) and, when set, the whole request (`total_timeout_s`). A request on a reused connection that the
upstream had closed meanwhile (no byte of an answer came back) is retried once on a new connection.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httptools
import yarl
from multidict import CIMultiDict, CIMultiDictProxy

_BUFFER_HIGH = 256 * 1024  # pause reading the upstream when this much body waits for the client


class UpstreamClosed(aiohttp.ServerDisconnectedError):
    """The upstream closed the connection before its answer was complete."""


class UpstreamUnreachable(aiohttp.ClientConnectionError):
    """No connection could be made to the upstream."""


class UpstreamReadTimeout(aiohttp.ClientConnectionError, TimeoutError):
    """The upstream went silent for longer than the read timeout (or the request outlived its total timeout)."""


#: What `Http1Response.forward`'s callback returns: None when it is done with the piece, or an awaitable that
#: finishes the piece's delivery (the client's socket was full).
Delivery = Callable[[bytes], Awaitable[None] | None]


class Http1Response:
    __slots__ = ("status", "headers", "_conn", "_loop", "_chunks", "_size", "_done", "_error", "_waiter", "_decoder",
                 "_deliver", "_forwarding")

    def __init__(self, conn: _Connection, status: int, headers: CIMultiDictProxy[str]) -> None:
        self._conn: _Connection | None = conn
        # the connection's loop, not asyncio.get_running_loop() per read: that checks os.getpid(), a system call
        self._loop = conn._loop
        self.status = status
        self.headers = headers
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._deliver: Delivery | None = None
        self._forwarding: asyncio.Future[Awaitable[None] | None] | None = None
        encoding = headers.get("Content-Encoding", "").lower()
        self._decoder = (zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding in ("gzip", "x-gzip")
                         else zlib.decompressobj() if encoding == "deflate" else None)

    @property
    def content(self) -> Http1Response:
        """`response.content.iter_any()`, as aiohttp spells it (the response itself: no object pointing back)."""
        return self

    async def iter_any(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        while True:
            chunk = await self.next_chunk()
            if not chunk:
                return
            yield chunk

    @property
    def content_type(self) -> str:
        raw = self.headers.get("Content-Type")
        return raw.split(";", 1)[0].strip().lower() if raw else "application/octet-stream"

    async def read(self) -> bytes:
        parts: list[bytes] = []
        while True:
            chunk = await self.next_chunk()
            if not chunk:
                return b"".join(parts) if len(parts) != 1 else parts[0]
            parts.append(chunk)

    async def next_chunk(self) -> bytes:
        """The next piece of the body; b"" at its end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._size -= len(chunk)
        if self._conn is not None and self._size < _BUFFER_HIGH:
            self._conn.resume()
        return chunk

    def forward(self, deliver: Delivery) -> asyncio.Future[Awaitable[None] | None]:
        """Hands every piece of the body to `deliver` as soon as it is read, inside the connection's read callback:
        no future, task wake-up or resumed await chain per piece (the read path of a stream's every event). The
        future this returns ends the forwarding: None at the body's end; the awaitable `deliver` returned when it
        could not finish a piece at once (await it, then call `forward` again: pieces read meanwhile wait, and the
        upstream is paused when they grow large); or the body's error, or `deliver`'s. `stop_forwarding` ends it
        early (the caller was cancelled)."""
        waiter: asyncio.Future[Awaitable[None] | None] = self._loop.create_future()
        self._deliver, self._forwarding = deliver, waiter
        while self._chunks and self._forwarding is waiter:  # read while no one forwarded
            chunk = self._chunks.popleft()
            self._size -= len(chunk)
            self._take(chunk)
        if self._forwarding is waiter:
            if self._conn is not None:
                self._conn.resume()
            if self._error is not None or self._done:
                self._forwarded(error=self._error)
        return waiter

    def stop_forwarding(self) -> None:
        self._deliver = self._forwarding = None

    def _forwarded(self, result: Awaitable[None] | None = None, error: BaseException | None = None) -> None:
        waiter = self._forwarding
        self._deliver = self._forwarding = None
        if waiter is not None and not waiter.done():
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(result)

    def release(self) -> None:
        """Done with the response: its connection goes back to the pool when the body was read to the end."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.finished(reusable=self._done and self._error is None and not self._chunks)

    # called by the connection
    def _feed(self, data: bytes) -> None:
        if self._decoder is not None:
            data = self._decoder.decompress(data)
            if not data:
                return
        self._take(data)

    def _take(self, data: bytes) -> None:
        """A decoded piece of the body: handed to `forward`'s `deliver` when someone forwards (forwarding ends when
        it raises or cannot finish the piece at once), else kept for `next_chunk`."""
        deliver = self._deliver
        if deliver is not None:
            try:
                pending = deliver(data)
            except Exception as exc:
                self._forwarded(error=exc)
                return
            if pending is not None:
                self._forwarded(pending)
            return
        self._chunks.append(data)
        self._size += len(data)
        if self._size >= _BUFFER_HIGH and self._conn is not None:
            self._conn.pause()
        self._wake()

    def _end(self, error: BaseException | None = None) -> None:
        if error is None and self._decoder is not None:
            rest = self._decoder.flush()
            if rest:
                self._take(rest)
        self._done = True
        self._error = error
        if self._forwarding is not None:
            self._forwarded(error=error)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, pool: Http1Pool) -> None:
        self._pool = pool
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        # made when connected, dropped when the connection ends: the parser points back at this protocol, and a
        # cycle per connection would wait for the cyclic GC (every refused connect made one)
        self._parser: httptools.HttpResponseParser | None = None
        self._headers: list[tuple[str, str]] = []
        self._answer: asyncio.Future[Http1Response] | None = None
        self._response: Http1Response | None = None
        self._got_bytes = False
        self._keep_alive = True
        self._interim = False
        self._paused = False
        self._last_data = 0.0
        self.deadline: float | None = None  # the request's total timeout, when the deployment sets one
        self.idle_since = 0.0
        self.reused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._parser = httptools.HttpResponseParser(self)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            return
        self._got_bytes = True
        self._last_data = self._loop.time()
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamClosed("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(aiohttp.ClientPayloadError(f"invalid HTTP from the upstream: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._pool.forget(self)
        response = self._response
        if response is not None and not response._done and "Content-Length" not in response.headers \
                and "chunked" not in response.headers.get("Transfer-Encoding", "").lower():
            self.on_message_complete()  # a body delimited by the connection's end (HTTP/1.0 style) ends here
        self._fail(UpstreamClosed("the upstream closed the connection"))
        self._parser = None

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        if status < 200:
            self._headers = []
            if status == 101:  # never asked for: this connection no longer speaks HTTP/1.1 to us
                self._fail(UpstreamClosed("the upstream switched protocols"))
                self.abort()
            else:  # an interim answer (103 Early Hints, 100 Continue): the real one follows (RFC 9110 15.2)
                self._interim = True
            return
        self._keep_alive = parser.should_keep_alive()
        headers = CIMultiDictProxy(CIMultiDict(self._headers))
        self._headers = []
        response = self._response = Http1Response(self, status, headers)
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self._response is not None:
            self._response._feed(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._pool.idle_now(self)
        response = self._response
        if response is not None:
            response._end()

    # used by the pool and the response
    def send(self, payload: bytes, deadline: float | None) -> asyncio.Future[Http1Response]:
        assert self.transport is not None
        self._answer = answer = self._loop.create_future()
        self._response = None
        self._got_bytes = False
        self._last_data = self._loop.time()
        self.deadline = deadline
        self._pool.busy_now(self)
        self.transport.write(payload)
        return answer

    def silent_for(self, now: float) -> float:
        return 0.0 if self._paused else now - self._last_data  # paused by us (a slow client): not its silence

    def timed_out(self, why: str) -> None:
        self._fail(UpstreamReadTimeout(why))
        self.abort()

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self._last_data = self._loop.time()
            self.transport.resume_reading()

    def finished(self, reusable: bool) -> None:
        self._response = None
        if reusable and self._keep_alive and self.transport is not None and not self.transport.is_closing():
            self.resume()
            self._pool.put_back(self)
        else:
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        self._pool.forget(self)

    def _fail(self, error: BaseException) -> None:
        self._pool.idle_now(self)
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(error)
        if self._response is not None and not self._response._done:
            self._response._end(error)

    @property
    def answered_nothing(self) -> bool:
        return not self._got_bytes


class Http1Pool:
    """Connections to one upstream origin (scheme, host, port)."""

    def __init__(self, url: yarl.URL, *, limit: int = 0, connect_timeout_s: float | None = 10.0,
                 read_timeout_s: float | None = 600.0, total_timeout_s: float | None = None,
                 keepalive_s: float = 60.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self._host = url.raw_host or ""
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = None
        if url.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        default = (url.scheme == "https" and self._port == 443) or (url.scheme == "http" and self._port == 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self.host_header = (host if default else f"{host}:{self._port}").encode("idna")
        self._limit = limit
        self._connect_timeout = connect_timeout_s
        self._read_timeout = read_timeout_s
        self._total_timeout = total_timeout_s
        self._keepalive = keepalive_s
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        # connections waiting for (more of) an answer, checked for silence by one timer per pool
        self._busy: set[_Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        timeouts = [t for t in (read_timeout_s, total_timeout_s) if t is not None]
        self._sweep_every = min([1.0, *(t / 4 for t in timeouts)]) if timeouts else None

    def busy_now(self, conn: _Connection) -> None:
        self._busy.add(conn)
        if self._sweeper is None and self._sweep_every is not None:
            self._sweeper = self.loop.call_later(self._sweep_every, self._sweep)

    def idle_now(self, conn: _Connection) -> None:
        self._busy.discard(conn)

    def _sweep(self) -> None:
        """The read timeout: the longest silence while an answer is awaited or read (from the request's write)."""
        self._sweeper = None
        assert self._sweep_every is not None
        now = self.loop.time()
        silence = self._read_timeout
        for conn in list(self._busy):
            if silence is not None and conn.silent_for(now) >= silence:
                conn.timed_out(f"no data from the upstream for {silence:g} s")
            elif conn.deadline is not None and now >= conn.deadline:
                conn.timed_out(f"the request took longer than its total timeout ({self._total_timeout:g} s)")
        if self._busy:
            self._sweeper = self.loop.call_later(self._sweep_every, self._sweep)

    async def request(self, head: bytes, body: bytes) -> Http1Response:
        """Sends `head` (request line and headers, ending in the blank line) and `body`; returns once the response
        headers are in. The caller must `release()` the response."""
        payload = head + body
        if self._total_timeout is None:
            return await self._request(payload, None)
        deadline = self.loop.time() + self._total_timeout  # the body too: the sweeper enforces it
        async with asyncio.timeout_at(deadline):  # waiting for a connection and connecting
            return await self._request(payload, deadline)

    async def _request(self, payload: bytes, deadline: float | None) -> Http1Response:
        conn = await self._acquire()
        try:
            response = await conn.send(payload, deadline)
        except UpstreamClosed:
            if not (conn.reused and conn.answered_nothing):
                raise
            conn = await self._acquire(fresh=True)  # the upstream had closed an idle connection: once more
            try:
                response = await conn.send(payload, deadline)
            except BaseException:
                conn.abort()
                raise
        except BaseException:
            conn.abort()
            raise
        return response

    async def _acquire(self, fresh: bool = False) -> _Connection:
        now = self.loop.time()
        while self._idle and not fresh:
            conn = self._idle.pop()
            if conn.transport is not None and not conn.transport.is_closing() \
                    and now - conn.idle_since < self._keepalive:
                conn.reused = True
                return conn
            conn.abort()
        while self._limit and len(self._open) >= self._limit:
            if fresh and self._idle:  # a retry that must not reuse: make room by closing an idle connection
                self._idle.pop().abort()
                continue
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: pass the free connection on
                raise
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            if self._idle and not fresh:
                return await self._acquire()
        return await self._connect()

    async def _connect(self) -> _Connection:
        conn = _Connection(self)
        self._open.add(conn)
        try:
            async with asyncio.timeout(self._connect_timeout):
                await self.loop.create_connection(lambda: conn, self._host, self._port, ssl=self._ssl,
                                                  server_hostname=self._host if self._ssl else None)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self.forget(conn)
            raise UpstreamUnreachable(f"cannot connect to {self._host}:{self._port}: {exc!r}") from exc
        except BaseException:
            self.forget(conn)
            raise
        return conn

    def put_back(self, conn: _Connection) -> None:
        conn.idle_since = self.loop.time()
        self._idle.append(conn)
        self._wake_one()

    def forget(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        if conn in self._open:
            self._open.discard(conn)
            self._wake_one()
        if conn in self._idle:
            self._idle.remove(conn)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for conn in list(self._open):
            conn.abort()
        self._idle.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


class Http1RequestContext:
    """`async with pool.post(...) as response` / `__aenter__` + `__aexit__`, as aiohttp's request manager."""

    __slots__ = ("_pool", "_head", "_body", "_response")

    def __init__(self, pool: Http1Pool, head: bytes, body: bytes) -> None:
        self._pool = pool
        self._head = head
        self._body = body
        self._response: Http1Response | None = None

    async def __aenter__(self) -> Http1Response:
        self._response = await self._pool.request(self._head, self._body)
        return self._response

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._response is not None:
            self._response.release()
            self._response = None


def request_head(url: yarl.URL, host_header: bytes, headers: dict[str, str], body_length: int) -> bytes:
    """`POST <path?query> HTTP/1.1` and the headers, ending with the blank line."""
    return head_without_length(url, host_header, headers) + content_length(body_length)


def content_length(body_length: int) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % body_length


def head_without_length(url: yarl.URL, host_header: bytes, headers: dict[str, str]) -> bytes:
    """The request line and headers up to (not including) Content-Length and the blank line: the part the
    upstream pool caches per URL for providers whose headers are fixed."""
    target = url.raw_path_qs or "/"
    lines = [b"POST ", target.encode("latin-1"), b" HTTP/1.1\r\n"]
    if not any(name.lower() == "host" for name in headers):  # a signed request (SigV4) carries its own
        lines += [b"Host: ", host_header, b"\r\n"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"invalid upstream header {name!r}")
        lines += [name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n"]
    return b"".join(lines)
