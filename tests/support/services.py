"""The machine's real services (PostgreSQL, Redis): skip with a visible reason when unreachable, fail instead when
`YOUROUTER_TEST_SERVICES=required` (what `.ci/run` sets)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

POSTGRES_ADMIN_URL = os.environ.get("YOUROUTER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def services_required() -> bool:
    return os.environ.get("YOUROUTER_TEST_SERVICES", "").lower() == "required"


def unavailable(reason: str) -> None:
    if services_required():
        pytest.fail(f"{reason} (YOUROUTER_TEST_SERVICES=required)")
    pytest.skip(reason)


async def _admin(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty database on the real server; dropped afterwards. Yields its `postgresql://` URL."""
    name = "yourouter_test_" + secrets.token_hex(6)
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # unreachable server, refused auth, ...
        unavailable(f"PostgreSQL at {POSTGRES_ADMIN_URL} is not usable: {type(exc).__name__}: {exc}")
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        try:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except Exception:
            pass


def redis_url() -> str:
    """The machine's real Redis (`YOUROUTER_TEST_REDIS_URL`, default 127.0.0.1:6379 db 0) once it answers PING;
    skips (or fails, when services are required) otherwise. Tests keep to a prefix of their own in it."""
    url = os.environ.get("YOUROUTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # not installed, unreachable, refused auth, ...
        unavailable(f"Redis at {url} is not usable: {type(exc).__name__}: {exc}")
    return url


class RedisServer:
    """A redis-server of the test's own on a free port (no persistence), to stop and start again; skips (or fails,
    when services are required) where redis-server is not installed."""

    def __init__(self, directory: str) -> None:
        import shutil
        import socket

        server = shutil.which("redis-server")
        if server is None:
            unavailable("redis-server is not installed")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._command = [str(server), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                         "--appendonly", "no", "--dir", directory]
        self._process: Any = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import socket
        import subprocess
        import time

        self._process = subprocess.Popen(self._command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            with socket.socket() as attempt:
                if attempt.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self._process.kill()
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)
