"""A small asyncio RESP2 client for the limits hot path: EVALSHA and a few plain commands, pipelined over one
connection.

Why not redis-py here: every limited request makes two script calls (ADMIT on the request path, SETTLE after the
response), and through redis-py's `AsyncScript.__call__` each cost ~125 µs of gateway CPU (bench/LIMITS.md, "Where
the time goes"): a `BlockingConnectionPool` checkout and release (an `asyncio.Condition` and a timeout each),
`pack_command` encoding ~20 arguments one by one, `asyncio.wait_for` around every send because `socket_timeout` is
set (a Task per command on Python 3.11), `parse_response`, and redis-py 8's observability hooks. With it the limit
engine took 2.2-2.35x the gateway CPU of an unlimited request, against ~1.3x in process. Measured side by side
(bench/limits_micro.py, the pipeline's admission cycle at 10 in flight, 5 runs on a shared machine): 260-370 µs
of CPU per admit + settle through redis-py, 49-115 µs through this client (3.2-5.8x less, 2.4-4.8x the
throughput); a PING 16-17 µs instead of 72-81 µs.

* one connection per client, opened lazily on first use, reopened after it drops; many concurrent callers share
  it: requests are written back to back and Redis answers in order, so a FIFO of futures pairs replies with
  callers (no pool, no lock);
* commands are encoded straight to bytes (`bulk`, `command`); callers cache the encoded arguments that repeat
  (key names, the EVALSHA head);
* writes are buffered and flushed once per event-loop iteration (`call_soon`), so concurrent calls (settlements
  finishing together) go out in one syscall (at 10 in flight 32-36 µs of CPU per cycle, against 44-66 µs
  writing each command at once; the same at 1 in flight);
* replies are parsed by hiredis when it is importable (redis-py's own `hiredis` extra), else by a small
  incremental pure-Python parser with the same output;
* one timeout per call without a Task or a timer per call: every call records its deadline, and one watchdog
  timer per connection, armed at the oldest pending deadline, fails every pending call and drops the connection
  when the oldest is overdue (replies come in order: if the oldest has none, none of the later ones can); a
  timer per call (`call_later` + cancel) cost 10-20 % more CPU at 10 in flight;
* EVALSHA with NOSCRIPT handling (`Script`): after a Redis restart the script is loaded and run again, both
  pipelined, in one more round trip.

Failures: a call on a connection that drops (or times out) fails with `RespConnectionError` (`RespTimeoutError`);
the command may or may not have run on the server, and it is never retried. An error reply raises
`RespReplyError` with Redis's message (e.g. `ERR user_script:12: ...` for a failing script). `RespError` is the
base of all three.

URLs: `redis://[[user]:password@]host[:port][/db]`, `rediss://...` (TLS through the event loop's `ssl`;
`?ssl_cert_reqs=none|optional|required`, `?ssl_ca_certs=PATH`) and `unix://[[user]:password@]/path/to.sock`
(`?db=N`); `?db=N` also for TCP; other query options are ignored. AUTH and SELECT are sent on connecting. Bulk
replies are decoded as UTF-8 (undecodable bytes as surrogate escapes). Not here: RESP3, Cluster redirections
(MOVED/ASK), Sentinel (the redis-py client this replaces used none of them)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ssl
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import NewType, Protocol, TypeAlias, cast
from urllib.parse import parse_qs, unquote, urlsplit

Reply: TypeAlias = "str | int | None | list[Reply] | RespReplyError"
Bulk = NewType("Bulk", bytes)  # one encoded RESP bulk string: b"$<len>\r\n<bytes>\r\n"


class RespError(Exception):
    """Anything that went wrong talking to Redis."""


class RespReplyError(RespError):
    """An error reply from Redis (the message as Redis sent it, e.g. "NOSCRIPT No matching script...")."""


class RespConnectionError(RespError):
    """The connection could not be opened, was lost, or carried something that is not RESP."""


class RespTimeoutError(RespConnectionError):
    """No reply (or no connection) within the timeout; the connection is dropped."""


class RespProtocolError(RespConnectionError):
    """The server sent bytes that are not RESP2."""


# ------------------------------------------------------------------------------------------------- encoding

_SMALL_INTS = {i: Bulk(b"$%d\r\n%d\r\n" % (len(b"%d" % i), i)) for i in range(-1, 1024)}


def bulk_int(value: int) -> Bulk:
    small = _SMALL_INTS.get(value)
    if small is not None:
        return small
    raw = b"%d" % value
    return Bulk(b"$%d\r\n%b\r\n" % (len(raw), raw))


def bulk_str(value: str) -> Bulk:
    raw = value.encode()
    return Bulk(b"$%d\r\n%b\r\n" % (len(raw), raw))


def bulk(value: str | bytes | int | float) -> Bulk:
    """One command argument as a RESP bulk string (str as UTF-8, int in decimal, float by `repr`)."""
    if isinstance(value, int):
        return bulk_int(value)
    if isinstance(value, str):
        return bulk_str(value)
    raw = value if isinstance(value, bytes) else repr(value).encode()
    return Bulk(b"$%d\r\n%b\r\n" % (len(raw), raw))


def command(*parts: Bulk) -> bytes:
    """A whole command (a RESP array of bulk strings) from its encoded parts."""
    return b"*%d\r\n%b" % (len(parts), b"".join(parts))


def encode(*args: str | bytes | int | float) -> bytes:
    """A whole command from plain values: `encode("SET", "k", 1)`."""
    return command(*(bulk(a) for a in args))


# -------------------------------------------------------------------------------------------------- parsing

class ReplyReader(Protocol):
    """hiredis.Reader's interface: feed bytes, take whole replies (False: none complete yet)."""

    def feed(self, data: bytes, /) -> None: ...

    def gets(self) -> Reply | bool: ...


