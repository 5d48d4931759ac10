"""Deployment cooldowns shared between gateway instances through Redis.

When one instance's breaker opens, it writes `{prefix}cooldown:{deployment}` (expiring with the cooldown, value =
the wall-clock end); every instance reads all its deployments' keys once a `refresh_s` (one MGET) and treats a
cooldown another instance started as its own, so a failing upstream is left alone everywhere within about a second.
A probe that succeeds deletes the key. Routing itself never waits on Redis: reads happen in the background, writes
are fire-and-forget. When Redis is unreachable each instance keeps its own breakers only (fail open), says so once
in the log, and `yourouter_shared_health_up` reads 0 until Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from yourouter.limits.resp import Endpoint, RespClient
from yourouter.routing.health import HealthBoard

log = logging.getLogger("yourouter.routing")


class SharedCooldowns:
    def __init__(self, url: str, deployments: Sequence[str], *, prefix: str = "yr:", refresh_s: float = 1.0) -> None:
        self._redis = RespClient(Endpoint.from_url(url), timeout_s=1.0)  # the limits' lean client, not redis-py
        self._names = list(deployments)
        self._prefix = prefix
        self._refresh = refresh_s
        self._board: HealthBoard | None = None
        self._task: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[Any]] = set()
        self.up = True
        self.errors = 0

    def _key(self, name: str) -> str:
        return f"{self._prefix}cooldown:{name}"

    # BreakerListener: called synchronously from routing; the writes run in the background.

    def tripped(self, name: str, seconds: float) -> None:
        until = time.time() + seconds
        self._spawn(self._redis.execute("SET", self._key(name), repr(until), "PX", max(1, int(seconds * 1000))))

    def recovered(self, name: str) -> None:
        self._spawn(self._redis.execute("DEL", self._key(name)))

    def _spawn(self, command: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(self._quietly(command))
        except RuntimeError:  # no loop (a unit test poking the board directly): nothing to share
            command.close()
            return
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _quietly(self, command: Any) -> None:
        try:
            await command
            self._mark(True)
        except Exception as exc:
            self._mark(False, exc)

    def _mark(self, up: bool, exc: Exception | None = None) -> None:
        if up and not self.up:
            log.warning("shared deployment health: Redis is reachable again")
        elif not up:
            self.errors += 1
            if self.up:
                log.error("shared deployment health: Redis unreachable (%s); each instance keeps its own "
                          "breakers until it is back", type(exc).__name__ if exc else "error")
        self.up = up

    # The refresher.

    def start(self, board: HealthBoard) -> None:
        self._board = board
        self._task = asyncio.get_running_loop().create_task(self._run(), name="shared-cooldowns")

    async def refresh(self) -> None:
        """Reads every deployment's shared cooldown into the board."""
        assert self._board is not None
        if not self._names:
            return
        values = await self._redis.execute("MGET", *(self._key(name) for name in self._names))
        assert isinstance(values, list)
        wall, mono = time.time(), self._board.now()
        for name, value in zip(self._names, values, strict=True):
            until = float(value) if isinstance(value, str) else 0.0
            self._board.of(name).remote_until = mono + (until - wall) if until > wall else 0.0

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
                self._mark(True)
            except Exception as exc:
                self._mark(False, exc)
            await asyncio.sleep(self._refresh)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._writes):
            with contextlib.suppress(Exception):
                await task
        await self._redis.close()
