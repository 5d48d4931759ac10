"""Repository classes: the only code that writes SQL. Auth, metering and the CLI use these."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from yourouter.storage.tables import api_keys, usage

_NANO = Decimal("0.000000001")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


#: Key attribute columns, by the name `KeyAttributes` gives them.
KEY_ATTRIBUTES = ("models", "vendors", "rpm", "tpm", "max_concurrency", "budget_usd", "budget_period", "expires_at",
                  "disabled", "metadata")


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
    vendors: tuple[str, ...] = ("*",)
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    budget_usd: Decimal | None = None
    budget_period: str | None = None
    expires_at: dt.datetime | None = None
    disabled: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    updated_at: dt.datetime | None = None


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite gives back naive datetimes: they were written as UTC."""
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def _stored_key(row: Any) -> StoredKey:
    budget = row.budget_usd
    return StoredKey(id=row.id, name=row.name, key_hash=row.key_hash, key_prefix=row.key_prefix,
                     models=tuple(row.models or ()), created_at=_aware(row.created_at) or row.created_at,
                     revoked_at=_aware(row.revoked_at), vendors=tuple(row.vendors or ("*",)), rpm=row.rpm,
                     tpm=row.tpm, max_concurrency=row.max_concurrency,
                     budget_usd=Decimal(budget) if budget is not None else None, budget_period=row.budget_period,
                     expires_at=_aware(row.expires_at), disabled=bool(row.disabled), metadata=dict(row.metadata or {}),
                     updated_at=_aware(row.updated_at))


def _column_values(attributes: Mapping[str, Any]) -> dict[str, Any]:
    values = {name: attributes[name] for name in KEY_ATTRIBUTES if name in attributes}
    for name in ("models", "vendors"):
        if name in values:
            values[name] = list(values[name])
    return values


class KeyRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, *, key_id: str, name: str, key_hash: str, key_prefix: str,
                  attributes: Mapping[str, Any]) -> StoredKey:
        row = {"id": key_id, "name": name, "key_hash": key_hash, "key_prefix": key_prefix, "created_at": utcnow(),
               "revoked_at": None, "models": ["*"], **_column_values(attributes)}
        async with self._engine.begin() as conn:
            await conn.execute(insert(api_keys).values(**row))
        found = await self.by_id(key_id)
        assert found is not None
        return found

    async def update(self, key_id: str, *, name: str | None = None, attributes: Mapping[str, Any]) -> StoredKey | None:
        """Changes the given attributes (and name) of a key that is not revoked; None when there is none."""
        values = _column_values(attributes)
        if name is not None:
            values["name"] = name
        values["updated_at"] = utcnow()
        async with self._engine.begin() as conn:
            result = await conn.execute(update(api_keys).where(api_keys.c.id == key_id,
                                                               api_keys.c.revoked_at.is_(None)).values(**values))
        return await self.by_id(key_id) if result.rowcount else None

    async def rotate(self, key_id: str, *, key_hash: str, key_prefix: str) -> tuple[StoredKey, str] | None:
        """A new secret for the same key (id, attributes and spend stay); returns the key and its old hash."""
        old = await self.by_id(key_id)
        if old is None or old.revoked_at is not None:
            return None
        async with self._engine.begin() as conn:
            await conn.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.key_hash == old.key_hash)
                               .values(key_hash=key_hash, key_prefix=key_prefix, updated_at=utcnow()))
        found = await self.by_id(key_id)
        assert found is not None
        return found, old.key_hash

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


def _sqlite_datetime(value: dt.datetime) -> str:
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(dt.UTC)
    return f"{_sqlite_second(value.replace(microsecond=0, tzinfo=None))}.{value.microsecond:06d}"


@functools.lru_cache(maxsize=8)
def _sqlite_second(second: dt.datetime) -> str:
    """A batch's rows share a few seconds: each is formatted once."""
    return second.strftime("%Y-%m-%d %H:%M:%S")


def _sqlite_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Rows with their datetime values as SQLite text. A column holds one type or None, so only the columns that
    are a datetime or None in the first row are looked at."""
    where = [i for i, value in enumerate(rows[0]) if value is None or isinstance(value, dt.datetime)]
    if not where:
        return [tuple(row) for row in rows]
    converted = []
    for row in rows:
        values = list(row)
        for i in where:
            value = values[i]
            if isinstance(value, dt.datetime):
                values[i] = _sqlite_datetime(value)
        converted.append(tuple(values))
    return converted


class UsageRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert_rows(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Bulk insert of plain tuples with one driver-level executemany: SQLAlchemy's per-row parameter
        processing cost ~25 us a row on the event loop. A row whose request id is already there is skipped, so a
        batch retried after a commit whose reply was lost is not counted twice."""
        if not rows:
            return
        names = ", ".join(columns)
        if self._engine.dialect.name == "sqlite":
            marks = ", ".join("?" for _ in columns)
            rows = _sqlite_rows(rows)
        else:
            marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        async with self._engine.begin() as conn:
            await conn.exec_driver_sql(
                f"INSERT INTO usage ({names}) VALUES ({marks}) ON CONFLICT (request_id) DO NOTHING", list(rows))

    async def existing_request_ids(self, request_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        async with self._engine.connect() as conn:
            for start in range(0, len(request_ids), 500):
                chunk = list(request_ids[start:start + 500])
                result = await conn.execute(select(usage.c.request_id).where(usage.c.request_id.in_(chunk)))
                found.update(row[0] for row in result)
        return found

    async def by_request_id(self, request_id: str) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            result = await conn.execute(select(usage).where(usage.c.request_id == request_id))
            return [dict(row._mapping) for row in result]

    async def spend(self, key_id: str, since: dt.datetime | None) -> Decimal:
        """What a key's requests cost since a time (or ever), by the ledger."""
        from sqlalchemy import func

        query = select(func.coalesce(func.sum(usage.c.cost_usd), 0)).where(usage.c.key_id == key_id)
        if since is not None:
            query = query.where(usage.c.created_at >= since)
        async with self._engine.connect() as conn:
            total = (await conn.execute(query)).scalar_one()
        return Decimal(str(total)).quantize(_NANO)  # SQLite sums NUMERIC as floats

    async def requests(self, key_id: str, since: dt.datetime | None) -> int:
        """How many requests a key made since a time (or ever), by the ledger."""
        from sqlalchemy import func

        query = select(func.count()).select_from(usage).where(usage.c.key_id == key_id)
        if since is not None:
            query = query.where(usage.c.created_at >= since)
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def count(self) -> int:
        from sqlalchemy import func

        async with self._engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(usage))).scalar_one())


class LedgerSpend:
    """What a limits backend starts a budget period from: the ledger's sum for the key (scope `key:<id>`)."""

    def __init__(self, usage_repository: UsageRepository) -> None:
        self._usage = usage_repository

    async def committed_spend(self, scope: str, since: dt.datetime | None) -> Decimal:
        kind, _, ident = scope.partition(":")
        if kind != "key":
            return Decimal(0)
        return await self._usage.spend(ident, since)
