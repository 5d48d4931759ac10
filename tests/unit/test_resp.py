"""The limits backend's own RESP2 client (`yourouter.limits.resp`): encoding and parsing, then against the real
Redis (pipelining, scripts, NOSCRIPT, reconnection) and against a small fake server for what a real one does not do
on demand (silence, garbage, a dropped connection mid-call)."""

from __future__ import annotations

import asyncio
import gc
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest

from tests.support.services import redis_url
from yourouter.limits import Charge, LimitBackendUnavailable, Limits
from yourouter.limits.redis import RedisLimitBackend
from yourouter.limits.resp import (
    Bulk,
    Endpoint,
    PyReplyReader,
    Reply,
    ReplyReader,
    RespClient,
    RespConnectionError,
    RespProtocolError,
    RespReplyError,
    RespTimeoutError,
    Script,
    bulk,
    command,
    encode,
    make_reader,
)

# ------------------------------------------------------------------------------------------------- encoding


def test_commands_are_encoded_as_arrays_of_bulk_strings() -> None:
    assert encode("SET", "k", 1) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n"
    assert bulk("a\r\nb") == b"$4\r\na\r\nb\r\n"  # length-prefixed: CRLF inside is data
    assert bulk("é") == b"$2\r\n\xc3\xa9\r\n"  # the length in bytes, not characters
    assert bulk(-1) == b"$2\r\n-1\r\n" and bulk(10**12) == b"$13\r\n1000000000000\r\n"
    assert bulk(1717200000.25) == b"$13\r\n1717200000.25\r\n"  # floats by repr: exact
    assert bulk(b"\x00\xff") == b"$2\r\n\x00\xff\r\n"
    assert bulk("") == b"$0\r\n\r\n"
    assert command(bulk("GET"), bulk("k")) == encode("GET", "k")


# -------------------------------------------------------------------------------------------------- parsing

STREAM = (b"+OK\r\n"
          b":-42\r\n"
          b"$-1\r\n"
          b"*-1\r\n"
          b"$5\r\na\r\nbc\r\n"
          b"$0\r\n\r\n"
          b"-NOSCRIPT No matching script\r\n"
          b"*3\r\n:1\r\n*2\r\n$2\r\nok\r\n$-1\r\n*2\r\n-ERR inner\r\n*0\r\n"
          b"$2\r\n\xc3\xa9\r\n")


def expected_replies() -> list[Any]:
    return ["OK", -42, None, None, "a\r\nbc", "", ("error", "NOSCRIPT No matching script"),
            [1, ["ok", None], [("error", "ERR inner"), []]], "é"]


def plain(reply: Reply | bool) -> Any:
    """Replies with errors as comparable tuples."""
    if isinstance(reply, RespReplyError):
        return ("error", str(reply))
    if isinstance(reply, list):
        return [plain(r) for r in reply]
    return reply


