"""AWS event stream framing (`application/vnd.amazon.eventstream`), what Bedrock's ConverseStream answers with.

A message is: total length (u32), headers length (u32), CRC32 of those 8 bytes, headers, payload, CRC32 of all that
precedes it; big-endian. Headers are `name-length (u8), name, type (u8), value`. `EventStreamSplitter` turns a byte
stream into one JSON document per message, shaped as the AWS SDKs present them (`{"contentBlockDelta": {...}}`), so
the stream decoder reads JSON like every other dialect's. `encode_message` builds messages (the simulator's side).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import orjson

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_PRELUDE = struct.Struct(">III")
_MAX_MESSAGE = 24 * 1024 * 1024  # the AWS SDKs refuse messages above 16 MiB; a little slack
_STRING, _BYTES = 7, 6
# value sizes of the fixed-width header types: true, false, byte, short, int, long, (bytes), (string), time, uuid
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}


class EventStreamError(ValueError):
    """A malformed or corrupted message (bad length or CRC)."""


def parse_headers(data: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    position = 0
    while position < len(data):
        size = data[position]
        name = data[position + 1:position + 1 + size].decode("utf-8", "replace")
        position += 1 + size
        kind = data[position]
        position += 1
        if kind in (_STRING, _BYTES):
            (length,) = struct.unpack_from(">H", data, position)
            raw = data[position + 2:position + 2 + length]
            headers[name] = raw.decode("utf-8", "replace") if kind == _STRING else raw
            position += 2 + length
        elif kind in _FIXED:
            headers[name] = kind == 0 if kind in (0, 1) else data[position:position + _FIXED[kind]]
            position += _FIXED[kind]
        else:
            raise EventStreamError(f"unknown header value type {kind}")
    return headers


def decode_message(message: bytes) -> tuple[dict[str, Any], bytes]:
    """One complete message -> (headers, payload); raises `EventStreamError` when it is corrupt."""
    total, headers_length, prelude_crc = _PRELUDE.unpack_from(message)
    if zlib.crc32(message[:8]) != prelude_crc:
        raise EventStreamError("prelude CRC mismatch")
    if zlib.crc32(message[:-4]) != struct.unpack_from(">I", message, total - 4)[0]:
        raise EventStreamError("message CRC mismatch")
    headers = parse_headers(message[12:12 + headers_length])
    return headers, message[12 + headers_length:total - 4]


def as_json_event(headers: dict[str, Any], payload: bytes) -> bytes:
    """A message as the SDKs show it: `{"<event type>": payload}`; exceptions as `{"<exception type>": payload}`
    (their names end in `Exception`); a protocol error as `{"error": {"code", "message"}}`."""
    kind = headers.get(":message-type", "event")
    if kind == "event":
        name = headers.get(":event-type", "")
    elif kind == "exception":
        name = headers.get(":exception-type", "unknownException")
    else:
        return orjson.dumps({"error": {"code": headers.get(":error-code", "error"),
                                       "message": headers.get(":error-message", "")}})
    body = payload.strip() or b"{}"
    return b'{"' + str(name).encode() + b'":' + body + b"}"


class EventStreamSplitter:
    """Feeds arbitrary byte chunks; returns one JSON document per complete message (see `as_json_event`).

    A corrupted stream yields a final `{"error": ...}` document and nothing after it."""

    __slots__ = ("_buffer", "_broken")

    def __init__(self) -> None:
        self._buffer = b""
        self._broken = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._broken:
            return []
        data = self._buffer + chunk if self._buffer else chunk
        out: list[bytes] = []
        start = 0
        while len(data) - start >= 12:
            (total,) = struct.unpack_from(">I", data, start)
            if total < 16 or total > _MAX_MESSAGE:
                return self._fail(out, f"impossible message length {total}")
            if len(data) - start < total:
                break
            try:
                headers, payload = decode_message(data[start:start + total])
            except (EventStreamError, struct.error, IndexError) as exc:
                return self._fail(out, str(exc))
            out.append(as_json_event(headers, payload))
            start += total
        self._buffer = data[start:]
        return out

    def _fail(self, out: list[bytes], reason: str) -> list[bytes]:
        self._broken, self._buffer = True, b""
        out.append(orjson.dumps({"error": {"code": "corruptStream", "message": f"Corrupt event stream: {reason}."}}))
        return out

    def last_event(self) -> bytes:
        return self.close()

    def close(self) -> bytes:
        """A truncated last message is reported as an error document."""
        rest, self._buffer = self._buffer, b""
        if rest and not self._broken:
            return orjson.dumps({"error": {"code": "truncatedStream",
                                           "message": "The event stream ended mid-message."}})
        return b""


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return bytes([len(raw_name)]) + raw_name + bytes([_STRING]) + struct.pack(">H", len(raw_value)) + raw_value


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """A message with string headers (all that Bedrock's streams use)."""
    head = b"".join(_header(name, value) for name, value in headers.items())
    total = 16 + len(head) + len(payload)
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + head + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event_message(event_type: str, payload: object) -> bytes:
    return encode_message({":event-type": event_type, ":content-type": "application/json",
                           ":message-type": "event"}, orjson.dumps(payload))


def exception_message(exception_type: str, message: str) -> bytes:
    return encode_message({":exception-type": exception_type, ":content-type": "application/json",
                           ":message-type": "exception"}, orjson.dumps({"message": message}))
