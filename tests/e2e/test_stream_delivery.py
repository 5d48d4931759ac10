"""Relaying a stream when the client cannot keep up, and when it leaves mid-stream.

Events are written to the client from the upstream connection's read callback (`Http1Response.forward`), and the
ASGI `send` is finished there when it need not wait (`relay._send_now`). These tests drive the two cases where it
must not: a client whose socket is full (uvicorn's flow control makes `send` wait; later events must neither be
lost nor overtake it), and a client that leaves (the upstream request must end at once).
"""

from __future__ import annotations

import http.client
import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import STATIC_KEY, GatewayHandle, start_gateway, usage_rows
from yourouter.config import settings_from_mapping

BURST_EVENTS = 3000  # ~3.3 MB of events, written by the upstream as fast as it can
PAD = "x" * 1000


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(index: int) -> bytes:
    chunk = {"id": "chatcmpl-burst", "object": "chat.completion.chunk", "created": 1, "model": "burst",
             "choices": [{"index": 0, "delta": {"content": f"<{index}>{PAD}"}, "finish_reason": None}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


class _Upstream(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.gone_after: float | None = None  # seconds from the first event to the failed write


class _Handler(socketserver.StreamRequestHandler):
    server: _Upstream

    def handle(self) -> None:
        length = 0
        while (line := self.rfile.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        model = json.loads(self.rfile.read(length))["model"]
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        if model == "burst":
            for index in range(BURST_EVENTS):
                self.wfile.write(_chunk(_event(index)))
            self.wfile.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            return
        started = time.monotonic()
        try:
            for index in range(500):  # 10 s of events unless the gateway hangs up
                self.wfile.write(_chunk(_event(index)))
                self.wfile.flush()
                time.sleep(0.02)
        except OSError:
            self.server.gone_after = time.monotonic() - started


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayHandle, _Upstream]]:
    upstream = _Upstream()
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    db: Path = tmp_path_factory.mktemp("delivery") / "gw.db"
    settings = settings_from_mapping({
        "database_url": f"sqlite:///{db}", "usage": {"flush_interval_s": 0.05},
        "keys": [{"key": STATIC_KEY, "name": "delivery", "models": ["*"]}],
        "providers": [{"name": "raw", "vendor": "openai", "base_url": f"http://127.0.0.1:{upstream.server_address[1]}/v1",
                       "api_key": "sk-raw", "models": ["burst", "paced"]}]}, env={})
    try:
        with start_gateway(settings) as gateway:
            yield gateway, upstream
    finally:
        upstream.shutdown()
        upstream.server_close()


def _open_stream(gateway: GatewayHandle, model: str, receive_buffer: int | None = None) -> socket.socket:
    host, port = gateway.url.removeprefix("http://").split(":")
    sock = socket.socket()
    if receive_buffer is not None:  # before connecting: a small window the kernel does not grow
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect((host, int(port)))
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (STATIC_KEY.encode(), len(body)))
    sock.sendall(head + body)
    return sock


def test_a_client_that_reads_slowly_gets_every_event_in_order(relay: tuple[GatewayHandle, _Upstream]) -> None:
    gateway, _ = relay
    sock = _open_stream(gateway, "burst", receive_buffer=8192)
    try:
        time.sleep(1.0)  # reads nothing: the gateway's socket fills and uvicorn makes `send` wait
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 200
        request_id = response.getheader("x-request-id")
        events = [line for line in response.read().split(b"\n\n") if line]
    finally:
        sock.close()
    assert events[-1] == b"data: [DONE]"
    contents = [json.loads(event[6:])["choices"][0]["delta"]["content"] for event in events[:-1]]
    assert contents == [f"<{index}>{PAD}" for index in range(BURST_EVENTS)]
    row = usage_rows(gateway.settings.database_url, request_id)[0]
    assert row["status"] == 200 and row["outcome"] == "ok" and row["streamed"]


def test_a_client_that_leaves_mid_stream_ends_the_upstream_request(relay: tuple[GatewayHandle, _Upstream]) -> None:
    gateway, upstream = relay
    sock = _open_stream(gateway, "paced")
    try:
        received = b""
        while received.count(b"data: ") < 5:  # the stream is flowing: events are written from the read callback
            data = sock.recv(65536)
            assert data, "the gateway closed the stream"
            received += data
        request_id = received.split(b"x-request-id: ")[1].split(b"\r\n")[0].decode()
    finally:
        sock.close()
    deadline = time.monotonic() + 5
    while upstream.gone_after is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.gone_after is not None and upstream.gone_after < 2.0  # not the whole 10 s
    row = usage_rows(gateway.settings.database_url, request_id)[0]
    assert (row["outcome"], row["error_type"]) == ("cancelled", "client_disconnected")
