"""Outbound HTTP. The request path (`post`) goes through `pipeline/http1.py`'s lean keep-alive client, one pool of
connections per deployment and origin; everything off the hot path (video task polls, search engines) uses one
aiohttp session per deployment (`session`).

Neither is httpx: measured here, httpx's pool costs 15-20x more CPU per proxied request under concurrency than
aiohttp's, and aiohttp's client ~3x more instructions than http1.py's (see docs/design.md, bench/README.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import aiohttp
import yarl

from yourouter.pipeline.http1 import Http1Pool, Http1RequestContext, content_length, head_without_length, request_head
from yourouter.providers.base import Provider

_MAX_URLS = 4096


class UpstreamPool:
    def __init__(self, providers: Iterable[Provider]) -> None:
        self._providers = {p.name: p for p in providers}
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._pools: dict[tuple[str, str, str, int | None], Http1Pool] = {}
        #: (provider, url) -> the URL parsed once (yarl costs ~3 us a parse), the pool that serves it, and the
        #: request head without Content-Length for the headers dict given when it was first seen
        self._urls: dict[tuple[str, str], tuple[yarl.URL, Http1Pool, dict[str, str], bytes]] = {}

    def session(self, provider: Provider) -> aiohttp.ClientSession:
        session = self._sessions.get(provider.name)
        if session is None:  # created lazily, inside the running loop
            config = provider.config
            connector = aiohttp.TCPConnector(limit=config.max_connections, limit_per_host=0,
                                             keepalive_timeout=60, ttl_dns_cache=300)
            timeout = aiohttp.ClientTimeout(total=config.total_timeout_s, sock_connect=config.connect_timeout_s,
                                            sock_read=config.read_timeout_s)
            # No Accept-Encoding: upstreams answer identity, so bodies pass through and usage stays readable.
            session = aiohttp.ClientSession(connector=connector, timeout=timeout,
                                            skip_auto_headers=("User-Agent", "Accept-Encoding"))
            self._sessions[provider.name] = session
        return session

    def post(self, provider: Provider, url: str, body: bytes, extra_headers: dict[str, str] | None = None
             ) -> Http1RequestContext:
        """`async with upstream.post(...) as response` (or `__aenter__`/`__aexit__`): POST `body` to `url` with
        the provider's credentials. The URL is sent exactly as built (providers quote their path parts; SigV4
        signs them as is)."""
        headers = provider.headers(url, body)
        known = self._urls.get((provider.name, url))
        if known is None:
            if len(self._urls) >= _MAX_URLS:  # URLs naming many models (Gemini, Bedrock): keep the cache bounded
                self._urls.clear()
            parsed = yarl.URL(url, encoded=True)
            pool = self._pool(provider, parsed)
            # The head up to Content-Length, for providers whose headers are one fixed dict (all but SigV4)
            known = self._urls[(provider.name, url)] = (parsed, pool, headers,
                                                         head_without_length(parsed, pool.host_header, headers))
        parsed, pool, fixed_headers, fixed_head = known
        if headers is fixed_headers and not extra_headers:
            head = fixed_head + content_length(len(body))
        else:
            if extra_headers:
                headers = {**headers, **extra_headers}
            head = request_head(parsed, pool.host_header, headers, len(body))
        return Http1RequestContext(pool, head, body)

    def _pool(self, provider: Provider, url: yarl.URL) -> Http1Pool:
        if url.scheme not in ("http", "https"):
            raise ValueError(f"unsupported upstream URL scheme: {url.scheme!r}")
        key = (provider.name, url.scheme, url.raw_host or "", url.port)
        pool = self._pools.get(key)
        if pool is None:  # created lazily, inside the running loop
            config = provider.config
            pool = self._pools[key] = Http1Pool(
                url, limit=config.max_connections, connect_timeout_s=config.connect_timeout_s,
                read_timeout_s=config.read_timeout_s, total_timeout_s=config.total_timeout_s)
        return pool

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._urls.clear()
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
