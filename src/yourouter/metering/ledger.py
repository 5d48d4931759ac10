"""The usage ledger: one row per request, written in batches off the request path."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import operator
import time
from collections import deque
from dataclasses import dataclass, field, fields

from yourouter.metering.journal import UsageJournal
from yourouter.metering.spill import SpillFile
from yourouter.storage.repositories import UsageRepository

log = logging.getLogger("yourouter.ledger")


@dataclass(slots=True)
class UsageRecord:
    """What one request did. Filled in by the pipeline as the request progresses."""

    request_id: str
    endpoint: str
    created_at: float = field(default_factory=time.time)  # epoch seconds; converted when written
    key_id: str | None = None
    key_name: str | None = None
    model: str | None = None
    vendor: str | None = None
    deployment: str | None = None
    status: int = 0
    outcome: str = "ok"
    error_type: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    ttfb_ms: float | None = None
    streamed: bool = False
    attempts: int = 0
    detail: str | None = None
    budget_period: str | None = None
    unpriced: bool = False


#: Ledger columns, in the order `_values` produces them.
COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(UsageRecord))


_COLUMN_VALUES = operator.attrgetter(*COLUMNS)
_CREATED_AT = COLUMNS.index("created_at")
#: A row for the journal: its values in `COLUMNS` order, `created_at` as epoch seconds (as the spill file has it).
journal_values = _COLUMN_VALUES


def _values(row: UsageRecord) -> tuple[object, ...]:
    """A row as a plain tuple (no deep copies: `dataclasses.asdict` cost ~45 us a row here; one attrgetter call
    instead of a getattr per column)."""
    values = list(_COLUMN_VALUES(row))
    values[_CREATED_AT] = dt.datetime.fromtimestamp(row.created_at, dt.UTC)
    return tuple(values)


def _row(record: UsageRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in COLUMNS}


def table_row(record: UsageRecord) -> dict[str, object]:
    """A row as the `usage` table takes it (for writes outside the batched ledger, such as settlements)."""
    return dict(zip(COLUMNS, _values(record), strict=True))


def _record(row: dict[str, object]) -> UsageRecord:
    return UsageRecord(**{name: value for name, value in row.items() if name in COLUMNS})  # type: ignore[arg-type]


class UsageLedger:
    """Collects `UsageRecord`s and writes them in batches from one background task.

    `record` never awaits. A failed write keeps its rows and is retried; `close` drains everything (graceful
    shutdown). The queue is bounded (`max_pending`): beyond it, and for rows still unwritten when the database
    stays down through shutdown, rows go to the spill file (fsynced), replayed at the next start or as soon as
    the database answers again — so no accepted row is lost short of the machine losing its disk. With a journal,
    every row is also on local disk from one event-loop iteration after `record` until its batch is committed, so
    a killed process loses none either: the next start writes them (`replay`).
    """

    def __init__(self, repository: UsageRepository, *, batch_size: int = 500, flush_interval_s: float = 0.5,
                 max_pending: int = 100_000, spill: SpillFile | None = None,
                 journal: UsageJournal | None = None) -> None:
        self._repository = repository
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._max_pending = max_pending
        self._spill = spill
        self._journal = journal
        self._pending: deque[UsageRecord] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writing: asyncio.Future[None] | None = None  # the background task's current write
        self._closing = False
        self._replay_due = spill is not None or journal is not None  # files of an earlier run, at start
        self.written = 0
        self.spilled = 0
        self.replayed = 0
        self.dropped = 0  # only when there is no spill file (tests, embedded use)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-ledger")

    def record(self, row: UsageRecord) -> None:
        if len(self._pending) >= self._max_pending:
            self._overflow([row])
            return
        self._pending.append(row)
        if self._journal is not None:
            self._journal.append(row)
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    def _overflow(self, rows: list[UsageRecord]) -> None:
        if self._spill is None:
            self.dropped += len(rows)
            log.error("usage ledger full: %d rows dropped (no spill directory)", len(rows))
            return
        try:
            self.spilled += self._spill.append(_row(r) for r in rows)
            self._replay_due = True
        except OSError as exc:
            self.dropped += len(rows)
            log.error("usage ledger: %d rows could not be spilled to %s: %s", len(rows), self._spill.path, exc)

    @property
    def depth(self) -> int:
        return len(self._pending)

    @property
    def capacity(self) -> int:
        return self._max_pending

    @property
    def journal_ok(self) -> bool:
        """Rows are journaled (a killed process loses none): on, and its directory writable so far."""
        return self._journal is not None and not self._journal.broken

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            self._wake.clear()
            try:
                # shielded: `close` cancels this task, and a write cancelled in flight may still commit; `close`'s
                # own flush would then send its rows again (the unique request id skips them since migration 0005;
                # before it, they were duplicate rows, seen on PostgreSQL)
                self._writing = asyncio.ensure_future(self.flush())
                await asyncio.shield(self._writing)
                if self._replay_due:
                    await self.replay()
                failures = 0
            except Exception as exc:  # the database may be down: keep the rows and back off
                failures += 1
                log.error("usage write failed (%d rows kept, attempt %d): %s", len(self._pending), failures, exc)
                await asyncio.sleep(min(30.0, self._interval * 2**failures))

    async def flush(self) -> None:
        """Write the rows pending when called (rows arriving meanwhile wait for the next flush, so a busy gateway
        writes one batch per interval, not a stream of small ones). Rows are removed only after their batch is
        committed. The journal's segment is sealed first: it holds exactly these rows, and goes once they are in."""
        due = len(self._pending)
        if self._journal is not None:
            self._journal.seal()
        while due > 0 and self._pending:
            batch = [self._pending[i] for i in range(min(self._batch_size, due, len(self._pending)))]
            await self._repository.insert_rows(COLUMNS, [_values(row) for row in batch])
            for _ in batch:
                self._pending.popleft()
            self.written += len(batch)
            due -= len(batch)
        if self._journal is not None:
            self._journal.release()

    async def replay(self) -> None:
        """Writes the rows of earlier runs' spill files and journals to the database (those already there, by
        request id, are skipped); a file is removed once its rows are committed."""
        self._replay_due = False
        files = [(path, SpillFile.read) for path in self._spill.replayable()] if self._spill is not None else []
        if self._journal is not None:
            files += [(path, UsageJournal.read) for path in self._journal.replayable()]
        try:
            for path, read in files:
                rows = [_record(row) for row in read(path)]
                known = await self._repository.existing_request_ids([r.request_id for r in rows])
                fresh = [r for r in rows if r.request_id not in known]
                for start in range(0, len(fresh), self._batch_size):
                    await self._repository.insert_rows(COLUMNS, [_values(r) for r in
                                                                 fresh[start:start + self._batch_size]])
                path.unlink(missing_ok=True)  # another worker may have replayed a gone process's file too
                self.replayed += len(fresh)
                if fresh:
                    log.warning("usage ledger: wrote %d rows of an earlier run from %s", len(fresh), path)
        except Exception:
            self._replay_due = True  # retried after the next write
            raise

    async def close(self, attempts: int = 5) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writing is not None:  # a write the task was waiting on ends before the rows are looked at again
            with contextlib.suppress(Exception):
                await self._writing
        for attempt in range(attempts):
            try:
                while self._pending:  # rows recorded while a flush ran are written too
                    await self.flush()
                if self._journal is not None:
                    self._journal.close()
                return
            except Exception as exc:
                log.error("usage flush at shutdown failed (attempt %d): %s", attempt + 1, exc)
                await asyncio.sleep(0.2 * (attempt + 1))
        if self._pending:
            rows = list(self._pending)
            self._pending.clear()
            dropped = self.dropped
            self._overflow(rows)
            if self._journal is not None:
                self._journal.seal()  # spilled (fsynced): the journal's copy goes; dropped: kept for the next start
                if self.dropped == dropped:
                    self._journal.release()
            if self._spill is not None:
                log.error("usage ledger: the database is down; %d rows kept in %s", len(rows), self._spill.path)
