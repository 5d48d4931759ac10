"""The path router and the request body limit."""

from __future__ import annotations

import asyncio

import pytest

from yourouter.asgi import BodyTooLarge, PathRouter, Request


async def _noop(request: object, send: object) -> None:
    return None


async def _other(request: object, send: object) -> None:
    return None


def test_router_exact_patterns_and_method_awareness() -> None:
    router = PathRouter()
    router.add("POST", "/v1/chat/completions", _noop)
    router.add("GET", "/v1/models/{model}", _other)
    assert router.resolve("POST", "/v1/chat/completions") == (_noop, {}, True)
    assert router.resolve("GET", "/v1/models/gpt-4o") == (_other, {"model": "gpt-4o"}, True)
    assert router.resolve("GET", "/v1/chat/completions") == (None, {}, True)  # 405, not 404
    assert router.resolve("DELETE", "/v1/models/x") == (None, {}, True)
    assert router.resolve("GET", "/v1/models/a/b") == (None, {}, False)
    assert router.resolve("GET", "/nowhere") == (None, {}, False)


def _request(chunks: list[bytes], content_length: int | None = None) -> Request:
    headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive() -> dict:
        return messages.pop(0)

    return Request({"type": "http", "path": "/", "method": "POST", "headers": headers}, receive)


def test_body_limit() -> None:
    assert asyncio.run(_request([b"ab", b"cd"]).body(10)) == b"abcd"
    with pytest.raises(BodyTooLarge):
        asyncio.run(_request([b"x" * 6, b"x" * 6]).body(10))
    with pytest.raises(BodyTooLarge):  # refused on the declared length, before reading
        asyncio.run(_request([], content_length=11).body(10))
