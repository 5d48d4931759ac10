"""Client keys: generation, hashing, and the in-memory cache that keeps the database off the request path."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any

from yourouter.config.schema import KeyAttributes, StaticKey
from yourouter.storage.repositories import KeyRepository, StoredKey

KEY_PREFIX = "sk-yr-"
_NEGATIVE_TTL_S = 2.0
_MAX_NEGATIVE_ENTRIES = 10_000


def hash_key(key: str) -> str:
    """Keys are 256-bit random tokens, so a plain SHA-256 is a safe, fast lookup hash."""
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class ClientKey:
    """An authenticated caller and what it may do."""

    id: str
    name: str
    models: tuple[str, ...]
    source: str  # "static" (config file) or "database"
    vendors: tuple[str, ...] = ("*",)
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    budget_usd: Decimal | None = None
    budget_period: str | None = None  # "day" | "month" | None (lifetime)
    expires_at: float | None = None  # epoch seconds
    disabled: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def allows(self, model: str) -> bool:
        return _matches(self.models, model)

    def allows_vendor(self, vendor: str) -> bool:
        return _matches(self.vendors, vendor)

    def may_use(self, model: str, vendors: tuple[str, ...]) -> bool:
        """For model lists: the model is allowed and served by a vendor the key may reach."""
        return self.allows(model) and (self.all_vendors or any(self.allows_vendor(v) for v in vendors))

    @property
    def all_vendors(self) -> bool:
        return "*" in self.vendors

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    @property
    def limited(self) -> bool:
        """Whether admission has anything to check for this key."""
        return bool(self.rpm or self.tpm or self.max_concurrency or self.budget_usd is not None)


def _matches(patterns: tuple[str, ...], value: str) -> bool:
    for pattern in patterns:
        if pattern == "*" or pattern == value or ("*" in pattern and fnmatchcase(value, pattern)):
            return True
    return False


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A key just created or rotated: the only time its clear text exists outside the client's hands."""

    key: str
    record: StoredKey


def _client_key(key_id: str, name: str, source: str, attributes: Any) -> ClientKey:
    expires = attributes.expires_at
    return ClientKey(id=key_id, name=name, models=tuple(attributes.models), source=source,
                     vendors=tuple(attributes.vendors or ("*",)), rpm=attributes.rpm, tpm=attributes.tpm,
                     max_concurrency=attributes.max_concurrency, budget_usd=attributes.budget_usd,
                     budget_period=attributes.budget_period,
                     expires_at=expires.timestamp() if expires is not None else None,
                     disabled=bool(attributes.disabled), metadata=dict(attributes.metadata or {}))


def _static_client_key(entry: StaticKey) -> tuple[str, ClientKey]:
    return hash_key(entry.key), _client_key("static:" + entry.name, entry.name, "static", entry)


class KeyStore:
    """Authenticates presented keys: static keys from config, then database keys through a TTL cache.

    Concurrent misses for the same key share one database read. Revocations made through this process apply at
    once; those made by another process (CLI, another worker or instance) apply within `ttl_s`.
    """

    def __init__(self, static_keys: Iterable[StaticKey], repository: KeyRepository | None, ttl_s: float) -> None:
        self._static = dict(_static_client_key(entry) for entry in static_keys)
        self._repository = repository
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[ClientKey | None, float]] = {}
        self._pending: dict[str, asyncio.Future[ClientKey | None]] = {}

    async def authenticate(self, presented: str) -> ClientKey | None:
        digest = hash_key(presented)
        static = self._static.get(digest)
        if static is not None:
            return static
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        if self._repository is None:
            return None
        pending = self._pending.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[ClientKey | None] = asyncio.get_running_loop().create_future()
        self._pending[digest] = future
        try:
            found = await self._load(digest)
            future.set_result(found)
            return found
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        finally:
            del self._pending[digest]

    async def _load(self, digest: str) -> ClientKey | None:
        assert self._repository is not None
        stored = await self._repository.by_hash(digest)
        found = None
        if stored is not None and stored.revoked_at is None:
            found = _client_key(stored.id, stored.name, "database", stored)
        ttl = self._ttl_s if found is not None else min(self._ttl_s, _NEGATIVE_TTL_S)
        if found is None and len(self._cache) > _MAX_NEGATIVE_ENTRIES:
            self._cache = {k: v for k, v in self._cache.items() if v[0] is not None}
        self._cache[digest] = (found, time.monotonic() + ttl)
        return found

    # Management (CLI and admin API) -------------------------------------------------------------------------

    def _require_repository(self) -> KeyRepository:
        if self._repository is None:
            raise RuntimeError("no database configured for keys")
        return self._repository

    async def create(self, name: str, attributes: KeyAttributes) -> CreatedKey:
        key = generate_key()
        record = await self._require_repository().add(
            key_id=new_key_id(), name=name, key_hash=hash_key(key), key_prefix=key[: len(KEY_PREFIX) + 4],
            attributes=attributes.model_dump())
        self._cache.pop(record.key_hash, None)
        return CreatedKey(key=key, record=record)

    async def all(self) -> list[StoredKey]:
        return await self._require_repository().all()

    async def get(self, key_id: str) -> StoredKey | None:
        return await self._require_repository().by_id(key_id)

    async def update(self, key_id: str, changes: Mapping[str, Any], name: str | None = None) -> StoredKey | None:
        """Changes some attributes (validated by the caller as `KeyAttributes` fields); applies at once here."""
        record = await self._require_repository().update(key_id, name=name, attributes=changes)
        if record is not None:
            self._cache.pop(record.key_hash, None)
        return record

    async def rotate(self, key_id: str) -> CreatedKey | None:
        """A new secret for the key: the old one stops working (here at once, elsewhere within the cache TTL)."""
        key = generate_key()
        rotated = await self._require_repository().rotate(key_id, key_hash=hash_key(key),
                                                          key_prefix=key[: len(KEY_PREFIX) + 4])
        if rotated is None:
            return None
        record, old_hash = rotated
        self._cache.pop(old_hash, None)
        return CreatedKey(key=key, record=record)

    async def revoke(self, key_id: str) -> StoredKey | None:
        record = await self._require_repository().revoke(key_id)
        if record is not None:
            self._cache.pop(record.key_hash, None)
        return record

    @property
    def static_keys(self) -> list[ClientKey]:
        return list(self._static.values())
