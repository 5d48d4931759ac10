"""Repository classes: the only code that writes SQL. Auth, metering and the CLI use these."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from yourouter.storage.tables import api_keys, usage


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A client key as the database keeps it (hash only)."""

    id: str
    name: str
    key_hash: str
    key_prefix: str
    models: tuple[str, ...]
    created_at: dt.datetime
    revoked_at: dt.datetime | None


def _stored_key(row: Any) -> StoredKey:
    return StoredKey(id=row.id, name=row.name, key_hash=row.key_hash, key_prefix=row.key_prefix,
                     models=tuple(row.models or ()), created_at=row.created_at, revoked_at=row.revoked_at)


class KeyRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, *, key_id: str, name: str, key_hash: str, key_prefix: str, models: Sequence[str]) -> StoredKey:
        created_at = utcnow()
        row = {"id": key_id, "name": name, "key_hash": key_hash, "key_prefix": key_prefix,
               "models": list(models), "created_at": created_at, "revoked_at": None}
        async with self._engine.begin() as conn:
            await conn.execute(insert(api_keys).values(**row))
        return StoredKey(id=key_id, name=name, key_hash=key_hash, key_prefix=key_prefix, models=tuple(models),
                         created_at=created_at, revoked_at=None)

    async def by_hash(self, key_hash: str) -> StoredKey | None:
        async with self._engine.connect() as conn:
            result = await conn.execute(select(api_keys).where(api_keys.c.key_hash == key_hash))
            row = result.first()
        return _stored_key(row) if row is not None else None

    async def by_id(self, key_id: str) -> StoredKey | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        return _stored_key(row) if row is not None else None

    async def all(self) -> list[StoredKey]:
        async with self._engine.connect() as conn:
            result = await conn.execute(select(api_keys).order_by(api_keys.c.created_at))
            return [_stored_key(row) for row in result]

    async def revoke(self, key_id: str) -> StoredKey | None:
        async with self._engine.begin() as conn:
            await conn.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                               .values(revoked_at=utcnow()))
        return await self.by_id(key_id)


def _sqlite_value(value: Any) -> Any:
    # The text form SQLAlchemy's SQLite DateTime type reads back (UTC, no offset).
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


class UsageRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        async with self._engine.begin() as conn:
            await conn.execute(insert(usage), [dict(row) for row in rows])

    async def insert_rows(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Bulk insert of plain tuples with one driver-level executemany: SQLAlchemy's per-row parameter
        processing cost ~25 us a row on the event loop."""
        if not rows:
            return
        names = ", ".join(columns)
        if self._engine.dialect.name == "sqlite":
            marks = ", ".join("?" for _ in columns)
            rows = [tuple(_sqlite_value(v) for v in row) for row in rows]
        else:
            marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        async with self._engine.begin() as conn:
            await conn.exec_driver_sql(f"INSERT INTO usage ({names}) VALUES ({marks})", list(rows))

    async def by_request_id(self, request_id: str) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            result = await conn.execute(select(usage).where(usage.c.request_id == request_id))
            return [dict(row._mapping) for row in result]

    async def count(self) -> int:
        from sqlalchemy import func

        async with self._engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(usage))).scalar_one())
