"""How fast `GET /admin/usage` answers on a large ledger: 1,000,000 usage rows on SQLite and on PostgreSQL.

Fills a fresh database (schema by the migrations, rows by `UsageRepository.insert_rows` in batches) with 90 days
of traffic from 50 keys over 12 models and 4 vendors, then times `UsageReport.summarize` (the query the admin
API and `yourouter usage` run), median of `--repeat` runs after one warm-up, before and after ANALYZE (VACUUM
ANALYZE on PostgreSQL).

    .venv/bin/python bench/usage_report.py                       # SQLite, then PostgreSQL at 127.0.0.1:5432
    .venv/bin/python bench/usage_report.py --rows 200000 --skip-postgres
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from yourouter.metering.ledger import COLUMNS
from yourouter.storage.db import create_engine, migrate
from yourouter.storage.reports import UsageQuery, UsageReport
from yourouter.storage.repositories import UsageRepository

START = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
DAYS = 90
KEYS = [f"key-{n:02d}" for n in range(50)]
MODELS = [("gpt-4o", "openai"), ("gpt-4o-mini", "openai"), ("o3-mini", "openai"), ("gpt-4.1", "azure"),
          ("gpt-4.1-mini", "azure"), ("claude-sonnet-4-5", "anthropic"), ("claude-haiku-4-5", "anthropic"),
          ("claude-opus-4-1", "anthropic"), ("gemini-2.5-flash", "google"), ("gemini-2.5-pro", "google"),
          ("text-embedding-3-small", "openai"), ("gemini-embedding-001", "google")]
MONTH = {"since": "2026-10-01", "until": "2026-11-01"}
QUERIES: list[tuple[str, dict[str, str]]] = [
    ("one key, a month, by day", {"key": "key-07", **MONTH, "group_by": "day"}),
    ("one key, a month, by model", {"key": "key-07", **MONTH, "group_by": "model"}),
    ("one key, a month, totals", {"key": "key-07", **MONTH}),
    ("one vendor, a month, by day", {"vendor": "azure", **MONTH, "group_by": "day"}),
    ("one model, a month, by key", {"model": "gpt-4o", **MONTH, "group_by": "key"}),
    ("every key, a month, by model", {**MONTH, "group_by": "model"}),
    ("every key, one day, by key", {"since": "2026-10-15", "until": "2026-10-16", "group_by": "key"}),
    ("everything, totals", {}),
]


def _rows(count: int, seed: int = 7) -> Iterator[tuple[Any, ...]]:
    """In time order, as the ledger appends them (which is what makes index inserts cheap)."""
    rng = random.Random(seed)
    span = DAYS * 86_400
    for n in range(count):
        model, vendor = MODELS[rng.randrange(len(MODELS))]
        error = rng.random() < 0.05
        prompt, completion = rng.randint(10, 4000), 0 if error else rng.randint(1, 1500)
        values = {"request_id": f"bench-{n:07d}", "endpoint": "embeddings" if "embed" in model else "chat.completions",
                  "created_at": START + dt.timedelta(seconds=(n + rng.random()) * span / count),
                  "key_id": f"key_{n % 50:02d}", "key_name": KEYS[rng.randrange(len(KEYS))], "model": model,
                  "vendor": vendor,
                  "deployment": f"{vendor}-1", "status": 500 if error else 200,
                  "outcome": "upstream_error" if error else "ok", "error_type": None, "prompt_tokens": prompt,
                  "completion_tokens": completion, "cached_tokens": rng.choice((0, 0, 0, prompt // 2)),
                  "cost_usd": 0.0 if error else round((prompt * 2.5 + completion * 10) / 1e6, 9),
                  "latency_ms": rng.uniform(100, 5000), "ttfb_ms": None, "streamed": rng.random() < 0.5,
                  "attempts": 1, "detail": None, "budget_period": "lifetime", "unpriced": False}
        yield tuple(values[name] for name in COLUMNS)


async def _fill(engine: AsyncEngine, count: int, batch: int) -> float:
    repository = UsageRepository(engine)
    started = time.perf_counter()
    pending: list[tuple[Any, ...]] = []
    for row in _rows(count):
        pending.append(row)
        if len(pending) == batch:
            await repository.insert_rows(COLUMNS, pending)
            pending = []
    await repository.insert_rows(COLUMNS, pending)
    return time.perf_counter() - started


async def _time(report: UsageReport, params: dict[str, str], repeat: int) -> tuple[float, int]:
    query = UsageQuery.parse(params)
    summary = await report.summarize(query)  # warm-up: pages into the cache, as on a gateway in use
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await report.summarize(query)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000, summary.totals.requests


async def _plan(engine: AsyncEngine) -> str:
    where = "key_name = 'key-07' AND created_at >= '2026-10-01' AND created_at < '2026-11-01'"
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = await conn.execute(text(f"EXPLAIN QUERY PLAN SELECT date(created_at), count(*), "
                                           f"sum(prompt_tokens), sum(cost_usd) FROM usage WHERE {where} GROUP BY 1"))
            return "; ".join(str(row[-1]) for row in rows)
        rows = await conn.execute(text(f"EXPLAIN SELECT to_char(timezone('UTC', created_at), 'YYYY-MM-DD'), "
                                       f"count(*), sum(prompt_tokens), sum(cost_usd) FROM usage WHERE {where} "
                                       f"GROUP BY 1"))
        return "; ".join(str(row[0]).strip() for row in rows)


async def _drop_report_indexes(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("DROP INDEX ix_usage_key_name_created"))
        await conn.execute(text("DROP INDEX ix_usage_vendor_created"))


async def _index_build(engine: AsyncEngine) -> float:
    """What migration 0004 costs on a ledger this size: its two indexes dropped and built again."""
    await _drop_report_indexes(engine)
    started = time.perf_counter()
    async with engine.begin() as conn:
        await conn.execute(text("CREATE INDEX ix_usage_key_name_created ON usage (key_name, created_at)"))
        await conn.execute(text("CREATE INDEX ix_usage_vendor_created ON usage (vendor, created_at)"))
    return time.perf_counter() - started


async def bench(name: str, url: str, rows: int, batch: int, repeat: int, report_indexes: bool) -> None:
    engine = create_engine(url)
    try:
        await migrate(engine)
        if not report_indexes:
            await _drop_report_indexes(engine)
            name += " without migration 0004's indexes"
        filled = await _fill(engine, rows, batch)
        print(f"\n## {name}: {rows:,} rows inserted in {filled:.1f} s ({rows / filled:,.0f} rows/s, "
              f"batches of {batch:,})")
        print(f"plan (one key, a month): {await _plan(engine)}")
        report = UsageReport(engine)
        before = {label: await _time(report, params, repeat) for label, params in QUERIES}
        async with engine.connect() as conn:  # VACUUM as autovacuum would have by now (visibility map, hint bits)
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("ANALYZE" if engine.dialect.name == "sqlite" else "VACUUM ANALYZE usage"))
        after = {label: await _time(report, params, repeat) for label, params in QUERIES}
        print("\n| query | rows matched | ms (fresh) | ms (after [VACUUM] ANALYZE) |\n|---|---:|---:|---:|")
        for label, _params in QUERIES:
            print(f"| {label} | {before[label][1]:,} | {before[label][0]:.1f} | {after[label][0]:.1f} |")
        if report_indexes:
            print(f"\nmigration 0004's two indexes built on {rows:,} rows in {await _index_build(engine):.2f} s")
    finally:
        await engine.dispose()


async def _postgres(admin_url: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(admin_url, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="A server where the bench may create (and then drop) a database of its own.")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--without-report-indexes", action="store_true",
                        help="Drop migration 0004's indexes first (what they change for writes and reports).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        asyncio.run(bench("SQLite", f"sqlite:///{Path(scratch) / 'usage.db'}", args.rows, args.batch, args.repeat,
                          not args.without_report_indexes))
    if args.skip_postgres:
        return
    database = "yourouter_bench_" + secrets.token_hex(4)
    asyncio.run(_postgres(args.postgres_url, f'CREATE DATABASE "{database}"'))
    try:
        url = args.postgres_url.rpartition("/")[0] + "/" + database
        asyncio.run(bench("PostgreSQL", url, args.rows, args.batch, args.repeat, not args.without_report_indexes))
    finally:
        asyncio.run(_postgres(args.postgres_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
