"""The video task store: owned tasks, their last known state, poller leases, and settlement exactly once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from yourouter.storage.tables import usage, video_tasks

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "expired"})


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


@dataclass(frozen=True, slots=True)
class VideoTask:
    id: str
    key_id: str
    key_name: str | None
    model: str
    upstream_model: str
    vendor: str
    deployment: str
    body_sha256: str
    status: str
    task: dict[str, Any]
    completion_tokens: int
    cost_usd: Decimal
    budget_usd: Decimal | None
    budget_period: str | None
    settled_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def _task(row: Any) -> VideoTask:
    return VideoTask(id=row.id, key_id=row.key_id, key_name=row.key_name, model=row.model,
                     upstream_model=row.upstream_model, vendor=row.vendor, deployment=row.deployment,
                     body_sha256=row.body_sha256, status=row.status, task=dict(row.task or {}),
                     completion_tokens=int(row.completion_tokens or 0), cost_usd=Decimal(str(row.cost_usd or 0)),
                     budget_usd=Decimal(str(row.budget_usd)) if row.budget_usd is not None else None,
                     budget_period=row.budget_period, settled_at=_aware(row.settled_at),
                     created_at=_aware(row.created_at) or row.created_at,
                     updated_at=_aware(row.updated_at) or row.updated_at)


class VideoTaskRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, task: VideoTask, next_poll_at: dt.datetime) -> None:
        values = {name: getattr(task, name) for name in VideoTask.__slots__}
        async with self._engine.begin() as conn:
            await conn.execute(insert(video_tasks).values(**values, next_poll_at=next_poll_at))

    async def get(self, task_id: str) -> VideoTask | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(video_tasks).where(video_tasks.c.id == task_id))).first()
        return _task(row) if row is not None else None

    async def for_key(self, key_id: str, *, status: str | None, models: Sequence[str], task_ids: Sequence[str],
                      offset: int, limit: int) -> tuple[int, list[VideoTask]]:
        """A key's tasks, newest first, with Ark's filters; (total matching, one page)."""
        where = [video_tasks.c.key_id == key_id]
        if status:
            where.append(video_tasks.c.status == status)
        if models:
            where.append(or_(video_tasks.c.model.in_(models), video_tasks.c.upstream_model.in_(models)))
        if task_ids:
            where.append(video_tasks.c.id.in_(list(task_ids)))
        condition = and_(*where)
        async with self._engine.connect() as conn:
            total = int((await conn.execute(select(func.count()).select_from(video_tasks).where(condition)))
                        .scalar_one())
            rows = await conn.execute(select(video_tasks).where(condition)
                                      .order_by(video_tasks.c.created_at.desc(), video_tasks.c.id.desc())
                                      .offset(offset).limit(limit))
            return total, [_task(row) for row in rows]

    async def observe(self, task_id: str, status: str, task: dict[str, Any], now: dt.datetime,
                      next_poll_at: dt.datetime) -> None:
        """A non-terminal state seen upstream; never overwrites a settled task."""
        async with self._engine.begin() as conn:
            await conn.execute(update(video_tasks)
                               .where(video_tasks.c.id == task_id, video_tasks.c.settled_at.is_(None))
                               .values(status=status, task=task, updated_at=now, next_poll_at=next_poll_at,
                                       claimed_until=None, claimed_by=None))

    async def settle(self, task_id: str, status: str, task: dict[str, Any], completion_tokens: int, cost: Decimal,
                     now: dt.datetime, usage_row: dict[str, Any]) -> bool:
        """The task's first terminal state: records it and writes its usage row in one transaction, only if no
        one settled it before (any process, any instance). True when this call did."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(video_tasks).where(video_tasks.c.id == task_id, video_tasks.c.settled_at.is_(None))
                .values(status=status, task=task, completion_tokens=completion_tokens, cost_usd=cost,
                        settled_at=now, updated_at=now, claimed_until=None, claimed_by=None))
            if result.rowcount != 1:
                return False
            await conn.execute(insert(usage).values(**usage_row))
        return True

    async def mark_cancelled(self, task_id: str, task: dict[str, Any], now: dt.datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(update(video_tasks).where(video_tasks.c.id == task_id)
                               .values(status="cancelled", task=task, updated_at=now))

    async def remove(self, task_id: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(video_tasks).where(video_tasks.c.id == task_id))

    async def claim_due(self, owner: str, now: dt.datetime, lease_s: float, limit: int) -> list[VideoTask]:
        """Leases up to `limit` unsettled tasks whose poll is due and that no live lease holds. Each lease is a
        conditional update, so two pollers (processes, instances) never hold the same task."""
        free = or_(video_tasks.c.claimed_until.is_(None), video_tasks.c.claimed_until < now)
        due = and_(video_tasks.c.settled_at.is_(None), video_tasks.c.next_poll_at <= now, free)
        async with self._engine.connect() as conn:
            ids = [row[0] for row in await conn.execute(select(video_tasks.c.id).where(due)
                                                          .order_by(video_tasks.c.next_poll_at).limit(limit))]
        claimed = []
        until = now + dt.timedelta(seconds=lease_s)
        for task_id in ids:
            async with self._engine.begin() as conn:
                result = await conn.execute(update(video_tasks).where(video_tasks.c.id == task_id, due)
                                            .values(claimed_until=until, claimed_by=owner))
            if result.rowcount == 1:
                found = await self.get(task_id)
                if found is not None:
                    claimed.append(found)
        return claimed

    async def release(self, task_id: str, next_poll_at: dt.datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(update(video_tasks).where(video_tasks.c.id == task_id)
                               .values(claimed_until=None, claimed_by=None, next_poll_at=next_poll_at))
