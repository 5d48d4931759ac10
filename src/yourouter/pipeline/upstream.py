"""Outbound HTTP: one aiohttp session (one keep-alive connection pool) per upstream deployment.

aiohttp rather than httpx: measured here, httpx's pool costs 15-20x more CPU per proxied request under
concurrency (see docs/design.md and ../shared/bench/README.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import aiohttp
import yarl

from yourouter.providers.base import Provider

_MAX_URLS = 4096


class UpstreamPool:
    def __init__(self, providers: Iterable[Provider]) -> None:
        self._providers = {p.name: p for p in providers}
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._urls: dict[str, yarl.URL] = {}  # a deployment's few URLs, parsed once (yarl costs ~3 us a parse)

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
             ) -> aiohttp.client._RequestContextManager:
        headers = provider.headers(url, body)
        if extra_headers:
            headers = {**headers, **extra_headers}
        # encoded=True: the URL is sent exactly as built (providers quote their path parts; SigV4 signs them as is)
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= _MAX_URLS:  # URLs naming many models (Gemini, Bedrock): keep the cache bounded
                self._urls.clear()
            parsed = self._urls[url] = yarl.URL(url, encoded=True)
        return self.session(provider).post(parsed, data=body, headers=headers)

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
