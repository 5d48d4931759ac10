"""The usage ledger: one row per request, written in batches off the request path."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import deque
from dataclasses import dataclass, field, fields

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


def _values(row: UsageRecord) -> tuple[object, ...]:
    """A row as a plain tuple (no deep copies: `dataclasses.asdict` cost ~45 us a row here)."""
    values = [getattr(row, name) for name in COLUMNS]
    values[2] = dt.datetime.fromtimestamp(row.created_at, dt.UTC)
    return tuple(values)


class UsageLedger:
    """Collects `UsageRecord`s and writes them in batches from one background task.

    `record` never awaits. A failed write keeps its rows and is retried; `close` drains everything
    (graceful shutdown). Rows still unwritten when the database stays down through shutdown are logged
    as lost with their count.
    """

    def __init__(self, repository: UsageRepository, *, batch_size: int = 500, flush_interval_s: float = 0.5) -> None:
        self._repository = repository
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._pending: deque[UsageRecord] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.written = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-ledger")

    def record(self, row: UsageRecord) -> None:
        self._pending.append(row)
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    @property
    def depth(self) -> int:
        return len(self._pending)

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            self._wake.clear()
            try:
                await self.flush()
                failures = 0
            except Exception as exc:  # the database may be down: keep the rows and back off
                failures += 1
                log.error("usage write failed (%d rows kept, attempt %d): %s", len(self._pending), failures, exc)
                await asyncio.sleep(min(30.0, self._interval * 2**failures))

    async def flush(self) -> None:
        """Write everything pending now. Rows are removed only after their batch is committed."""
        while self._pending:
            batch = [self._pending[i] for i in range(min(self._batch_size, len(self._pending)))]
            await self._repository.insert_rows(COLUMNS, [_values(row) for row in batch])
            for _ in batch:
                self._pending.popleft()
            self.written += len(batch)

    async def close(self, attempts: int = 5) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for attempt in range(attempts):
            try:
                await self.flush()
                return
            except Exception as exc:
                log.error("usage flush at shutdown failed (attempt %d): %s", attempt + 1, exc)
                await asyncio.sleep(0.2 * (attempt + 1))
        if self._pending:
            log.error("usage ledger: %d rows could not be written before shutdown", len(self._pending))
