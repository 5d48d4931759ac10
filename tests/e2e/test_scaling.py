"""Scaling out (issue #8, docs/scaling.md): three `yourouter serve` processes behind a round-robin client, on one
real Redis and one real PostgreSQL, under concurrent load mixing streaming and non-streaming requests of three keys:

* an RPM limit of 50 that exactly 50 requests pass, across all three processes together;
* a budget that is never exceeded, its spend the same on every instance and equal to what the answers cost;
* a complete ledger: after a graceful stop (SIGTERM), exactly one PostgreSQL usage row per request, matched by the
  `x-request-id` each answer carried, with the status and the token counts the client saw.

The three processes start at the same time on a fresh database (their migrations serialise on an advisory lock).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import random
import secrets
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import MASTER_KEY, http
from tests.support.process import GatewayProcess, serve_process, write_config
from tests.support.services import postgres_database, redis_url

UPSTREAM_KEY = "sk-upstream-secret-0001"
INSTANCES = 3
RPM = 50
RPM_REQUESTS = 150
BUDGET_USD = Decimal("1.0")
BUDGET_REQUESTS = 80
FREE_REQUESTS = 300
#: USD per 1M tokens for model `metered`: 0.001 USD a token, so costs are exact decimals.
PRICE = {"input": 1000, "output": 1000}
PER_TOKEN_USD = Decimal("0.001")
#: Each budget request reserves (~body/4 + max_tokens) tokens ~ 0.09 USD but costs ~0.03: the budget fits ~30.
BUDGET_MAX_TOKENS = 50


@dataclass(frozen=True)
class Job:
    index: int
    role: str  # rpm | budget | free
    stream: bool


@dataclass(frozen=True)
class Answer:
    job: Job
    instance: int
    status: int
    request_id: str
    code: str | None  # the error code of a refusal
    prompt_tokens: int | None
    completion_tokens: int | None


def _config(sim_a: str, sim_b: str, database_url: str, redis: str, tag: str, spill: Path) -> dict[str, Any]:
    return {
        "database_url": database_url, "redis_url": redis, "master_key": MASTER_KEY, "log_requests": False,
        "usage": {"spill_dir": str(spill)}, "key_cache_ttl_s": 1.0,
        "prices": {"metered": PRICE},
        "routing": {"strategy": "ordered", "cooldown_failures": 1000},
        "keys": [{"key": f"sk-rpm-{tag}", "name": f"rpm-{tag}", "rpm": RPM},
                 {"key": f"sk-budget-{tag}", "name": f"budget-{tag}", "budget_usd": str(BUDGET_USD)},
                 {"key": f"sk-free-{tag}", "name": f"free-{tag}"}],
        "providers": [
            {"name": f"first-{tag}", "vendor": "openai", "base_url": f"{sim_a}/v1", "api_key": UPSTREAM_KEY,
             "models": ["plain", "metered"]},
            {"name": f"second-{tag}", "vendor": "azure", "type": "openai", "base_url": f"{sim_b}/v1",
             "api_key": UPSTREAM_KEY, "models": ["plain", "metered"]}],
    }


@contextmanager
def _instances(config_path: Path, count: int) -> Iterator[list[GatewayProcess]]:
    """`count` gateway processes started at the same time; every one that started is stopped afterwards."""
    managers = [serve_process(config_path) for _ in range(count)]
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(manager.__enter__) for manager in managers]
        concurrent.futures.wait(futures)
    with ExitStack() as stack:
        for manager, future in zip(managers, futures, strict=True):
            if future.exception() is None:
                stack.push(manager)
        yield [future.result() for future in futures]


def _usage_of_stream(body: bytes) -> dict[str, Any] | None:
    usage = None
    for line in body.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            chunk = json.loads(line[len("data: "):])
            usage = chunk.get("usage") or usage
    return usage


def _send(job: Job, urls: list[str], tag: str) -> Answer:
    instance = job.index % len(urls)  # round robin, as a load balancer would
    text = f"scale {job.role} {job.index} [sim:delay_ms=20]"  # 20 ms upstream: requests overlap
    body: dict[str, Any] = {"model": "plain", "stream": job.stream, "messages": [{"role": "user", "content": text}]}
    if job.role == "budget":
        body.update(model="metered", max_tokens=BUDGET_MAX_TOKENS)
    if job.stream:
        body["stream_options"] = {"include_usage": True}
    response = http("POST", urls[instance] + "/v1/chat/completions", body,
                    {"Authorization": f"Bearer sk-{job.role}-{tag}"}, timeout=30)
    usage: dict[str, Any] | None = None
    code = None
    if response.status == 200:
        usage = _usage_of_stream(response.body) if job.stream else response.json()["usage"]
        assert usage is not None, f"no usage in the answer to {job}"
    else:
        code = response.json()["error"].get("code")
    return Answer(job, instance, response.status, response.headers["x-request-id"], code,
                  usage["prompt_tokens"] if usage else None, usage["completion_tokens"] if usage else None)


def _key_reports(urls: list[str], key: str) -> list[dict[str, Any]]:
    return [http("GET", url + "/v1/key", None, {"Authorization": f"Bearer {key}"}).json() for url in urls]


async def _ledger(database_url: str, tag: str) -> list[dict[str, Any]]:
    import asyncpg

    connection = await asyncpg.connect(database_url, timeout=5)
    try:
        rows = await connection.fetch(
            "SELECT request_id, key_name, status, outcome, prompt_tokens, completion_tokens, cost_usd, streamed"
            " FROM usage WHERE key_name LIKE $1", f"%-{tag}")
        return [dict(row) for row in rows]
    finally:
        await connection.close()


def _clean_redis(url: str, tag: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        names = list(client.scan_iter(match=f"yr:*{tag}", count=1000))
        if names:
            client.delete(*names)
    finally:
        client.close()


@pytest.fixture()
def fresh_postgres() -> Iterator[str]:
    with postgres_database() as url:
        yield url


def test_three_instances_share_exact_limits_and_write_a_complete_ledger(
        sim_a: str, sim_b: str, fresh_postgres: str, tmp_path: Path) -> None:
    redis = redis_url()
    tag = secrets.token_hex(4)  # fresh key names: Redis counters of earlier runs never apply
    spill = tmp_path / "spill"
    path = write_config(tmp_path / "gw.yaml", _config(sim_a, sim_b, fresh_postgres, redis, tag, spill))
    roles = ["rpm"] * RPM_REQUESTS + ["budget"] * BUDGET_REQUESTS + ["free"] * FREE_REQUESTS
    random.Random(8).shuffle(roles)
    jobs = [Job(i, role, stream=i % 2 == 1) for i, role in enumerate(roles)]
    try:
        with _instances(path, INSTANCES) as gateways:
            urls = [g.url for g in gateways]
            with concurrent.futures.ThreadPoolExecutor(24) as pool:
                answers = list(pool.map(lambda job: _send(job, urls, tag), jobs))
            by_role = {role: [a for a in answers if a.job.role == role] for role in ("rpm", "budget", "free")}

            # (a) one RPM limit across the three processes: exactly RPM admitted, whichever instance they reached
            rpm = Counter(a.status for a in by_role["rpm"])
            assert rpm == {200: RPM, 429: RPM_REQUESTS - RPM}, rpm
            assert {a.code for a in by_role["rpm"] if a.status == 429} == {"rate_limit_exceeded"}
            assert len({a.instance for a in by_role["rpm"] if a.status == 200}) == INSTANCES

            # (b) one budget: refused once reservations reached it, never exceeded, one spend on every instance
            admitted = [a for a in by_role["budget"] if a.status == 200]
            refused = [a for a in by_role["budget"] if a.status != 200]
            assert admitted and refused, Counter(a.status for a in by_role["budget"])
            assert {a.status for a in refused} == {429} and {a.code for a in refused} == {"insufficient_quota"}
            spent = sum(Decimal(a.prompt_tokens or 0) + Decimal(a.completion_tokens or 0) for a in admitted)
            spent *= PER_TOKEN_USD
            assert spent <= BUDGET_USD
            reports = _settled_reports(urls, f"sk-budget-{tag}")
            assert [r["spend_usd"] for r in reports] == [float(spent)] * INSTANCES, reports
            assert all(r["reserved_usd"] == 0 for r in reports), reports

            # (c) the free key is never refused
            assert all(a.status == 200 for a in by_role["free"])

            for gateway in gateways:  # graceful stop: each drains its ledger queue into PostgreSQL
                # uvicorn re-raises the signal once its graceful shutdown is done
                assert gateway.stop(signal.SIGTERM) in (0, -signal.SIGTERM), gateway.log
            logs = "\n".join(g.log for g in gateways)
        assert "usage write failed" not in logs and "spill" not in logs, logs
        assert not spill.exists() or not any(spill.iterdir())  # nothing was set aside for a later replay

        rows = asyncio.run(_ledger(fresh_postgres, tag))
        ids = Counter(row["request_id"] for row in rows)
        assert len(ids) == len(answers) and set(ids.values()) == {1}  # one row per request, no duplicates
        by_id = {row["request_id"]: row for row in rows}
        for answer in answers:
            row = by_id[answer.request_id]  # KeyError = a request the ledger lost
            assert row["key_name"] == f"{answer.job.role}-{tag}"
            assert row["status"] == answer.status and row["streamed"] == answer.job.stream
            if answer.status == 200:
                assert (row["prompt_tokens"], row["completion_tokens"]) == (answer.prompt_tokens,
                                                                            answer.completion_tokens)
                assert row["outcome"] == "ok"
            else:
                expected = "budget_exceeded" if answer.job.role == "budget" else "rate_limited"
                assert row["outcome"] == expected and row["completion_tokens"] == 0 and row["cost_usd"] == 0
        ledger_spend = sum(row["cost_usd"] for row in rows if row["key_name"] == f"budget-{tag}")
        assert ledger_spend == spent
    finally:
        _clean_redis(redis, tag)


def _settled_reports(urls: list[str], key: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """`GET /v1/key` from every instance once no reservation is left (settlement follows the answer by a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        reports = _key_reports(urls, key)
        if all(r["reserved_usd"] == 0 for r in reports) or time.monotonic() > deadline:
            return reports
        time.sleep(0.05)
