"""Server-sent events framing: split a byte stream into whole events, and build events.

On the per-event path, substrings of bytes are looked for with `bytes.find`, not `in`: on CPython 3.11
`needle in data` first tries the needle as an integer and builds (then clears) a formatted TypeError, ~1,900
instructions each time; callgrind found one per streamed event (bench/instructions.py --stream)."""

from __future__ import annotations


class SseSplitter:
    """Feeds arbitrary byte chunks, returns complete events (each with its trailing blank line).

    Accepts LF, CRLF and CR line endings. Partial events are held until their blank line arrives.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._buffer + chunk if self._buffer else chunk
        if data.find(b"\r") >= 0:  # not `in`: see the module docstring
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events = []
        start = 0
        while True:
            end = data.find(b"\n\n", start)
            if end < 0:
                break
            events.append(data[start:end + 2])
            start = end + 2
        self._buffer = data[start:]
        return events

    def close(self) -> bytes:
        """Whatever is left without a terminating blank line."""
        rest, self._buffer = self._buffer, b""
        return rest

    def last_event(self) -> bytes:
        """At the end of the stream: what is left, as a complete event (the upstream omitted its blank line)."""
        rest = self.close()
        return rest + b"\n\n" if rest.strip() else b""


def data_of(event: bytes) -> bytes | None:
    """The joined `data:` field of one event (None when it has none)."""
    if event.startswith(b"data: ") and event.count(b"\n") == 2:
        return event[6:-2]  # the common single-line case
    lines = [line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def event(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"
