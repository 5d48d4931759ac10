"""Database engines: URL normalisation, SQLite pragmas, and running the Alembic migrations."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, event, inspect, select, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).with_name("migrations")


def async_url(url: str) -> str:
    """`sqlite:///x.db` -> `sqlite+aiosqlite:///x.db`, `postgresql://` -> `postgresql+asyncpg://`."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend in ("postgresql", "postgres") and "+" not in parsed.drivername:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def database_identity(url: str) -> str | None:
    """What names one database whatever the URL's spelling (the driver, a password, a relative SQLite path), for
    local files that belong to it (the ledger's journal and spill files); None for an in-memory database, which
    has no later."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            return None
        return "sqlite:" + os.path.abspath(parsed.database)
    parsed = parsed.set(drivername="postgresql" if backend == "postgres" else backend)
    return parsed.render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets several worker processes read while one writes; busy_timeout waits instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    normalized = async_url(url)
    if normalized.startswith("sqlite"):
        engine = create_async_engine(normalized)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(normalized, pool_size=5, max_overflow=5, pool_pre_ping=True)


#: The newest migration in `migrations/versions`; `tests/unit/test_migrations.py` checks it against Alembic's head.
HEAD_REVISION = "0005"
#: Any fixed number: the advisory lock that serialises concurrent migrations on PostgreSQL (env.py takes it too).
MIGRATION_LOCK = 7_410_215_733
#: Alembic's own bookkeeping table, as `alembic stamp` creates it.
_versions = Table("alembic_version", MetaData(),
                  Column("version_num", String(32), nullable=False),
                  PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))


def _version(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(select(_versions.c.version_num)).scalar()


def _upgrade(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _migrate(connection: Connection) -> None:
    if _version(connection) == HEAD_REVISION:
        return  # every start after the first: no Alembic import (~0.15 s) and no migration scripts to load
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK})
    version = _version(connection)  # read again under the lock: another instance may have migrated meanwhile
    if version == HEAD_REVISION:
        return
    if version is None and not inspect(connection).get_table_names():
        # An empty database: build the newest schema directly and stamp it, as Alembic's docs recommend for a
        # fresh install ("create_all, then stamp head"). The test that checks HEAD_REVISION also checks that this
        # schema equals the one the migrations build, on SQLite and PostgreSQL.
        from yourouter.storage.tables import metadata

        metadata.create_all(connection)
        _versions.create(connection)
        connection.execute(_versions.insert().values(version_num=HEAD_REVISION))
        return
    _upgrade(connection)


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest migration (idempotent; serialised across instances on PostgreSQL)."""
    async with engine.begin() as connection:
        await connection.run_sync(_migrate)
