"""Shared fixtures: simulators and gateways on real sockets, and the real PostgreSQL of this machine."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import GatewayHandle, gateway_settings, start_gateway
from tests.support.services import postgres_database
from yourouter.simulators.background import serve_in_thread
from yourouter.simulators.openai import SimulatorSettings, create_app

UPSTREAM_KEY = "sk-upstream-secret-0001"


@pytest.fixture(scope="session")
def sim_a() -> Iterator[str]:
    """The primary OpenAI simulator (vendor `openai`)."""
    with serve_in_thread(create_app(SimulatorSettings(api_key=UPSTREAM_KEY))) as url:
        yield url


@pytest.fixture(scope="session")
def sim_b() -> Iterator[str]:
    """A second simulator (vendor `azure`), for vendor pinning and failover."""
    with serve_in_thread(create_app(SimulatorSettings(api_key=UPSTREAM_KEY))) as url:
        yield url


@pytest.fixture(scope="session")
def gateway(sim_a: str, sim_b: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    """A gateway on SQLite, wired to both simulators."""
    db = tmp_path_factory.mktemp("gw") / "gateway.db"
    settings = gateway_settings(sim_a, sim_b, f"sqlite:///{db}")
    with start_gateway(settings, sims={"a": sim_a, "b": sim_b}) as handle:
        yield handle


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture(autouse=True)
def _clean_simulators(request: pytest.FixtureRequest) -> Iterator[None]:
    """Faults queued by one test never leak into the next."""
    yield
    for name in ("gateway", "matrix", "routed", "breaker", "aws"):
        if name in request.fixturenames:
            handle: GatewayHandle = request.getfixturevalue(name)
            for url in handle.sims.values():
                handle.sim_control(url, "DELETE", "/_sim/faults")
            if handle.app is not None:
                handle.app.health_board.reset()  # cooldowns learned in one test never steer the next


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


def random_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("YOUROUTER_REPO", str(REPO))
