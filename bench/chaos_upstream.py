#!/usr/bin/env python3
"""The chaos benchmark's upstream: an OpenAI chat-completions mock on two ports that timestamps every request.

    python bench/chaos_upstream.py --flaky-port 18201 --healthy-port 18202 --fail-rate 0.3 --delay-ms 20

One process, one event loop (uvloop when installed), raw asyncio + httptools like ../shared/bench/mock_upstream.py,
HTTP/1.1 keep-alive, so it costs a few tens of microseconds per request and never waits on anything but its own
timers. Two listening ports:

* `--flaky-port`: answers each chat completion, at random with probability `--fail-rate`, with an HTTP 500
  (OpenAI error envelope) after `--fail-delay-ms` (default 0: at once); else like the healthy port.
* `--healthy-port`: answers every chat completion with a chat.completion after `--delay-ms` (with
  `--delay-jitter-ms J`: a delay drawn uniformly from delay ± J per answer).

The client puts a request id into the message content (`chaos-<n>`); the gateway passes an OpenAI body to an
OpenAI upstream untouched, so each upstream attempt can be joined to its client request. For every request it
records `(port role, id, arrival, sent, status)`:

* arrival: `time.clock_gettime_ns(CLOCK_MONOTONIC)` when the request's first byte is parsed (httptools'
  on_message_begin, inside the read callback: the loop has just been woken by the socket);
* sent: the same clock right after the response was handed to the kernel (`transport.write` of a few hundred
  bytes on an idle loopback socket completes synchronously).

CLOCK_MONOTONIC is one system-wide clock on Linux, so these stamps compare directly with the client's (another
process on the same machine). The answer's content echoes the id, so the client can check that the body it got
is the one for its request.

Control endpoints (GET): `/_records` returns the records so far as JSON `[[role, id, arrival_ns, sent_ns,
status], ...]` (role 0 = flaky, 1 = healthy) and clears them; `/health` answers 200. `--seed` makes the failure
draws reproducible. SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import signal
import socket
import sys
import time

import httptools

try:
    import uvloop
except ImportError:  # pragma: no cover - slower without it, still correct
    uvloop = None

ID_RE = re.compile(rb"chaos-(\d+)")
MODEL_RE = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')
CLOCK = time.CLOCK_MONOTONIC
FLAKY, HEALTHY = 0, 1

OK_BODY = (b'{"id":"chatcmpl-@ID@","object":"chat.completion","created":1700000000,"model":"@MODEL@",'
           b'"choices":[{"index":0,"message":{"role":"assistant","content":"ok chaos-@ID@","refusal":null},'
           b'"logprobs":null,"finish_reason":"stop"}],'
           b'"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}')
FAIL_BODY = (b'{"error":{"message":"The server had an error while processing your request (injected).",'
             b'"type":"server_error","param":null,"code":null}}')


def now_ns() -> int:
    return time.clock_gettime_ns(CLOCK)


def response(status: bytes, body: bytes, keep_alive: bool) -> bytes:
    return b"".join((b"HTTP/1.1 ", status, b"\r\ncontent-type: application/json\r\ncontent-length: ",
                     str(len(body)).encode(), b"\r\nconnection: ", b"keep-alive" if keep_alive else b"close",
                     b"\r\n\r\n", body))


class State:
    def __init__(self, cfg: argparse.Namespace) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)  # failure draws
        self.jitter_rng = random.Random(cfg.seed + 1_000_003)  # delay draws (failure draws stay the same)
        self.records: list[tuple[int, int, int, int, int]] = []


class Upstream(asyncio.Protocol):
    """One HTTP/1.1 connection; requests on it are answered strictly in order (the gateway does not pipeline)."""

    def __init__(self, state: State, role: int, loop: asyncio.AbstractEventLoop) -> None:
        self.state, self.role, self.loop = state, role, loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.arrival = 0
        self.busy = False
        self.pending: list[tuple[bytes, bytes, bool, int, bytes]] = []
        self.closed = False

    def connection_made(self, transport):  # type: ignore[no-untyped-def]
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc):  # type: ignore[no-untyped-def]
        self.closed = True

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(response(b"400 Bad Request", b"{}", False))
            self.transport.close()

    def on_message_begin(self) -> None:
        self.arrival = now_ns()
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        request = (self.parser.get_method(), self.url, self.parser.should_keep_alive(), self.arrival,
                   b"".join(self.body))
        if self.busy:
            self.pending.append(request)
        else:
            self.handle(*request)

    def handle(self, method: bytes, url: bytes, keep_alive: bool, arrival: int, body: bytes) -> None:
        path = url.split(b"?", 1)[0]
        if method == b"POST" and path.endswith(b"/chat/completions"):
            found = ID_RE.search(body)
            rid = found.group(1) if found else b"0"
            cfg = self.state.cfg
            fail = self.role == FLAKY and self.state.rng.random() < cfg.fail_rate
            if fail:
                data, status, delay = response(b"500 Internal Server Error", FAIL_BODY, keep_alive), 500, cfg.fail_delay
            else:
                model = MODEL_RE.search(body)
                out = OK_BODY.replace(b"@ID@", rid).replace(b"@MODEL@", model.group(1) if model else b"m")
                delay = cfg.delay
                if cfg.jitter:
                    delay = max(0.0, delay + self.state.jitter_rng.uniform(-cfg.jitter, cfg.jitter))
                data, status = response(b"200 OK", out, keep_alive), 200
            record = (self.role, int(rid), arrival, status)
            if delay > 0:
                self.busy = True
                self.loop.call_later(delay, self.finish, data, keep_alive, record)
            else:
                self.finish(data, keep_alive, record, chained=False)
            return
        if method == b"GET" and path == b"/_records":
            records, self.state.records = self.state.records, []
            self.send(response(b"200 OK", json.dumps(records, separators=(",", ":")).encode(), keep_alive),
                      keep_alive)
        elif method in (b"GET", b"HEAD") and path in (b"/health", b"/"):
            self.send(response(b"200 OK", b'"ok"', keep_alive), keep_alive)
        else:
            self.send(response(b"404 Not Found", b'{"error":{"message":"not found"}}', keep_alive), keep_alive)

    def send(self, data: bytes, keep_alive: bool) -> None:
        if self.closed:
            return
        self.transport.write(data)
        if not keep_alive:
            self.transport.close()

    def finish(self, data: bytes, keep_alive: bool, record: tuple[int, int, int, int], chained: bool = True) -> None:
        self.send(data, keep_alive)
        role, rid, arrival, status = record
        self.state.records.append((role, rid, arrival, now_ns(), status))
        if chained:
            self.busy = False
            while self.pending and not self.busy and not self.closed:
                self.handle(*self.pending.pop(0))


def listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flaky-port", type=int, required=True)
    p.add_argument("--healthy-port", type=int, required=True)
    p.add_argument("--fail-rate", type=float, default=0.3)
    p.add_argument("--delay-ms", type=float, default=0.0, help="before a successful answer (default 0)")
    p.add_argument("--delay-jitter-ms", type=float, default=0.0, help="success delay uniform in delay ± this (0)")
    p.add_argument("--fail-delay-ms", type=float, default=0.0, help="before an injected 500 (default 0: at once)")
    p.add_argument("--seed", type=int, default=1)
    cfg = p.parse_args(argv)
    cfg.delay, cfg.fail_delay, cfg.jitter = cfg.delay_ms / 1000, cfg.fail_delay_ms / 1000, cfg.delay_jitter_ms / 1000
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    state = State(cfg)
    servers = [loop.run_until_complete(loop.create_server(lambda r=role: Upstream(state, r, loop), sock=listen(port)))
               for role, port in ((FLAKY, cfg.flaky_port), (HEALTHY, cfg.healthy_port))]
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    print(f"chaos_upstream flaky=:{cfg.flaky_port} (fail {cfg.fail_rate:.0%} after {cfg.fail_delay_ms} ms) "
          f"healthy=:{cfg.healthy_port} delay={cfg.delay_ms}±{cfg.delay_jitter_ms} ms "
          f"uvloop={'yes' if uvloop else 'no'}",
          file=sys.stderr, flush=True)
    try:
        loop.run_until_complete(stop)
    finally:
        for server in servers:
            server.close()


if __name__ == "__main__":
    main()
