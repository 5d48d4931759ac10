"""Running a gateway for tests: in-process on a real socket, or as a real `yourouter serve` process."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from openai import OpenAI

from yourouter.app import Gateway
from yourouter.config import Settings, settings_from_mapping
from yourouter.simulators.background import serve_in_thread
from yourouter.storage.db import create_engine
from yourouter.storage.repositories import UsageRepository

STATIC_KEY = "sk-test-static-key-0001"
LIMITED_KEY = "sk-test-limited-key-0001"
MASTER_KEY = "sk-test-master-key-0001"
UPSTREAM_KEY = "sk-upstream-secret-0001"
MAX_BODY = 256 * 1024


def closed_port() -> int:
    """A port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gateway_config(sim_a: str, sim_b: str, database_url: str) -> dict[str, Any]:
    return {
        "database_url": database_url,
        "master_key": MASTER_KEY,
        "max_body_bytes": MAX_BODY,
        "usage": {"flush_interval_s": 0.05},
        # Deterministic order for assertions about which deployment served; cooldowns off unless a test wants them.
        "routing": {"strategy": "ordered", "cooldown_failures": 1000},
        "keys": [
            {"key": STATIC_KEY, "name": "static-all", "models": ["*"]},
            {"key": LIMITED_KEY, "name": "static-limited", "models": ["gpt-4o-mini"]},
        ],
        "providers": [
            {"name": "sim-a", "vendor": "openai", "base_url": f"{sim_a}/v1", "api_key": UPSTREAM_KEY,
             "models": ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "only-a"]},
            {"name": "sim-b", "vendor": "azure", "type": "openai", "base_url": f"{sim_b}/v1", "api_key": UPSTREAM_KEY,
             "models": ["gpt-4o-mini", "only-b"]},
            {"name": "dead", "vendor": "deadco", "base_url": f"http://127.0.0.1:{closed_port()}/v1",
             "api_key": "sk-dead", "models": ["dead-model"]},
            {"name": "slow", "vendor": "slowco", "base_url": f"{sim_a}/v1", "api_key": UPSTREAM_KEY,
             "read_timeout_s": 0.5, "models": ["slow-model"]},
        ],
    }


def gateway_settings(sim_a: str, sim_b: str, database_url: str) -> Settings:
    return settings_from_mapping(gateway_config(sim_a, sim_b, database_url), env={})


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 10) -> HttpResponse:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json"} if data is not None else {}
    all_headers.update(headers or {})
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpResponse(response.status, {k.lower(): v for k, v in response.headers.items()},
                                response.read())
    except urllib.error.HTTPError as error:
        return HttpResponse(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


@dataclass
class GatewayHandle:
    url: str
    settings: Settings
    sims: dict[str, str] = field(default_factory=dict)
    app: Gateway | None = None

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def client(self, key: str = STATIC_KEY, **options: Any) -> OpenAI:
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 15)
        return OpenAI(base_url=self.base_url, api_key=key, **options)

    def post(self, path: str, body: Any, key: str | None = STATIC_KEY, headers: dict[str, str] | None = None
             ) -> HttpResponse:
        all_headers = {"Authorization": f"Bearer {key}"} if key else {}
        all_headers.update(headers or {})
        return http("POST", self.url + path, body, all_headers)

    def get(self, path: str, key: str | None = STATIC_KEY) -> HttpResponse:
        return http("GET", self.url + path, None, {"Authorization": f"Bearer {key}"} if key else {})

    @staticmethod
    def sim_control(sim_url: str, method: str, path: str, body: Any = None) -> HttpResponse:
        return http(method, sim_url + path, body)

    def fault(self, sim: str, **fault: Any) -> None:
        response = self.sim_control(self.sims[sim], "POST", "/_sim/faults", fault)
        assert response.status in (200, 201, 204), response.body

    def sim_requests(self, sim: str) -> list[dict[str, Any]]:
        return list(self.sim_control(self.sims[sim], "GET", "/_sim/requests").json())

    def usage_rows_where(self, column: str, value: Any) -> list[dict[str, Any]]:
        async def query() -> list[dict[str, Any]]:
            from sqlalchemy import select

            from yourouter.storage.tables import usage

            engine = create_engine(self.settings.database_url)
            try:
                async with engine.connect() as conn:
                    result = await conn.execute(select(usage).where(usage.c[column] == value))
                    return [dict(row._mapping) for row in result]
            finally:
                await engine.dispose()

        return asyncio.run(query())

    def usage_rows(self, request_id: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The ledger rows of one request, waiting for the batched writer."""
        return usage_rows(self.settings.database_url, request_id, timeout)


def usage_rows(database_url: str, request_id: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    async def query() -> list[dict[str, Any]]:
        engine = create_engine(database_url)
        try:
            return await UsageRepository(engine).by_request_id(request_id)
        finally:
            await engine.dispose()

    deadline = time.monotonic() + timeout
    while True:
        rows = asyncio.run(query())
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


@contextmanager
def start_gateway(settings: Settings, sims: dict[str, str] | None = None) -> Iterator[GatewayHandle]:
    app = Gateway(settings)
    with serve_in_thread(app) as url:
        yield GatewayHandle(url=url, settings=settings, sims=sims or {}, app=app)
