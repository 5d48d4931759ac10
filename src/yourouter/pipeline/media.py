"""Fetching images by URL for providers that only take inline bytes (Gemini), behind an SSRF guard.

The guard lives in the resolver the fetch connects through: every address a host name resolves to (on every
redirect hop) must be public unless private networks are allowed in config, so DNS rebinding cannot slip past it.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from yourouter.config.schema import MediaConfig
from yourouter.ir.chat import ChatRequest, Image, Message, Part, ToolResult
from yourouter.ir.errors import bad_request


def check_address(host: str, address: str) -> None:
    """Refuse loopback, private, link-local, reserved and multicast addresses."""
    ip = ipaddress.ip_address(address.strip("[]"))
    if not ip.is_global or ip.is_multicast:
        raise bad_request(f"Image URL host {host} is a private or reserved address; the gateway does not fetch "
                          "from there.", code="image_url_forbidden")


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


class _GuardedResolver(AbstractResolver):
    """Host names are checked here, on the addresses the connection will actually use."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            for result in results:
                check_address(host, result["host"])
        return results

    async def close(self) -> None:
        await self._inner.close()


class InlineImages:
    """Turns `Image(url=...)` parts into inline data for codecs whose `needs_inline(image)` says so."""

    def __init__(self, config: MediaConfig) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=_GuardedResolver(self._config.allow_private_networks),
                                             limit=20, use_dns_cache=False)
            timeout = aiohttp.ClientTimeout(total=self._config.fetch_timeout_s)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return self._session

    async def fetch(self, url: str) -> Image:
        limit = self._config.max_image_bytes
        try:
            for _hop in range(4):  # redirects are followed here, so every hop's host is checked
                self._check_url(url)
                async with self._client().get(url, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                        url = str(response.url.join(yarl.URL(response.headers["Location"])))
                        continue
                    if response.status != 200:
                        raise bad_request(f"Fetching image {url[:200]} failed with HTTP {response.status}.",
                                          code="image_fetch_failed")
                    if (response.content_length or 0) > limit:
                        raise bad_request(f"Image {url[:200]} is larger than {limit} bytes.", code="image_too_large")
                    data = bytearray()
                    async for chunk in response.content.iter_chunked(65536):
                        data += chunk
                        if len(data) > limit:
                            raise bad_request(f"Image {url[:200]} is larger than {limit} bytes.",
                                              code="image_too_large")
                    media_type = response.content_type or "application/octet-stream"
                    break
            else:
                raise bad_request(f"Image {url[:200]} redirects too often.", code="image_fetch_failed")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise bad_request(f"Fetching image {url[:200]} failed ({type(exc).__name__}).",
                              code="image_fetch_failed") from None
        if not media_type.startswith("image/"):
            raise bad_request(f"{url[:200]} is not an image ({media_type}).", code="image_fetch_failed")
        return Image(data=base64.b64encode(bytes(data)).decode(), media_type=media_type)

    def _check_url(self, url: str) -> None:
        parsed = yarl.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise bad_request(f"Image URL `{url[:80]}` is not http(s); it cannot be fetched.",
                              code="invalid_image_url")
        literal = _ip_literal(parsed.host)
        if literal is not None and not self._config.allow_private_networks:
            check_address(parsed.host, literal)  # aiohttp connects to IP literals without asking the resolver

    async def inline(self, request: ChatRequest, needs_inline: Callable[[Image], bool]) -> ChatRequest:
        urls = {part.url for part in _images(request) if part.url and needs_inline(part)}
        if not urls:
            return request
        fetched = dict(zip(urls, await asyncio.gather(*(self.fetch(u) for u in urls)), strict=True))

        def swap(part: Any) -> Any:
            if isinstance(part, Image) and part.url in fetched:
                return dataclasses.replace(fetched[part.url], detail=part.detail)
            if isinstance(part, ToolResult):
                return dataclasses.replace(part, content=tuple(swap(p) for p in part.content))
            return part

        messages = tuple(Message(m.role, tuple(swap(p) for p in m.parts)) for m in request.messages)
        return dataclasses.replace(request, messages=messages)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _images(request: ChatRequest) -> list[Image]:
    found: list[Image] = []

    def visit(part: Part) -> None:
        if isinstance(part, Image):
            found.append(part)
        elif isinstance(part, ToolResult):
            for inner in part.content:
                visit(inner)

    for message in request.messages:
        for part in message.parts:
            visit(part)
    return found
