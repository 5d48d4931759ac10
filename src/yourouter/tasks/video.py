"""Video generation tasks (Ark's content-generation task API): stored, owned, polled, and billed exactly once.

Creating a task goes through the pipeline like any call (auth, limits, routing, failover before the upstream
accepts it); `accepted` stores the task before its id reaches the client. Reading, listing and deleting use the
store: a task is only ever shown to the key that created it (others get 404). While a task is not terminal, reads
fetch it fresh from its deployment; a background poller (one lease per task, in the database, so one poller per task
across workers and instances) moves every unsettled task forward, so a task no client polls is still recorded.

Settlement: the first time anyone (a client's read or a poller, any process) sees a task terminal, one database
transaction marks it settled and writes its usage row — `succeeded` priced by its completion tokens, `failed`,
`cancelled` and `expired` at 0 — conditional on it not being settled yet, so it is billed exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import orjson

from yourouter.auth.keys import ClientKey
from yourouter.config.schema import ModelEntry
from yourouter.ir.errors import ErrorKind, GatewayError, bad_request
from yourouter.limits.model import Budget, LimitBackend
from yourouter.metering.cost import period_label, price_record
from yourouter.metering.ledger import UsageRecord, table_row
from yourouter.pipeline.core import Call
from yourouter.pipeline.upstream import UpstreamPool
from yourouter.pricing import PriceBook
from yourouter.providers.ark import ArkProvider
from yourouter.providers.base import Provider
from yourouter.routing.catalog import Route
from yourouter.storage.video_tasks import TERMINAL, VideoTask, VideoTaskRepository

log = logging.getLogger("yourouter.tasks")

_RESOLUTIONS = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
_COMMAND = re.compile(r"--(resolution|rs|duration|dur|framespersecond|fps)\s+(\S+)")
#: Fields of the Ark task object that change over a task's life (kept for no other purpose than the store).
_STATUS_OUTCOMES = {"succeeded": "ok", "failed": "upstream_error", "cancelled": "cancelled",
                    "expired": "upstream_error"}


def estimate_video_tokens(payload: dict[str, Any]) -> int:
    """Roughly what a task will bill, for limits and budget reservations: width x height x fps x seconds / 1024
    (Ark bills 108,900 tokens for 5 s of 720p at 24 fps). Assumes 1080p and 5 s when the request does not say."""
    settings: dict[str, str] = {}
    for item in payload.get("content") or []:
        if isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
            settings.update((name, value) for name, value in _COMMAND.findall(item["text"]))
    resolution = str(payload.get("resolution") or settings.get("resolution") or settings.get("rs") or "1080p")
    width, height = _RESOLUTIONS.get(resolution.lower(), _RESOLUTIONS["1080p"])
    try:
        duration = float(payload.get("duration") or settings.get("duration") or settings.get("dur") or 5)
        fps = float(payload.get("framespersecond") or settings.get("framespersecond") or settings.get("fps") or 24)
    except (TypeError, ValueError):
        duration, fps = 5.0, 24.0
    if isinstance(payload.get("frames"), int):
        duration, fps = float(payload["frames"]), 1.0
    return int(width * height * max(fps, 1) * max(duration, 1) / 1024)


@dataclass(frozen=True, slots=True)
class TaskPage:
    total: int
    items: list[dict[str, Any]]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class VideoTasks:
    def __init__(self, repository: VideoTaskRepository, providers: Sequence[Provider], upstream: UpstreamPool,
                 prices: PriceBook, limits: LimitBackend, *, poll_interval_s: float = 10.0, lease_s: float = 60.0,
                 batch: int = 50) -> None:
        self._store = repository
        self._providers = {p.name: p for p in providers}
        self._upstream = upstream
        self._prices = prices
        self._limits = limits
        self._interval = poll_interval_s
        self._lease = lease_s
        self._batch = batch
        self._owner = f"{os.uname().nodename}:{os.getpid()}:{random.getrandbits(32):08x}"
        self._task: asyncio.Task[None] | None = None

    # Creation (called by the pipeline once the upstream accepted the task) -------------------------------------

    async def store_created(self, call: Call, route: Route, answer: bytes) -> bytes:
        """The pipeline's `accepted` hook for task creation: stores the task the upstream just accepted."""
        key = call.key
        assert key is not None
        model, body = route.entry.name if route.entry is not None else call.model, call.body
        try:
            created = orjson.loads(answer)
        except orjson.JSONDecodeError:
            created = None
        task_id = created.get("id") if isinstance(created, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise GatewayError(500, ErrorKind.UPSTREAM, f"Upstream {route.provider.name} accepted the task but "
                               "sent no task id.", code="upstream_bad_response")
        now = _now()
        snapshot = {"id": task_id, "model": route.upstream_model, "status": "queued", "error": None,
                    "created_at": int(now.timestamp()), "updated_at": int(now.timestamp())}
        task = VideoTask(id=task_id, key_id=key.id, key_name=key.name, model=model,
                         upstream_model=route.upstream_model, vendor=route.provider.vendor,
                         deployment=route.provider.name, body_sha256=hashlib.sha256(body).hexdigest(),
                         status="queued", task=snapshot, completion_tokens=0, cost_usd=Decimal(0),
                         budget_usd=key.budget_usd, budget_period=key.budget_period, settled_at=None,
                         created_at=now, updated_at=now)
        for attempt in range(3):
            try:
                await self._store.add(task, self._next_poll(now))
                return answer
            except Exception:
                if attempt == 2:  # the upstream runs the task, but the gateway cannot track it: say so, loudly
                    log.exception("video task %s (deployment %s, key %s) could not be stored", task_id,
                                  route.provider.name, key.id)
                    raise GatewayError(500, ErrorKind.GATEWAY, f"The task {task_id} was created upstream but the "
                                       "gateway could not store it.", code="task_store_failed") from None
                await asyncio.sleep(0.1 * (attempt + 1))
        return answer

    # Reading, listing, deleting -------------------------------------------------------------------------------

    async def _owned(self, key: ClientKey, task_id: str) -> VideoTask:
        task = await self._store.get(task_id)
        if task is None or task.key_id != key.id:  # 404 either way: ids cannot be probed
            raise GatewayError(404, ErrorKind.NOT_FOUND, f"The specified task {task_id} is not found.",
                               param="task_id", code="NotFound.TaskId")
        return task

    async def get(self, key: ClientKey, task_id: str) -> dict[str, Any]:
        task = await self._owned(key, task_id)
        if task.settled_at is not None:
            return task.task
        fresh = await self._fetch(task)
        if fresh is None:
            return task.task  # the upstream could not be asked: the last known state
        return await self._observe(task, fresh)

    async def list(self, key: ClientKey, *, page_num: int, page_size: int, status: str | None,
                   models: Sequence[str], task_ids: Sequence[str]) -> TaskPage:
        total, tasks = await self._store.for_key(key.id, status=status, models=models, task_ids=task_ids,
                                                 offset=(page_num - 1) * page_size, limit=page_size)
        return TaskPage(total, [task.task for task in tasks])

    async def delete(self, key: ClientKey, task_id: str) -> tuple[int, bytes]:
        """Cancels a queued task or deletes a finished one, upstream and in the store. Returns the upstream's
        answer (status, body) when it refused, else (200, b"{}")."""
        task = await self._owned(key, task_id)
        provider = self._provider(task)
        session = self._upstream.session(provider)
        try:
            async with session.delete(provider.task_url(task.id), headers=provider.headers()) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GatewayError(500, ErrorKind.UPSTREAM, f"Upstream {provider.name} could not be reached "
                               f"({type(exc).__name__}).", code="upstream_unreachable") from None
        if status >= 500:
            raise GatewayError(500, ErrorKind.UPSTREAM, f"Upstream {provider.name} failed with HTTP {status}.",
                               code="upstream_error")
        if 400 <= status and status != 404:
            return status, body  # e.g. a running task cannot be cancelled: Ark's own error
        now = _now()
        if task.status == "queued" or task.status == "running":
            cancelled = {**task.task, "status": "cancelled", "updated_at": int(now.timestamp())}
            await self._settle(task, "cancelled", cancelled)
            if status == 404:  # the upstream no longer has it at all
                await self._store.remove(task.id)
        else:
            if task.settled_at is None:  # a finished task the gateway had not seen finish: settle it first
                fresh = await self._fetch(task)
                if fresh is not None:
                    await self._observe(task, fresh)
            await self._store.remove(task.id)
        return 200, b"{}"

    # Observation and settlement -------------------------------------------------------------------------------

    def _provider(self, task: VideoTask) -> ArkProvider:
        provider = self._providers.get(task.deployment)
        if not isinstance(provider, ArkProvider):
            raise GatewayError(500, ErrorKind.GATEWAY, f"The task's deployment {task.deployment} is no longer "
                               "configured.", code="deployment_gone")
        return provider

    async def _fetch(self, task: VideoTask) -> dict[str, Any] | None:
        provider = self._provider(task)
        try:
            async with self._upstream.session(provider).get(provider.task_url(task.id),
                                                            headers=provider.headers()) as response:
                body = await response.read()
                if response.status == 404:
                    return {**task.task, "status": "expired", "error": {"code": "NotFound",
                                                                        "message": "The upstream no longer has "
                                                                                   "this task."}}
                if response.status >= 300:
                    log.warning("video task %s: upstream %s answered HTTP %d", task.id, provider.name,
                                response.status)
                    return None
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("video task %s: upstream %s unreachable (%s)", task.id, provider.name, type(exc).__name__)
            return None
        try:
            fresh = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        return fresh if isinstance(fresh, dict) and isinstance(fresh.get("status"), str) else None

    async def _observe(self, task: VideoTask, fresh: dict[str, Any]) -> dict[str, Any]:
        status = str(fresh["status"])
        if status in TERMINAL:
            await self._settle(task, status, fresh)
            settled = await self._store.get(task.id)
            return settled.task if settled is not None else fresh
        await self._store.observe(task.id, status, fresh, _now(), self._next_poll(_now()))
        return fresh

    async def _settle(self, task: VideoTask, status: str, fresh: dict[str, Any]) -> bool:
        tokens = 0
        usage = fresh.get("usage")
        if status == "succeeded" and isinstance(usage, dict):
            raw = usage.get("completion_tokens")
            tokens = raw if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0 else 0
        now = _now()
        record = UsageRecord(request_id=task.id, endpoint="video.tasks", created_at=now.timestamp(),
                             key_id=task.key_id, key_name=task.key_name, model=task.model, vendor=task.vendor,
                             deployment=task.deployment, status=200, outcome=_STATUS_OUTCOMES.get(status, "ok"),
                             error_type=None if status == "succeeded" else f"task_{status}",
                             completion_tokens=tokens, detail=f"task {status}",
                             budget_period=period_label(task.budget_period, now.timestamp())
                             if task.budget_usd is not None else None)
        # priced as a deployment's model entry is: by its upstream name, else by the name the client used
        cost = price_record(record, self._prices, ModelEntry(name=task.model, upstream=task.upstream_model))
        row = table_row(record)
        won = await self._store.settle(task.id, status, fresh, tokens, cost, now, row)
        if won and cost and task.budget_usd is not None:
            budget = Budget(task.budget_usd, task.budget_period)  # type: ignore[arg-type]
            try:
                await self._limits.record_spend("key:" + task.key_id, budget, cost, now.timestamp())
            except Exception:  # the ledger has the cost; a counter loaded later will include it
                log.exception("video task %s: adding its cost to the budget counter failed", task.id)
        return won

    # The poller -----------------------------------------------------------------------------------------------

    def _next_poll(self, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(seconds=self._interval * random.uniform(0.8, 1.2))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="video-task-poller")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:
                log.exception("video task poller failed; retrying")
            await asyncio.sleep(self._interval * random.uniform(0.5, 1.0) / 2)

    async def poll_once(self) -> int:
        """Leases the tasks whose poll is due and moves each forward; returns how many it looked at."""
        claimed = await self._store.claim_due(self._owner, _now(), self._lease, self._batch)
        for task in claimed:
            try:
                fresh = await self._fetch(task)
                if fresh is None:
                    await self._store.release(task.id, self._next_poll(_now()))
                else:
                    await self._observe(task, fresh)
            except Exception:
                log.exception("video task %s: poll failed", task.id)
                await self._store.release(task.id, self._next_poll(_now()))
        return len(claimed)


def validated_page(query: dict[str, list[str]]) -> tuple[int, int]:
    """`page_num` and `page_size`, each 1..500 (Ark's bounds), defaults 1 and 10."""
    values = []
    for name, default in (("page_num", 1), ("page_size", 10)):
        raw = (query.get(name) or [str(default)])[-1]
        if not raw.isdigit() or not 1 <= int(raw) <= 500:
            raise bad_request(f"{name} must be an integer between 1 and 500.", param=name, code="InvalidParameter")
        values.append(int(raw))
    return values[0], values[1]
