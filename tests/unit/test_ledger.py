"""The usage ledger keeps rows through write failures and drains them on close."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from yourouter.metering.ledger import UsageLedger, UsageRecord
from yourouter.metering.spill import SpillFile


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


class CommitsWhenCancelled:
    """A database whose commit lands even when the client gives up waiting for it (asyncpg cancelled mid-COMMIT)."""

    def __init__(self) -> None:
        self.rows: list[str] = []
        self.writing = asyncio.Event()

    async def insert_rows(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        ids = [dict(zip(columns, row, strict=True))["request_id"] for row in rows]
        self.writing.set()
        try:
            await asyncio.sleep(0.05)
        finally:
            self.rows.extend(ids)  # committed, cancelled or not


def test_close_during_a_write_does_not_write_its_rows_again() -> None:
    async def run() -> CommitsWhenCancelled:
        repo = CommitsWhenCancelled()
        ledger = UsageLedger(repo, batch_size=5, flush_interval_s=60)  # type: ignore[arg-type]
        ledger.start()
        for i in range(5):  # a full batch wakes the writer
            ledger.record(UsageRecord(request_id=f"r{i}", endpoint="chat.completions"))
        await repo.writing.wait()
        ledger.record(UsageRecord(request_id="r5", endpoint="chat.completions"))
        await ledger.close()  # graceful shutdown while the batch is being written
        assert ledger.depth == 0
        return repo

    repo = asyncio.run(run())
    assert repo.rows == [f"r{i}" for i in range(6)]  # each once


class Table:
    """A usage table that can be down, and remembers request ids (for idempotent replays)."""

    def __init__(self) -> None:
        self.down = False
        self.rows: list[dict[str, Any]] = []

    async def insert_rows(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if self.down:
            raise ConnectionError("database down")
        self.rows.extend(dict(zip(columns, row, strict=True)) for row in rows)

    async def existing_request_ids(self, request_ids: Sequence[str]) -> set[str]:
        if self.down:
            raise ConnectionError("database down")
        return {row["request_id"] for row in self.rows} & set(request_ids)


def _ids(table: Table) -> list[str]:
    return sorted(row["request_id"] for row in table.rows)


def test_a_full_queue_spills_to_disk_and_replays_when_the_database_is_back(tmp_path: Path) -> None:
    async def run() -> tuple[Table, UsageLedger]:
        table = Table()
        table.down = True
        ledger = UsageLedger(table, batch_size=2, flush_interval_s=0.01, max_pending=3,  # type: ignore[arg-type]
                             spill=SpillFile(tmp_path))
        ledger.start()
        for i in range(10):
            ledger.record(UsageRecord(request_id=f"r{i}", endpoint="chat.completions", cost_usd=0.25))
        assert ledger.depth == 3 and ledger.spilled == 7
        assert len(list(tmp_path.glob("usage-*.jsonl"))) == 1
        table.down = False
        for _ in range(100):
            await asyncio.sleep(0.02)
            if len(table.rows) == 10:
                break
        await ledger.close()
        return table, ledger

    table, ledger = asyncio.run(run())
    assert _ids(table) == sorted(f"r{i}" for i in range(10)) and ledger.replayed == 7
    assert not list(tmp_path.glob("usage-*.jsonl")) and all(row["cost_usd"] == 0.25 for row in table.rows)


def test_rows_unwritten_at_shutdown_are_kept_and_replayed_once_at_the_next_start(tmp_path: Path) -> None:
    table = Table()

    async def first_run() -> None:
        table.down = True
        ledger = UsageLedger(table, flush_interval_s=60, spill=SpillFile(tmp_path))  # type: ignore[arg-type]
        for i in range(5):
            ledger.record(UsageRecord(request_id=f"s{i}", endpoint="messages"))
        await ledger.close(attempts=1)
        assert ledger.spilled == 5 and ledger.dropped == 0

    async def next_run() -> UsageLedger:
        table.down = False
        ledger = UsageLedger(table, flush_interval_s=0.01, spill=SpillFile(tmp_path))  # type: ignore[arg-type]
        ledger.start()
        await asyncio.sleep(0.1)
        await ledger.close()
        return ledger

    asyncio.run(first_run())
    spilled = next(tmp_path.glob("usage-*.jsonl"))
    copy = spilled.read_bytes()
    assert asyncio.run(next_run()).replayed == 5 and _ids(table) == [f"s{i}" for i in range(5)]
    # a replay that committed but crashed before removing its file: the next one skips what is there
    spilled.write_bytes(copy + b'{"request_id": "torn", "endp')  # and a torn last line (crash mid-write)
    assert asyncio.run(next_run()).replayed == 0 and len(table.rows) == 5


def test_another_live_processs_spill_file_is_left_alone(tmp_path: Path) -> None:
    live = tmp_path / f"usage-{os.getppid()}-1.jsonl"
    gone = tmp_path / "usage-999999999-1.jsonl"  # no such pid
    for path in (live, gone):
        path.write_bytes(b'{"request_id": "' + path.stem.encode() + b'", "endpoint": "x"}\n')
    assert SpillFile(tmp_path).replayable() == [gone]


def test_spill_files_are_replayed_only_into_their_own_database(tmp_path: Path) -> None:
    """Two gateways of different databases may share a spill directory; files from before the database digest
    (no digest in the name) are replayed as before."""
    mine, other = SpillFile(tmp_path, "sqlite:/srv/a.db"), SpillFile(tmp_path, "sqlite:/srv/b.db")
    mine.append([{"request_id": "a", "endpoint": "x"}])
    other.append([{"request_id": "b", "endpoint": "x"}])
    legacy = tmp_path / "usage-999999999-1.jsonl"  # an older version's file, of a process that is gone
    legacy.write_bytes(b'{"request_id": "old", "endpoint": "x"}\n')
    assert SpillFile(tmp_path, "sqlite:/srv/a.db").replayable() == sorted([mine.path, legacy])
    assert SpillFile(tmp_path, "sqlite:/srv/b.db").replayable() == sorted([other.path, legacy])
