"""`storage.db.migrate`'s fast paths equal what the Alembic migrations build, on SQLite and PostgreSQL.

An empty database gets the newest schema from `tables.metadata` and is stamped (no Alembic); a database at the head
revision is left alone (no Alembic import); anything else goes through the migrations. The schemas the two routes
build must be identical, or a fresh install and an upgraded one would differ.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from tests.support.services import postgres_database
from yourouter.storage import db
from yourouter.storage.db import HEAD_REVISION, MIGRATIONS, create_engine, migrate


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _alembic_upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    command.upgrade(_alembic_config(connection), revision)


def _schema(connection: Connection) -> dict[str, Any]:
    """Everything the inspector reports, in a comparable form (types as their compiled SQL)."""
    inspector = inspect(connection)
    schema: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        schema[table] = {
            "columns": [(c["name"], str(c["type"].compile(dialect=connection.dialect)), c["nullable"],
                         str(c.get("default")), c.get("autoincrement") is True) for c in inspector.get_columns(table)],
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                              for i in inspector.get_indexes(table)),
            "unique": sorted((tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)),
            "foreign_keys": sorted((tuple(f["constrained_columns"]), f["referred_table"],
                                    tuple(f["referred_columns"])) for f in inspector.get_foreign_keys(table)),
            "checks": sorted(str(c["sqltext"]) for c in inspector.get_check_constraints(table)),
        }
    return schema


async def _run(url: str, work: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(work)
    finally:
        await engine.dispose()


async def _migrate_then_schema(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        await migrate(engine)
        async with engine.connect() as connection:
            return await connection.run_sync(_schema)
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def two_databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    else:
        with postgres_database() as a, postgres_database() as b:
            yield a, b


def test_head_revision_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)  # type: ignore[arg-type]
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD_REVISION]


def test_a_fresh_database_gets_the_schema_the_migrations_build(two_databases: tuple[str, str]) -> None:
    by_migrations, fresh = two_databases
    asyncio.run(_run(by_migrations, lambda c: _alembic_upgrade(c, "head")))
    expected = asyncio.run(_run(by_migrations, _schema))

    got = asyncio.run(_migrate_then_schema(fresh))

    assert got == expected
    assert {"usage", "api_keys", "alembic_version"} <= set(got)
    assert asyncio.run(_run(fresh, db._version)) == HEAD_REVISION


def test_an_older_database_is_upgraded_by_the_migrations(two_databases: tuple[str, str]) -> None:
    reference, old = two_databases
    asyncio.run(_run(reference, lambda c: _alembic_upgrade(c, "head")))
    asyncio.run(_run(old, lambda c: _alembic_upgrade(c, "0002")))
    asyncio.run(_run(old, lambda c: c.execute(text(
        "INSERT INTO usage (request_id, created_at, endpoint, status, outcome, prompt_tokens, completion_tokens, "
        "cached_tokens, cost_usd, latency_ms, streamed, attempts) VALUES ('r1', CURRENT_TIMESTAMP, 'chat', 200, "
        "'ok', 1, 2, 0, 0, 1.5, false, 1)"))))
    assert asyncio.run(_run(old, db._version)) == "0002"

    got = asyncio.run(_migrate_then_schema(old))

    assert got == asyncio.run(_run(reference, _schema))
    assert asyncio.run(_run(old, db._version)) == HEAD_REVISION
    assert asyncio.run(_run(old, lambda c: c.execute(text("SELECT request_id FROM usage")).scalars().all())) == ["r1"]


def test_a_database_at_head_starts_without_importing_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'head.db'}"
    asyncio.run(_migrate_then_schema(url))
    probe = ("import asyncio, sys\n"
             "from yourouter.storage.db import create_engine, migrate\n"
             "async def main():\n"
             f"    engine = create_engine({url!r})\n"
             "    await migrate(engine)\n"
             "    await engine.dispose()\n"
             "asyncio.run(main())\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_an_empty_database_with_foreign_tables_goes_through_the_migrations(tmp_path: Path) -> None:
    """Tables of someone else's in the database: not 'empty', so the migrations (which create only ours) run."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    asyncio.run(_run(url, lambda c: c.execute(text("CREATE TABLE other_app (id INTEGER PRIMARY KEY)"))))
    schema = asyncio.run(_migrate_then_schema(url))
    assert "other_app" in schema and "usage" in schema
    assert asyncio.run(_run(url, db._version)) == HEAD_REVISION