def read_all(reader: ReplyReader, chunks: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for chunk in chunks:
        reader.feed(chunk)
        while (reply := reader.gets()) is not False:
            out.append(plain(reply))
    return out


READERS: list[Callable[[], ReplyReader]] = [PyReplyReader, make_reader]


@pytest.mark.parametrize("new_reader", READERS, ids=["python", "default"])
def test_replies_parse_whole_and_byte_by_byte(new_reader: Callable[[], ReplyReader]) -> None:
    assert read_all(new_reader(), [STREAM]) == expected_replies()
    assert read_all(new_reader(), [STREAM[i:i + 1] for i in range(len(STREAM))]) == expected_replies()
    assert read_all(new_reader(), [STREAM[:7], STREAM[7:40], STREAM[40:]]) == expected_replies()


@pytest.mark.parametrize("new_reader", READERS, ids=["python", "default"])
def test_garbage_is_a_protocol_error(new_reader: Callable[[], ReplyReader]) -> None:
    reader = new_reader()
    reader.feed(b"!oops\r\n")
    with pytest.raises(RespProtocolError):
        reader.gets()


def test_the_python_parser_keeps_long_streams_bounded() -> None:
    reader = PyReplyReader()
    payload = b"$3\r\nabc\r\n" * 20000
    assert read_all(reader, [payload[:100_003], payload[100_003:]]) == ["abc"] * 20000
    assert len(reader._buffer) == 0


# ----------------------------------------------------------------------------------------------- addresses


def test_urls() -> None:
    tcp = Endpoint.from_url("redis://me:p%40ss@cache.internal:6380/3")
    assert (tcp.host, tcp.port, tcp.db, tcp.username, tcp.password, tcp.path, tcp.tls) == (
        "cache.internal", 6380, 3, "me", "p@ss", None, None)
    assert tcp.handshake() == [encode("AUTH", "me", "p@ss"), encode("SELECT", 3)]
    assert Endpoint.from_url("redis://:secret@h").handshake() == [encode("AUTH", "secret")]
    assert Endpoint.from_url("redis://127.0.0.1:6379/0").handshake() == []
    assert Endpoint.from_url("redis://h?db=5").db == 5
    sock = Endpoint.from_url("unix:///run/redis/redis.sock?db=2")
    assert (sock.path, sock.db) == ("/run/redis/redis.sock", 2)
    secure = Endpoint.from_url("rediss://h:6390/0")
    assert secure.tls is not None and secure.tls.verify_mode == ssl.CERT_REQUIRED
    lax = Endpoint.from_url("rediss://h/0?ssl_cert_reqs=none")
    assert lax.tls is not None and lax.tls.verify_mode == ssl.CERT_NONE and not lax.tls.check_hostname
    with pytest.raises(ValueError):
        Endpoint.from_url("memcached://h")
    with pytest.raises(ValueError):
        Endpoint.from_url("unix://")


# ------------------------------------------------------------------------------------------ the real Redis


@pytest.fixture
def real() -> Iterator[tuple[str, str]]:
    """The machine's Redis and a key prefix of this test's own (deleted afterwards)."""
    import redis

    url = redis_url()
    prefix = f"yrtest:resp:{secrets.token_hex(4)}:"
    yield url, prefix
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture(params=["default", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both reply parsers on the wire: hiredis (when installed) and the pure-Python fallback."""
    if request.param == "python":
        monkeypatch.setattr("yourouter.limits.resp.make_reader", PyReplyReader)
    return str(request.param)


def run(client: RespClient, body: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        try:
            await body()
        finally:
            await client.close()

    asyncio.run(main())


def test_values_round_trip(real: tuple[str, str], parser: str) -> None:
    url, p = real
    client = RespClient.from_url(url)

    async def body() -> None:
        assert await client.execute("PING") == "PONG"
        assert await client.execute("SET", p + "k", "line\r\nbreak é") == "OK"
        assert await client.execute("GET", p + "k") == "line\r\nbreak é"
        assert await client.execute("GET", p + "missing") is None
        assert await client.execute("INCRBY", p + "n", -5) == -5
        assert await client.execute("RPUSH", p + "l", "a", "", "c") == 3
        assert await client.execute("LRANGE", p + "l", 0, -1) == ["a", "", "c"]
        nested = await client.execute("EVAL", "return {1, {'x', false, {ARGV[1]}}, redis.status_reply('fine')}",
                                      0, "y")
        assert nested == [1, ["x", None, ["y"]], "fine"]
        with pytest.raises(RespReplyError, match="WRONGTYPE"):
            await client.execute("INCR", p + "l")
        assert await client.execute("PING") == "PONG"  # an error reply leaves the connection usable

    run(client, body)


def test_concurrent_callers_get_their_own_replies_in_order(real: tuple[str, str], parser: str) -> None:
    url, p = real
    client = RespClient.from_url(url)

    async def body() -> None:
        echoes = await asyncio.gather(*(client.execute("ECHO", f"message {i}") for i in range(500)))
        assert echoes == [f"message {i}" for i in range(500)]
        counts = await asyncio.gather(*(client.execute("INCR", p + "c") for _ in range(300)))
        assert counts == list(range(1, 301))  # pipelined on one connection: Redis ran them in the order sent
        mixed = await asyncio.gather(*(client.execute("GET", p + "c") if i % 2 else client.execute("NOPE")
                                       for i in range(20)), return_exceptions=True)
        assert [isinstance(m, RespReplyError) for m in mixed] == [i % 2 == 0 for i in range(20)]
        assert all(m == "300" for m in mixed[1::2])

    run(client, body)


def test_scripts_are_loaded_again_after_a_flush(real: tuple[str, str], parser: str) -> None:
    url, p = real
    client = RespClient.from_url(url)
    script = client.script(f"-- {secrets.token_hex(4)}\nreturn {{KEYS[1], tonumber(ARGV[1]) + 1}}")

    async def body() -> None:
        assert await script([bulk(p + "a")], [bulk(1)]) == [p + "a", 2]
        await client.execute("SCRIPT", "FLUSH")  # as after a Redis restart
        results = await asyncio.gather(*(script([bulk(p + "a")], [bulk(i)]) for i in range(20)))
        assert results == [[p + "a", i + 1] for i in range(20)]
        assert await client.execute("SCRIPT", "EXISTS", script.sha) == [1]

    run(client, body)


def test_started_scripts_answer_through_their_future(real: tuple[str, str], parser: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """`Script.start`: queued at once, no coroutine to await; the future gets the reply, Redis's error, or (after a
    NOSCRIPT, as after a restart) the reply of the script loaded and run again. Before the first connection it
    connects first."""
    url, p = real
    client = RespClient.from_url(url)
    script = client.script(f"-- {secrets.token_hex(4)}\nreturn {{KEYS[1], tonumber(ARGV[1]) + 1}}")
    failing = client.script("return redis.call('NOPE')")

    def start(which: Script, keys: list[Bulk], args: list[Bulk]) -> asyncio.Future[Any]:
        return which.start(which.payload(keys, args), asyncio.get_running_loop().create_future())

    async def body() -> None:
        first = start(script, [bulk(p + "a")], [bulk(0)])  # not connected yet: connects, loads, runs
        assert await first == [p + "a", 1]
        started = [start(script, [bulk(p + "a")], [bulk(i)]) for i in range(20)]
        assert all(isinstance(f, asyncio.Future) for f in started)
        assert await asyncio.gather(*started) == [[p + "a", i + 1] for i in range(20)]
        await client.execute("SCRIPT", "FLUSH")  # as after a Redis restart
        again = [start(script, [bulk(p + "b")], [bulk(i)]) for i in range(5)]
        assert await asyncio.gather(*again) == [[p + "b", i + 1] for i in range(5)]
        with pytest.raises(RespReplyError, match="Unknown Redis command"):
            await start(failing, [], [])
        abandoned = start(script, [bulk(p + "c")], [bulk(1)])
        abandoned.cancel()  # a caller that gave up leaves the connection in step
        assert await script([bulk(p + "d")], [bulk(1)]) == [p + "d", 2]
        failed_unwatched = start(failing, [], [])
        failed_unwatched.cancel()  # its error reply comes anyway: taken, not logged as a lost exception
        assert await client.execute("PING") == "PONG"
        del failed_unwatched
        gc.collect()

    run(client, body)
    assert "never retrieved" not in caplog.text


def test_script_errors_surface_with_redis_message(real: tuple[str, str]) -> None:
    url, _ = real
    client = RespClient.from_url(url)
    failing = client.script("return redis.call('NOPE')")
    broken = client.script("this is not lua")

    async def body() -> None:
        with pytest.raises(RespReplyError, match="Unknown Redis command"):
            await failing([], [])
        with pytest.raises(RespReplyError, match="Error compiling script"):  # the load's error, not NOSCRIPT
            await broken([], [])
        assert await client.execute("PING") == "PONG"

    run(client, body)


def test_a_connection_killed_by_the_server_is_reopened(real: tuple[str, str]) -> None:
    url, _ = real
    client = RespClient.from_url(url)
    other = RespClient.from_url(url)

    async def body() -> None:
        try:
            first = await client.execute("CLIENT", "ID")
            assert await other.execute("CLIENT", "KILL", "ID", first) == 1
            for _ in range(100):  # the loss shows once the loop reads the EOF
                if client._connection is not None and client._connection.closed:
                    break
                await asyncio.sleep(0.01)
            second = await client.execute("CLIENT", "ID")
            assert second != first
        finally:
            await other.close()

    run(client, body)


def test_select_from_the_url(real: tuple[str, str]) -> None:
    url, _ = real
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    client = RespClient.from_url(base + "/9")

    async def body() -> None:
        info = await client.execute("CLIENT", "INFO")
        assert isinstance(info, str) and " db=9 " in info

    run(client, body)


def test_one_client_across_event_loops(real: tuple[str, str]) -> None:
    url, _ = real
    client = RespClient.from_url(url)
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        assert first.run_until_complete(client.execute("PING")) == "PONG"
        stale = client._connection
        assert second.run_until_complete(client.execute("PING")) == "PONG"  # not first's connection: a new one
        assert client._connection is not stale and stale is not None
        second.run_until_complete(client.close())

        async def close_stale() -> None:
            stale.close()
            await asyncio.sleep(0)

        first.run_until_complete(close_stale())
    finally:
        first.close()
        second.close()


# ------------------------------------------------------------------------------------------ a fake server

Handler = Callable[[list[str]], bytes | None]  # a command -> its reply (raw RESP), or None: no reply
CLOSE = b""  # a handler's answer: drop the connection instead


class FakeRedis:
    """A TCP server that parses commands as RESP arrays and answers through a handler."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.commands: list[list[str]] = []
        self.connections = 0
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: list[asyncio.Task[Any]] = []

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeRedis]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for writer in self._writers:
                writer.close()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.append(task)
        parser = PyReplyReader()
        try:
            while data := await reader.read(65536):
                parser.feed(data)
                while (request := parser.gets()) is not False:
                    assert isinstance(request, list)
                    self.commands.append([str(part) for part in request])
                    answer = self.handler(self.commands[-1])
                    if answer == CLOSE:
                        writer.close()
                        return
                    if answer is not None:
                        writer.write(answer)
        except ConnectionError:
            pass
        finally:
            writer.close()


def test_a_silent_server_times_calls_out_and_the_next_call_reconnects() -> None:
    silent = True

    def handler(cmd: list[str]) -> bytes | None:
        return None if silent else b"+PONG\r\n"

    async def body() -> None:
        nonlocal silent
        async with FakeRedis(handler).running() as fake:
            client = RespClient.from_url(fake.url, timeout_s=0.2)
            started = time.monotonic()
            results = await asyncio.gather(*(client.execute("PING") for _ in range(5)), return_exceptions=True)
            assert all(isinstance(r, RespTimeoutError) for r in results), results
            assert time.monotonic() - started < 1.5  # one watchdog for all five, no hang
            silent = False
            assert await client.execute("PING") == "PONG"
            assert fake.connections == 2
            await client.close()

    asyncio.run(body())


def test_a_connection_dropped_mid_call_fails_pending_calls_then_reconnects() -> None:
    drop = True

    def handler(cmd: list[str]) -> bytes | None:
        if cmd[0] == "DROP" and drop:
            return CLOSE
        return b"+" + cmd[-1].encode() + b"\r\n"

    async def body() -> None:
        nonlocal drop
        async with FakeRedis(handler).running() as fake:
            client = RespClient.from_url(fake.url)
            assert await client.execute("ECHO", "before") == "before"
            results = await asyncio.gather(client.execute("DROP"), client.execute("ECHO", "lost"),
                                           return_exceptions=True)
            assert all(isinstance(r, RespConnectionError) for r in results), results
            drop = False
            assert await client.execute("ECHO", "after") == "after"
            assert fake.connections == 2
            await client.close()

    asyncio.run(body())


def test_garbage_from_the_server_fails_the_call_as_a_connection_error() -> None:
    async def body() -> None:
        async with FakeRedis(lambda cmd: b"?what\r\n").running() as fake:
            client = RespClient.from_url(fake.url)
            with pytest.raises(RespProtocolError):
                await client.execute("PING")
            await client.close()

    asyncio.run(body())


def test_a_cancelled_caller_does_not_shift_the_replies() -> None:
    loop_replies: list[bytes] = []

    def handler(cmd: list[str]) -> bytes | None:
        loop_replies.append(b"+" + cmd[-1].encode() + b"\r\n")
        return None  # answered later, all at once

    async def body() -> None:
        async with FakeRedis(handler).running() as fake:
            client = RespClient.from_url(fake.url)
            first = asyncio.ensure_future(client.execute("ECHO", "one"))
            second = asyncio.ensure_future(client.execute("ECHO", "two"))
            while len(loop_replies) < 2:
                await asyncio.sleep(0.01)
            first.cancel()
            connection = client._connection
            assert connection is not None
            connection.data_received(b"".join(loop_replies))  # as if the server had answered both
            assert await second == "two"
            with pytest.raises(asyncio.CancelledError):
                await first
            await client.close()

    asyncio.run(body())


def test_auth_and_select_are_sent_first_and_their_errors_surface() -> None:
    def handler(cmd: list[str]) -> bytes | None:
        if cmd[0] == "AUTH":
            return b"+OK\r\n" if cmd[1:] == ["me", "right"] else b"-WRONGPASS invalid username-password pair\r\n"
        return b"+OK\r\n" if cmd[0] == "SELECT" else b"+PONG\r\n"

    async def body() -> None:
        async with FakeRedis(handler).running() as fake:
            good = RespClient.from_url(f"redis://me:right@127.0.0.1:{fake.port}/4")
            assert await good.execute("PING") == "PONG"
            assert fake.commands == [["AUTH", "me", "right"], ["SELECT", "4"], ["PING"]]
            await good.close()
            bad = RespClient.from_url(f"redis://me:wrong@127.0.0.1:{fake.port}/4")
            with pytest.raises(RespReplyError, match="WRONGPASS"):
                await bad.execute("PING")
            await bad.close()

    asyncio.run(body())


def test_a_hanging_handshake_times_out() -> None:
    async def body() -> None:
        async with FakeRedis(lambda cmd: None).running() as fake:
            client = RespClient.from_url(f"redis://:pw@127.0.0.1:{fake.port}/0", timeout_s=0.2)
            started = time.monotonic()
            with pytest.raises(RespTimeoutError):
                await client.execute("PING")
            assert time.monotonic() - started < 1.5
            await client.close()

    asyncio.run(body())


def test_an_unreachable_server_is_a_connection_error() -> None:
    async def body() -> None:
        client = RespClient.from_url("redis://127.0.0.1:1/0", timeout_s=0.5)
        results = await asyncio.gather(*(client.execute("PING") for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, RespConnectionError) for r in results), results
        await client.close()

    asyncio.run(body())


def test_the_backend_reports_script_errors_as_unavailable() -> None:
    def handler(cmd: list[str]) -> bytes | None:
        return b"-ERR user_script:1: Script attempted to access nonexistent global variable\r\n"

    async def body() -> None:
        async with FakeRedis(handler).running() as fake:
            backend = RedisLimitBackend.connect(fake.url, _NoSpend())
            with pytest.raises(LimitBackendUnavailable, match="RespReplyError: ERR user_script:1"):
                await backend.admit("r1", [Charge("key:x", Limits(rpm=1))])
            await backend.close()

    asyncio.run(body())


class _NoSpend:
    async def committed_spend(self, scope: str, since: Any) -> Decimal:
        return Decimal(0)
