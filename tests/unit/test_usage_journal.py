"""The ledger's write-ahead journal, on a real SQLite database: rows recorded but not yet written when a process
dies are written by the next start, exactly once; a flush deletes what it committed; a live process's journal and
another database's are left alone; a journal that cannot be written costs only the crash protection."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from yourouter.metering.journal import UsageJournal
from yourouter.metering.ledger import COLUMNS, UsageLedger, UsageRecord, journal_values
from yourouter.storage.db import create_engine, database_identity, migrate
from yourouter.storage.repositories import UsageRepository


def _journal(directory: Path, database: str) -> UsageJournal:
    identity = database_identity(database)
    assert identity is not None
    return UsageJournal(directory, identity, COLUMNS, journal_values)


def _segments(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("journal-*")) if directory.is_dir() else []


async def _rows(database: str) -> list[tuple[str, int]]:
    engine = create_engine(database)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text("SELECT request_id, prompt_tokens FROM usage ORDER BY request_id"))
            return [(row[0], row[1]) for row in result]
    finally:
        await engine.dispose()


def _record(i: int) -> UsageRecord:
    return UsageRecord(request_id=f"req_{i:03d}", endpoint="chat", key_id="k", prompt_tokens=i, status=200)


def test_rows_recorded_before_a_crash_are_written_once_by_the_next_start(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'usage.db'}"
    journal_dir = tmp_path / "spill"

    async def crashed_process() -> None:
        engine = create_engine(database)
        await migrate(engine)
        ledger = UsageLedger(UsageRepository(engine), flush_interval_s=3600, journal=_journal(journal_dir, database))
        for i in range(3):
            ledger.record(_record(i))
        await ledger.flush()  # rows 0-2 are committed and their segment deleted
        assert _segments(journal_dir) == []
        for i in range(3, 7):
            ledger.record(_record(i))
        await asyncio.sleep(0)  # one loop iteration: rows 3-6 reach the journal, not the database
        assert len(_segments(journal_dir)) == 1
        await engine.dispose()  # the process "dies": no flush, no close

    async def next_start() -> UsageLedger:
        engine = create_engine(database)
        ledger = UsageLedger(UsageRepository(engine), journal=_journal(journal_dir, database))
        await ledger.replay()
        await ledger.replay()  # nothing left to do: the segment is gone
        await engine.dispose()
        return ledger

    asyncio.run(crashed_process())
    assert [r[0] for r in asyncio.run(_rows(database))] == ["req_000", "req_001", "req_002"]
    ledger = asyncio.run(next_start())
    assert asyncio.run(_rows(database)) == [(f"req_{i:03d}", i) for i in range(7)]
    assert ledger.replayed == 4
    assert _segments(journal_dir) == []


class FailsAfterOneBatch(UsageRepository):
    """The database takes one batch, then goes away (and the process dies before it is back)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls = 0

    async def insert_rows(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.calls += 1
        if self.calls > 1:
            raise ConnectionError("the database went away")
        await super().insert_rows(columns, rows)


def test_a_segment_partly_committed_is_replayed_without_counting_twice(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'usage.db'}"
    journal_dir = tmp_path / "spill"

    async def run() -> UsageLedger:
        engine = create_engine(database)
        await migrate(engine)
        first = UsageLedger(FailsAfterOneBatch(engine), batch_size=2, journal=_journal(journal_dir, database))
        for i in range(5):
            first.record(_record(i))
        with pytest.raises(ConnectionError):
            await first.flush()  # rows 0-1 committed, 2-4 not; the segment holds all five and stays
        assert len(_segments(journal_dir)) == 1
        second = UsageLedger(UsageRepository(engine), journal=_journal(journal_dir, database))
        await second.replay()
        await engine.dispose()
        return second

    assert asyncio.run(run()).replayed == 3
    assert [r[0] for r in asyncio.run(_rows(database))] == [f"req_{i:03d}" for i in range(5)]
    assert _segments(journal_dir) == []


def test_close_and_flush_leave_no_segment_and_write_every_row(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'usage.db'}"
    journal_dir = tmp_path / "spill"

    async def run() -> None:
        engine = create_engine(database)
        await migrate(engine)
        ledger = UsageLedger(UsageRepository(engine), flush_interval_s=0.01, journal=_journal(journal_dir, database))
        ledger.start()
        for i in range(50):
            ledger.record(_record(i))
            if i % 10 == 0:
                await asyncio.sleep(0.02)
        await ledger.close()
        await engine.dispose()

    asyncio.run(run())
    assert len(asyncio.run(_rows(database))) == 50
    assert _segments(journal_dir) == []


def test_a_live_processs_journal_and_another_databases_are_left_alone(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'usage.db'}"
    journal_dir = tmp_path / "spill"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        async def run() -> None:
            engine = create_engine(database)
            await migrate(engine)
            live = _journal(journal_dir, database)
            live._pid = sleeper.pid  # a segment written by another process that is still running
            other_db = _journal(journal_dir, f"sqlite:///{tmp_path / 'other.db'}")
            other_db._pid = 2**22 + 12345  # no such process
            for journal, i in ((live, 1), (other_db, 2)):
                journal.append(_record(i))
                await asyncio.sleep(0)
            ledger = UsageLedger(UsageRepository(engine), journal=_journal(journal_dir, database))
            await ledger.replay()
            assert ledger.replayed == 0
            await engine.dispose()

        asyncio.run(run())
        assert asyncio.run(_rows(database)) == []
        assert len(_segments(journal_dir)) == 2
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'usage.db'}"
    journal_dir = tmp_path / "spill"

    async def run() -> UsageLedger:
        engine = create_engine(database)
        await migrate(engine)
        dead = _journal(journal_dir, database)
        dead.append(_record(1))
        dead.append(_record(2))
        await asyncio.sleep(0)
        segment = next(journal_dir.glob("journal-*"))
        with open(segment, "ab") as out:
            out.write(b'["req_003", "chat", 1.0')  # the process died mid-write
        ledger = UsageLedger(UsageRepository(engine), journal=_journal(journal_dir, database))
        await ledger.replay()
        await engine.dispose()
        return ledger

    assert asyncio.run(run()).replayed == 2
    assert [r[0] for r in asyncio.run(_rows(database))] == ["req_001", "req_002"]


def test_an_unwritable_journal_only_loses_the_crash_protection(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'usage.db'}"
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the journal's directory should be")

    async def run() -> UsageJournal:
        engine = create_engine(database)
        await migrate(engine)
        journal = _journal(blocked, database)
        ledger = UsageLedger(UsageRepository(engine), flush_interval_s=0.01, journal=journal)
        ledger.start()
        for i in range(3):
            ledger.record(_record(i))
        await asyncio.sleep(0.05)
        assert not ledger.journal_ok  # shown at /metrics as yourouter_ledger_journal_ok 0
        await ledger.close()
        await engine.dispose()
        return journal

    assert asyncio.run(run()).broken
    assert len(asyncio.run(_rows(database))) == 3


def test_no_journal_for_an_in_memory_database() -> None:
    assert database_identity("sqlite://") is None
    assert database_identity("sqlite:///:memory:") is None
    assert database_identity("sqlite+aiosqlite:///:memory:") is None
    assert database_identity("sqlite:///relative.db") == database_identity(f"sqlite:///{os.getcwd()}/relative.db")
    assert database_identity("postgresql://u:one@h/db") == database_identity("postgresql://u:two@h/db")
    assert database_identity("postgresql://u@h/db") != database_identity("postgresql://u@h/other")