class _Incomplete(Exception):
    pass


class PyReplyReader:
    """A pure-Python incremental RESP2 parser with hiredis.Reader's behaviour: error replies are returned (as
    `RespReplyError`, also inside arrays), nil is None, bulk and simple strings are str, protocol errors raise
    `RespProtocolError`. Re-parses a partial reply from its start when more bytes arrive (replies here are
    small)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pos = 0

    def feed(self, data: bytes, /) -> None:
        self._buffer += data

    def gets(self) -> Reply | bool:
        if self._pos >= len(self._buffer):
            return False
        try:
            reply, end = self._parse(self._pos)
        except _Incomplete:
            return False
        if end >= len(self._buffer):
            self._buffer.clear()
            self._pos = 0
        elif end > 65536:
            del self._buffer[:end]
            self._pos = 0
        else:
            self._pos = end
        return reply

    def _line(self, start: int) -> tuple[bytes, int]:
        end = self._buffer.find(b"\r\n", start)
        if end < 0:
            raise _Incomplete
        return bytes(self._buffer[start:end]), end + 2

    def _int(self, raw: bytes) -> int:
        try:
            return int(raw)
        except ValueError:
            raise RespProtocolError(f"Protocol error: not an integer: {raw[:40]!r}") from None

    def _parse(self, start: int) -> tuple[Reply, int]:
        if start >= len(self._buffer):
            raise _Incomplete
        kind = self._buffer[start]
        line, pos = self._line(start + 1)
        if kind == 0x2B:  # + simple string
            return line.decode("utf-8", "surrogateescape"), pos
        if kind == 0x2D:  # - error
            return RespReplyError(line.decode("utf-8", "surrogateescape")), pos
        if kind == 0x3A:  # : integer
            return self._int(line), pos
        if kind == 0x24:  # $ bulk string
            length = self._int(line)
            if length < 0:
                return None, pos
            end = pos + length
            if len(self._buffer) < end + 2:
                raise _Incomplete
            if self._buffer[end:end + 2] != b"\r\n":
                raise RespProtocolError("Protocol error: bulk string not terminated by CRLF")
            return self._buffer[pos:end].decode("utf-8", "surrogateescape"), end + 2
        if kind == 0x2A:  # * array
            count = self._int(line)
            if count < 0:
                return None, pos
            items: list[Reply] = []
            for _ in range(count):
                item, pos = self._parse(pos)
                items.append(item)
            return items, pos
        raise RespProtocolError(f"Protocol error, got {chr(kind)!r} as reply type byte")


def make_reader() -> ReplyReader:
    """hiredis's parser when installed, else the pure-Python one."""
    try:
        import hiredis
    except ImportError:
        return PyReplyReader()
    return cast(ReplyReader, hiredis.Reader(protocolError=RespProtocolError, replyError=RespReplyError,
                                            encoding="utf-8", errors="surrogateescape"))


