"""The usage ledger keeps rows through write failures and drains them on close."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from yourouter.metering.ledger import UsageLedger, UsageRecord


class FlakyUsage:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.rows: list[Mapping[str, Any]] = []
        self.calls = 0

    async def insert_rows(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database down")
        self.rows.extend(dict(zip(columns, row, strict=True)) for row in rows)


def test_rows_survive_write_failures_and_close_drains() -> None:
    async def run() -> FlakyUsage:
        repo = FlakyUsage(failures=2)
        ledger = UsageLedger(repo, batch_size=3, flush_interval_s=0.01)  # type: ignore[arg-type]
        ledger.start()
        for i in range(10):
            ledger.record(UsageRecord(request_id=f"r{i}", endpoint="chat.completions"))
        await asyncio.sleep(0.2)
        await ledger.close()
        assert ledger.depth == 0 and ledger.written == 10
        return repo

    repo = asyncio.run(run())
    assert [row["request_id"] for row in repo.rows] == [f"r{i}" for i in range(10)]
    assert max(len(repo.rows[i:i + 3]) for i in range(0, 10, 3)) <= 3


def test_close_without_start_flushes_everything() -> None:
    async def run() -> FlakyUsage:
        repo = FlakyUsage(failures=1)
        ledger = UsageLedger(repo, batch_size=500, flush_interval_s=60)  # type: ignore[arg-type]
        for i in range(7):
            ledger.record(UsageRecord(request_id=f"r{i}", endpoint="embeddings"))
        await ledger.close()
        return repo

    repo = asyncio.run(run())
    assert len(repo.rows) == 7 and repo.calls == 2
