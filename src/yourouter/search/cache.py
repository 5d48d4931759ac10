"""The search result cache: identical queries within the TTL are answered without calling (or paying) an engine.
In the process (an LRU of `max_entries`) or in Redis (shared by every instance; values expire with `SET EX`)."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Any, Protocol

import orjson


def cache_key(engine_pin: str | None, params: dict[str, str]) -> str:
    """The query's identity: its parameters in a stable order and the engine it was pinned to (auto = any)."""
    digest = hashlib.sha256(orjson.dumps([engine_pin or "auto", sorted(params.items())])).hexdigest()
    return "search:" + digest


class SearchCache(Protocol):
    async def get(self, key: str) -> tuple[bytes, dict[str, str]] | None: ...

    async def put(self, key: str, body: bytes, meta: dict[str, str]) -> None: ...

    async def close(self) -> None: ...


class MemoryCache:
    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes, dict[str, str]]] = OrderedDict()

    async def get(self, key: str) -> tuple[bytes, dict[str, str]] | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if found[0] <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return found[1], found[2]

    async def put(self, key: str, body: bytes, meta: dict[str, str]) -> None:
        self._entries[key] = (time.monotonic() + self._ttl, body, meta)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def close(self) -> None:
        self._entries.clear()


class RedisCache:
    def __init__(self, url: str, ttl_s: float, prefix: str = "yr:") -> None:
        from redis.asyncio import Redis

        self._redis: Any = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._ttl = max(1, int(ttl_s))
        self._prefix = prefix

    async def get(self, key: str) -> tuple[bytes, dict[str, str]] | None:
        try:
            raw = await self._redis.get(self._prefix + key)
        except Exception:  # a cache that cannot answer is a miss, never an error
            return None
        if raw is None:
            return None
        stored = orjson.loads(raw)
        return stored["body"].encode(), dict(stored["meta"])

    async def put(self, key: str, body: bytes, meta: dict[str, str]) -> None:
        try:
            await self._redis.set(self._prefix + key, orjson.dumps({"body": body.decode(), "meta": meta}),
                                  ex=self._ttl)
        except Exception:
            return

    async def close(self) -> None:
        await self._redis.aclose()


def build_cache(ttl_s: float, backend: str | None, max_entries: int) -> SearchCache | None:
    if ttl_s <= 0:
        return None
    if backend:
        return RedisCache(backend, ttl_s)
    return MemoryCache(ttl_s, max_entries)