# ----------------------------------------------------------------------------------------------- addresses

@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect, from a URL."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a unix socket instead of host:port
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: ssl.SSLContext | None = None

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        db = int(query.get("db", 0))
        if parts.scheme == "unix":
            if not parts.path:
                raise ValueError(f"no socket path in {url!r}")
            return cls(path=unquote(parts.path), username=username, password=password, db=db)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"unsupported Redis URL {url!r}: expected redis://, rediss:// or unix://")
        if parts.path.strip("/"):
            db = int(parts.path.strip("/"))
        tls = None
        if parts.scheme == "rediss":
            tls = ssl.create_default_context(cafile=query.get("ssl_ca_certs"))
            requirement = query.get("ssl_cert_reqs", "required").lower()
            if requirement in ("none", "optional"):
                tls.check_hostname = False
                tls.verify_mode = ssl.CERT_NONE if requirement == "none" else ssl.CERT_OPTIONAL
            elif requirement != "required":
                raise ValueError(f"ssl_cert_reqs must be none, optional or required, not {requirement!r}")
        return cls(host=parts.hostname or "127.0.0.1", port=parts.port or 6379, username=username,
                   password=password, db=db, tls=tls)

    def handshake(self) -> list[bytes]:
        """The commands sent on connecting: AUTH, SELECT."""
        out: list[bytes] = []
        if self.password is not None:
            out.append(encode("AUTH", self.username, self.password) if self.username
                       else encode("AUTH", self.password))
        if self.db:
            out.append(encode("SELECT", self.db))
        return out


# ---------------------------------------------------------------------------------------------- connection

_DEADLINE_SLACK_S = 0.001  # timers may fire a little early (uvloop keeps time in milliseconds)


