"""The small ASGI toolkit the gateway is built on: a request view, response senders and a path router.

Raw ASGI rather than a framework because the per-request cost of a framework's request/response objects and
middleware stack is measurable against the proxy floor (see docs/design.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_HEADERS: Headers = [(b"content-type", b"application/json")]


class BodyTooLarge(Exception):
    """The request body is over the configured limit."""


class Request:
    """A read-only view of one HTTP request; headers are decoded on first use."""

    __slots__ = ("scope", "receive", "path", "method", "_headers", "path_params")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.path: str = scope["path"]
        self.method: str = scope["method"]
        self._headers: dict[str, str] | None = None
        self.path_params: dict[str, str] = {}

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in self.scope["headers"]}
        return self._headers

    def header(self, name: bytes) -> bytes | None:
        """One header by lower-case name, without building the header dict."""
        for key, value in self.scope["headers"]:
            if key == name:
                return bytes(value)
        return None

    @property
    def query(self) -> dict[str, str]:
        raw = self.scope.get("query_string", b"")
        return dict(parse_qsl(raw.decode("latin-1"))) if raw else {}

    @property
    def query_lists(self) -> dict[str, list[str]]:
        """Every value of each query parameter (`filter.task_ids=a&filter.task_ids=b`), percent-decoded."""
        raw = self.scope.get("query_string", b"")
        found: dict[str, list[str]] = {}
        for name, value in parse_qsl(raw.decode("latin-1")) if raw else []:
            found.setdefault(name, []).append(value)
        return found

    async def body(self, limit: int) -> bytes:
        """The whole body; raises `BodyTooLarge` past `limit` bytes (checked on Content-Length first)."""
        declared = self.header(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge
        message = await self.receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body"):
            if len(body) > limit:
                raise BodyTooLarge
            return body
        parts = [body]
        size = len(body)
        while message.get("more_body"):
            message = await self.receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            parts.append(chunk)
        return b"".join(parts)


async def send_bytes(send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]]) -> None:
    out = list(headers)
    out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, payload: Any, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    await send_bytes(send, status, orjson.dumps(payload), [*JSON_HEADERS, *headers])


Handler = Callable[[Request, Send], Awaitable[None]]


class PathRouter:
    """Exact paths by dict lookup (the hot path); `{param}` patterns are tried in order after that."""

    def __init__(self) -> None:
        self._exact: dict[tuple[str, str], Handler] = {}
        self._patterns: list[tuple[str, list[str], Handler]] = []
        self._paths: set[str] = set()

    def add(self, method: str, path: str, handler: Handler) -> None:
        if "{" in path:
            self._patterns.append((method, path.strip("/").split("/"), handler))
        else:
            self._exact[(method, path)] = handler
        self._paths.add(path)

    def resolve(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], bool]:
        """(handler, path params, whether the path exists under another method)."""
        handler = self._exact.get((method, path))
        if handler is not None:
            return handler, {}, True
        parts = path.strip("/").split("/")
        path_known = any(m != method and p == path for (m, p) in self._exact)
        for pattern_method, pattern, candidate in self._patterns:
            params = _match(pattern, parts)
            if params is None:
                continue
            if pattern_method == method:
                return candidate, params, True
            path_known = True
        return None, {}, path_known


def _match(pattern: list[str], parts: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(parts):
        return None
    params: dict[str, str] = {}
    for expected, actual in zip(pattern, parts, strict=True):
        if expected.startswith("{") and expected.endswith("}"):
            if not actual:
                return None
            params[expected[1:-1]] = actual
        elif expected != actual:
            return None
    return params
