"""The gateway on the real PostgreSQL server: migrations, keys and the usage ledger."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from tests.support.gateway import MASTER_KEY, gateway_settings, http, start_gateway
from yourouter.storage.db import create_engine

USER = [{"role": "user", "content": "hi"}]


def _scalar(database_url: str, sql: str) -> object:
    async def run() -> object:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                return (await conn.execute(text(sql))).scalar_one()
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from yourouter.storage.db import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_gateway_on_postgresql(sim_a: str, sim_b: str, postgres_url: str) -> None:
    settings = gateway_settings(sim_a, sim_b, postgres_url)
    with start_gateway(settings) as gateway:
        created = http("POST", gateway.url + "/admin/keys", {"name": "pg-key", "models": ["*"]},
                       {"Authorization": f"Bearer {MASTER_KEY}"})
        assert created.status == 201
        client = gateway.client(key=created.json()["key"])
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
        streamed = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER, stream=True)
        assert list(streamed.parse())
        rows = gateway.usage_rows(raw.headers["x-request-id"]) + gateway.usage_rows(streamed.headers["x-request-id"])
    assert [row["key_name"] for row in rows] == ["pg-key", "pg-key"]
    assert [row["streamed"] for row in rows] == [False, True]
    assert all(row["completion_tokens"] > 0 and row["status"] == 200 for row in rows)
    assert _scalar(postgres_url, "SELECT version_num FROM alembic_version") == _head_revision()
    assert _scalar(postgres_url, "SELECT count(*) FROM api_keys WHERE name = 'pg-key'") == 1
    # a second start against the migrated database is a no-op migration
    with start_gateway(settings) as again:
        assert again.get("/health", key=None).status == 200
