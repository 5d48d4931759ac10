"""One usage row per request id, on SQLite and on the real PostgreSQL: a batch written again (a retry after a commit
whose reply was lost) adds nothing, and migration 0005 removes the copies an older version could leave."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.support.services import postgres_database
from yourouter.metering.ledger import UsageLedger, UsageRecord
from yourouter.storage.db import create_engine, migrate
from yourouter.storage.repositories import UsageRepository


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'usage.db'}"
    else:
        with postgres_database() as url:
            yield url


class ReplyLost(UsageRepository):
    """The first write commits, then fails as a dropped connection would: the ledger cannot know it landed."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.lost = 0

    async def insert_rows(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        await super().insert_rows(columns, rows)
        if not self.lost:
            self.lost += 1
            raise ConnectionError("connection lost before the COMMIT's reply")


async def _request_ids(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text("SELECT request_id FROM usage ORDER BY request_id"))).scalars())
    finally:
        await engine.dispose()


def test_a_batch_retried_after_its_commit_landed_is_counted_once(database: str) -> None:
    async def run() -> tuple[int, int]:
        engine = create_engine(database)
        try:
            await migrate(engine)
            repo = ReplyLost(engine)
            ledger = UsageLedger(repo, batch_size=10, flush_interval_s=0.02)
            ledger.start()
            for i in range(4):
                ledger.record(UsageRecord(request_id=f"r{i}", endpoint="chat.completions", status=200))
            while repo.lost == 0:  # the first write committed and "failed"; the rows stay pending and are retried
                await asyncio.sleep(0.01)
            ledger.record(UsageRecord(request_id="r4", endpoint="chat.completions", status=200))
            await ledger.close()
            return repo.lost, ledger.depth
        finally:
            await engine.dispose()

    lost, depth = asyncio.run(run())
    assert (lost, depth) == (1, 0)
    assert asyncio.run(_request_ids(database)) == ["r0", "r1", "r2", "r3", "r4"]


def test_migration_0005_keeps_the_first_row_of_each_request_id(database: str) -> None:
    async def run() -> list[tuple[str, int]]:
        from alembic import command
        from alembic.config import Config

        from yourouter.storage.db import MIGRATIONS

        def upgrade(connection: Any, revision: str) -> None:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

        engine = create_engine(database)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(upgrade, "0004")
                for request_id, tokens in (("a", 1), ("b", 2), ("a", 3), ("a", 4), ("c", 5), ("b", 6)):
                    await conn.execute(text(
                        "INSERT INTO usage (request_id, created_at, endpoint, status, outcome, prompt_tokens, "
                        "completion_tokens, cached_tokens, cost_usd, latency_ms, streamed, attempts) VALUES "
                        "(:id, CURRENT_TIMESTAMP, 'chat', 200, 'ok', :tokens, 0, 0, 0, 1.0, false, 1)"),
                        {"id": request_id, "tokens": tokens})
            await migrate(engine)
            async with engine.connect() as conn:
                result = await conn.execute(text("SELECT request_id, prompt_tokens FROM usage ORDER BY request_id"))
                return [(row[0], row[1]) for row in result]
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == [("a", 1), ("b", 2), ("c", 5)]