class _Connection(asyncio.Protocol):
    """One socket: pending callers in a FIFO, writes buffered until the next loop iteration, one watchdog."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self.loop = loop
        self.closed = False
        self._timeout_s = timeout_s
        self._reader = make_reader()
        self._transport: asyncio.Transport | None = None
        self._waiters: deque[asyncio.Future[Reply]] = deque()
        self._deadlines: deque[float] = deque()
        self._out: list[bytes] = []
        self._flush_pending = False
        self._watchdog: asyncio.Handle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader, waiters = self._reader, self._waiters
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except RespProtocolError as exc:
                self.abort(exc)
                return
            if reply is False:
                return
            if not waiters:
                self.abort(RespProtocolError("Protocol error: a reply nobody asked for"))
                return
            waiter = waiters.popleft()
            self._deadlines.popleft()
            if waiter.done():  # its caller was cancelled
                continue
            if isinstance(reply, RespReplyError):
                waiter.set_exception(reply)
            else:
                waiter.set_result(cast(Reply, reply))

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RespConnectionError(f"connection lost: {exc}" if exc else "connection closed by the server"))

    # calls

    def send(self, payload: bytes) -> asyncio.Future[Reply]:
        """Queue one encoded command; the future gets its reply."""
        waiter: asyncio.Future[Reply] = self.loop.create_future()
        if self.closed:
            waiter.set_exception(RespConnectionError("connection closed"))
            return waiter
        self._waiters.append(waiter)
        self._deadlines.append(self.loop.time() + self._timeout_s)
        self._out.append(payload)
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self._flush)
        if self._watchdog is None:
            self._watchdog = self.loop.call_at(self._deadlines[0], self._check_deadline)
        return waiter

    def close(self) -> None:
        self._fail(RespConnectionError("connection closed by the client"))
        if self._transport is not None:
            self._transport.close()

    def abort(self, exc: RespError) -> None:
        """Fail every pending call with `exc` and drop the socket at once."""
        self._fail(exc)
        if self._transport is not None:
            self._transport.abort()

    # internals

    def _flush(self) -> None:
        self._flush_pending = False
        if self.closed or self._transport is None or not self._out:
            return
        out = self._out
        self._transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def _check_deadline(self, last_chance: bool = False) -> None:
        """The watchdog: re-armed at the oldest pending deadline; once that is overdue, it looks again after the
        loop has polled the socket (a reply that arrived while the loop was busy still counts), then gives up."""
        self._watchdog = None
        if self.closed or not self._deadlines:
            return
        oldest = self._deadlines[0]
        if oldest > self.loop.time() + _DEADLINE_SLACK_S:
            self._watchdog = self.loop.call_at(oldest, self._check_deadline)
        elif not last_chance:
            self._watchdog = self.loop.call_soon(self._check_deadline, True)
        else:
            self.abort(RespTimeoutError(f"no reply from Redis within {self._timeout_s:g} s"))

    def _fail(self, exc: RespError) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._out.clear()
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
        self._deadlines.clear()


# -------------------------------------------------------------------------------------------------- client

class RespClient:
    """Commands to one Redis over one pipelined connection (per event loop: used from another loop, it opens a
    new one). Connects lazily: an unreachable Redis shows in the calls, as `RespConnectionError`."""

    def __init__(self, endpoint: Endpoint, *, timeout_s: float = 2.0, connect_timeout_s: float | None = None) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.connect_timeout_s = timeout_s if connect_timeout_s is None else connect_timeout_s
        self._connection: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 2.0) -> RespClient:
        return cls(Endpoint.from_url(url), timeout_s=timeout_s)

    async def execute(self, *args: str | bytes | int | float) -> Reply:
        """One command from plain values, e.g. `await client.execute("GET", "k")`."""
        return await self.execute_encoded(encode(*args))

    def execute_encoded(self, payload: bytes) -> Awaitable[Reply]:
        """One command already encoded (`command`, `encode`). Queued at once when connected (so a caller
        cancelled later still has it sent), else once connected."""
        connection = self._connection
        if connection is not None and not connection.closed and connection.loop is asyncio.get_running_loop():
            return connection.send(payload)
        return self._connect_and_send(payload)

    async def _connect_and_send(self, payload: bytes) -> Reply:
        return await (await self._ready()).send(payload)

    def script(self, source: str) -> Script:
        return Script(self, source)

    async def close(self) -> None:
        """Drop the connection (a later call opens a new one)."""
        connecting, self._connecting = self._connecting, None
        if connecting is not None and not connecting.done():
            connecting.cancel()
        connection, self._connection = self._connection, None
        if connection is not None and not connection.closed:
            connection.close()
            await asyncio.sleep(0)  # let the transport finish closing

    async def _ready(self) -> _Connection:
        """The open connection of the running loop, opened if need be."""
        connection = self._connection
        if connection is not None and not connection.closed and connection.loop is asyncio.get_running_loop():
            return connection
        return await self._connect()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        task = self._connecting
        if task is None or task.get_loop() is not loop:
            task = self._connecting = loop.create_task(self._open(loop))
            task.add_done_callback(self._opened)
        return await asyncio.shield(task)  # a cancelled caller leaves the connection opening for the others

    def _opened(self, task: asyncio.Task[_Connection]) -> None:
        current = self._connecting is task
        if current:
            self._connecting = None
        if task.cancelled() or task.exception() is not None:
            return
        if current:
            self._connection = task.result()
        else:  # the client was closed meanwhile
            task.result().close()

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        endpoint = self.endpoint
        where = endpoint.path or f"{endpoint.host}:{endpoint.port}"
        connection: _Connection | None = None

        def protocol() -> _Connection:
            return _Connection(loop, self.timeout_s)

        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if endpoint.path is not None:
                    _, connection = await loop.create_unix_connection(protocol, endpoint.path)
                else:
                    _, connection = await loop.create_connection(
                        protocol, endpoint.host, endpoint.port, ssl=endpoint.tls,
                        server_hostname=endpoint.host if endpoint.tls is not None else None)
                errors = await _outcomes([connection.send(payload) for payload in endpoint.handshake()])
        except BaseException as exc:
            if connection is not None:
                connection.abort(RespConnectionError("connecting failed"))
            if isinstance(exc, TimeoutError):
                raise RespTimeoutError(f"could not connect to Redis at {where} within "
                                       f"{self.connect_timeout_s:g} s") from None
            if isinstance(exc, OSError):
                raise RespConnectionError(f"could not connect to Redis at {where}: {exc}") from exc
            raise
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            connection.abort(RespConnectionError("handshake failed"))
            raise first
        return connection


def _noscript(exc: RespReplyError) -> bool:
    return str(exc).startswith("NOSCRIPT")


def _copy_outcome(result: asyncio.Future[Reply], done: asyncio.Future[Reply]) -> None:
    if done.cancelled():
        result.cancel()
        return
    exc = done.exception()  # retrieved even when nobody waits any more (else asyncio logs it as lost)
    if result.done():
        return
    if exc is not None:
        result.set_exception(exc)
    else:
        result.set_result(done.result())


async def _outcomes(waiters: list[asyncio.Future[Reply]]) -> list[RespError | None]:
    """Await replies in order: the error of each (None: a reply). Any left when interrupted are cancelled, so
    no exception set on them later goes unretrieved."""
    errors: list[RespError | None] = []
    try:
        for waiter in waiters:
            try:
                await waiter
                errors.append(None)
            except RespError as exc:
                errors.append(exc)
    finally:
        for waiter in waiters:
            if not waiter.done():
                waiter.cancel()
    return errors


class Script:
    """A Lua script run by EVALSHA; loaded (and run again, in the same round trip) when Redis answers NOSCRIPT,
    as after a restart or SCRIPT FLUSH."""

    def __init__(self, client: RespClient, source: str) -> None:
        self.client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._head = bulk("EVALSHA") + bulk(self.sha)
        self._load = encode("SCRIPT", "LOAD", source)

    def __call__(self, keys: Sequence[Bulk], args: Sequence[Bulk]) -> Awaitable[Reply]:
        """Run with encoded `keys` and `args` (see `bulk`)."""
        return self.run(self.payload(keys, args))

    def run(self, payload: bytes) -> Awaitable[Reply]:
        """Run a `payload` made by `payload` or `joined_payload`."""
        return self._reply(self.client.execute_encoded(payload), payload)

    def start(self, payload: bytes, result: asyncio.Future[Reply]) -> asyncio.Future[Reply]:
        """`run` for a caller that does not wait: the command is queued at once when connected, and `result`
        (returned) gets its reply, with no coroutine or Task per call (a Task only to connect first, or to load the
        script after a NOSCRIPT answer)."""
        sent = self.client.execute_encoded(payload)
        if isinstance(sent, asyncio.Future):
            sent.add_done_callback(functools.partial(self._forward, payload, result))
        else:  # not connected yet
            connecting = asyncio.ensure_future(self._reply(sent, payload))
            connecting.add_done_callback(functools.partial(_copy_outcome, result))
        return result

    def payload(self, keys: Sequence[Bulk], args: Sequence[Bulk]) -> bytes:
        """The EVALSHA command for encoded `keys` and `args`."""
        return self.joined_payload(len(keys), b"".join(keys), len(args), b"".join(args))

    def joined_payload(self, key_count: int, keys: bytes, arg_count: int, args: bytes) -> bytes:
        """The EVALSHA command for `key_count` keys and `arg_count` arguments already encoded and joined (callers
        join the parts that repeat once, e.g. a scope's key names)."""
        return b"*%d\r\n%b%b%b%b" % (3 + key_count + arg_count, self._head, bulk_int(key_count), keys, args)

    async def _reply(self, sent: Awaitable[Reply], payload: bytes) -> Reply:
        try:
            return await sent
        except RespReplyError as exc:
            if not _noscript(exc):
                raise
        return await self._load_and_run(payload)

    def _forward(self, payload: bytes, result: asyncio.Future[Reply], sent: asyncio.Future[Reply]) -> None:
        """`sent`'s outcome into `result`; after a NOSCRIPT answer, that of loading the script and running it again."""
        exc = None if sent.cancelled() else sent.exception()
        if isinstance(exc, RespReplyError) and _noscript(exc) and not result.done():
            retry = asyncio.ensure_future(self._load_and_run(payload))
            retry.add_done_callback(functools.partial(_copy_outcome, result))
            return
        _copy_outcome(result, sent)

    async def _load_and_run(self, payload: bytes) -> Reply:
        connection = await self.client._ready()
        load_error, run_error = await _outcomes([connection.send(self._load), ran := connection.send(payload)])
        if run_error is None:
            return ran.result()
        if load_error is not None and isinstance(run_error, RespReplyError):
            raise load_error  # NOSCRIPT again: why the load failed says more
        raise run_error
