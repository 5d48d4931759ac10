"""Usage reports (`GET /admin/usage`, `yourouter usage`) against the ledger, on SQLite and on PostgreSQL.

Known requests with two keys over three models and two vendors (priced by a `prices` override), plus rows written
straight into the ledger at known times for exact `since`/`until` and day boundaries. Every report is checked
against the ledger's own rows, aggregated here.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import secrets
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select

from tests.support.gateway import MASTER_KEY, GatewayHandle, HttpResponse, gateway_config, http, start_gateway
from tests.support.process import write_config, yourouter
from yourouter.config import settings_from_mapping
from yourouter.metering.ledger import COLUMNS
from yourouter.storage.db import create_engine
from yourouter.storage.repositories import UsageRepository
from yourouter.storage.tables import usage

PRICES = {"gpt-4o": {"input": 2.5, "output": 10.0}, "gpt-4o-mini": {"input": 0.15, "output": 0.6},
          "only-b": {"input": 1.1, "output": 3.3}}
UTC = dt.UTC
NANO = Decimal("0.000000001")


@dataclass
class Ledger:
    gateway: GatewayHandle
    config: dict[str, Any]
    alpha: str  # key names, unique per database (the PostgreSQL one is shared by the session)
    beta: str
    synthetic: str  # the key name of the rows written at known times


def _synthetic_rows(key_name: str) -> list[dict[str, Any]]:
    """Rows around the UTC day boundaries of 2024-02-29 (a leap day), with exact costs."""
    def row(at: str, model: str, vendor: str, cost: str, prompt: int, completion: int, outcome: str = "ok",
            cached: int = 0) -> dict[str, Any]:
        return {"request_id": "synthetic-" + secrets.token_hex(8), "endpoint": "chat.completions",
                "created_at": dt.datetime.fromisoformat(at), "key_id": "key_synthetic", "key_name": key_name,
                "model": model, "vendor": vendor, "deployment": "sim-a", "status": 200 if outcome == "ok" else 500,
                "outcome": outcome, "prompt_tokens": prompt, "completion_tokens": completion, "cached_tokens": cached,
                "cost_usd": float(cost), "latency_ms": 1.0, "attempts": 1, "budget_period": "lifetime"}

    return [
        row("2024-02-28T23:59:59.999999+00:00", "m-one", "v-one", "0.1", 10, 5),
        row("2024-02-29T00:00:00+00:00", "m-one", "v-one", "0.2", 20, 7, cached=4),
        row("2024-02-29T13:30:00+02:00", "m-two", "v-two", "0", 30, 0, outcome="upstream_error"),
        row("2024-02-29T23:59:59.999999+00:00", "m-two", "v-two", "1.000000007", 40, 9),
        row("2024-03-01T00:00:00+00:00", "m-two", "v-one", "0.000000001", 50, 11),
        row("2024-03-01T01:00:00+01:00", "m-one", "v-one", "0.3", 60, 13),  # = 2024-03-01T00:00Z
    ]


def _insert(database_url: str, rows: list[dict[str, Any]]) -> None:
    async def run() -> None:
        engine = create_engine(database_url)
        try:
            values = [tuple(row.get(name, False if name in ("streamed", "unpriced") else None) for name in COLUMNS)
                      for row in rows]
            await UsageRepository(engine).insert_rows(COLUMNS, values)
        finally:
            await engine.dispose()

    asyncio.run(run())


def _ledger_rows(database_url: str) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                return [dict(row._mapping) for row in await conn.execute(select(usage))]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _indexes(database_url: str) -> set[str]:
    async def run() -> set[str]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                found = await conn.run_sync(lambda sync: inspect(sync).get_indexes("usage"))
            return {str(index["name"]) for index in found}
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _wait_for_rows(database_url: str, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (found := len(_ledger_rows(database_url))) < count:
        assert time.monotonic() < deadline, f"the ledger has {found} rows, expected {count}"
        time.sleep(0.05)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, sim_a: str, sim_b: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp_path_factory.mktemp('usage') / 'usage.db'}"
    else:
        database_url = request.getfixturevalue("postgres_url")
    suffix = secrets.token_hex(3)
    alpha, beta, synthetic = f"alpha-{suffix}", f"beta-{suffix}", f"synthetic-{suffix}"
    alpha_key, beta_key = f"sk-usage-alpha-{suffix}", f"sk-usage-beta-{suffix}"
    config = gateway_config(sim_a, sim_b, database_url)
    config["keys"] = [{"key": alpha_key, "name": alpha, "models": ["*"]},
                      {"key": beta_key, "name": beta, "models": ["*"]}]
    config["prices"] = PRICES
    with start_gateway(settings_from_mapping(config, env={})) as gateway:
        before = len(_ledger_rows(database_url))
        calls = [(alpha_key, "gpt-4o", 1), (alpha_key, "gpt-4o", 3), (alpha_key, "gpt-4o", 8),
                 (alpha_key, "gpt-4o-mini", 2), (alpha_key, "gpt-4o-mini", 5), (beta_key, "gpt-4o", 13),
                 (beta_key, "only-b", 4), (beta_key, "only-b", 6)]
        for key, model, words in calls:
            client = gateway.client(key=key)
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "word " * words}])
        stream = gateway.client(key=beta_key).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "stream me"}], stream=True)
        assert list(stream)
        failed = gateway.post("/v1/chat/completions", {"model": "dead-model", "messages": [
            {"role": "user", "content": "hi"}]}, key=alpha_key)  # connection refused upstream: an error row
        assert failed.status == 500
        synthetic_rows = _synthetic_rows(synthetic)
        _insert(database_url, synthetic_rows)
        _wait_for_rows(database_url, before + len(calls) + 2 + len(synthetic_rows))
        yield Ledger(gateway, config, alpha, beta, synthetic)


def _report(ledger: Ledger, **params: str) -> HttpResponse:
    query = urllib.parse.urlencode(params)
    return http("GET", f"{ledger.gateway.url}/admin/usage{'?' + query if query else ''}", None,
                {"Authorization": f"Bearer {MASTER_KEY}"})


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _expected(rows: list[dict[str, Any]], group_by: str | None, filters: Mapping[str, str]) -> dict[str, Any]:
    """The report, computed here from the ledger's rows."""
    columns = {"key": "key_name", "model": "model", "vendor": "vendor", "endpoint": "endpoint"}
    since = dt.datetime.fromisoformat(filters["since"]) if "since" in filters else None
    until = dt.datetime.fromisoformat(filters["until"]) if "until" in filters else None
    kept = [row for row in rows
            if all(row[columns[name]] == value for name, value in filters.items() if name in columns)
            and (since is None or _utc(row["created_at"]) >= since)
            and (until is None or _utc(row["created_at"]) < until)]

    def measures(group: list[dict[str, Any]]) -> dict[str, Any]:
        cost = sum((Decimal(str(row["cost_usd"])) for row in group), Decimal(0))
        return {"requests": len(group), "prompt_tokens": sum(row["prompt_tokens"] for row in group),
                "completion_tokens": sum(row["completion_tokens"] for row in group),
                "cached_tokens": sum(row["cached_tokens"] for row in group),
                "cost_usd": float(cost.quantize(NANO)),
                "errors": sum(row["outcome"] not in ("ok", "cancelled") for row in group)}

    groups: dict[str | None, list[dict[str, Any]]] = {}
    if group_by is not None:
        for row in kept:
            value = (_utc(row["created_at"]).date().isoformat() if group_by == "day"
                     else row[columns[group_by]])
            groups.setdefault(value, []).append(row)
    ordered = sorted(groups, key=lambda value: (value is None, value or ""))
    return {"totals": measures(kept), "rows": [{"group": value, **measures(groups[value])} for value in ordered],
            "group_by": group_by}


def test_report_matches_the_ledger(ledger: Ledger) -> None:
    rows = _ledger_rows(ledger.gateway.settings.database_url)
    window = {"since": "2024-02-29T00:00:00+00:00", "until": "2024-03-01T00:00:00+00:00"}
    for filters in ({}, {"key": ledger.alpha}, {"key": ledger.beta}, {"model": "gpt-4o"}, {"vendor": "azure"},
                    {"endpoint": "chat.completions"}, {"key": ledger.synthetic, **window},
                    {"model": "gpt-4o-mini", "key": ledger.beta}):
        for group_by in (None, "day", "model", "key", "vendor", "endpoint"):
            params = {**filters, **({"group_by": group_by} if group_by else {})}
            response = _report(ledger, **params)
            assert response.status == 200, response.body
            body = response.json()
            assert body.pop("since") == filters.get("since") and body.pop("until") == filters.get("until")
            assert body == _expected(rows, group_by, filters), params


def test_known_requests_by_key_model_and_vendor(ledger: Ledger) -> None:
    by_key = {row["group"]: row for row in _report(ledger, group_by="key").json()["rows"]}
    alpha, beta = by_key[ledger.alpha], by_key[ledger.beta]
    assert (alpha["requests"], alpha["errors"]) == (6, 1)  # five answers and the refused upstream
    assert (beta["requests"], beta["errors"]) == (4, 0)
    by_model = {row["group"]: row for row in _report(ledger, key=ledger.beta, group_by="model").json()["rows"]}
    assert {name: row["requests"] for name, row in by_model.items()} == {"gpt-4o": 1, "gpt-4o-mini": 1, "only-b": 2}
    by_vendor = _report(ledger, key=ledger.beta, group_by="vendor").json()["rows"]
    assert [(row["group"], row["requests"]) for row in by_vendor] == [("azure", 2), ("openai", 2)]
    # each cost is the override's price for the tokens the ledger recorded
    for row in _ledger_rows(ledger.gateway.settings.database_url):
        if row["key_name"] in (ledger.alpha, ledger.beta) and row["outcome"] == "ok":
            price = PRICES[row["model"]]
            cost = (row["prompt_tokens"] * Decimal(str(price["input"]))
                    + row["completion_tokens"] * Decimal(str(price["output"]))) / 1_000_000
            assert Decimal(str(row["cost_usd"])) == cost.quantize(NANO) > 0


def test_since_until_and_utc_days_exactly(ledger: Ledger) -> None:
    key = ledger.synthetic
    days = _report(ledger, key=key, group_by="day").json()
    assert [(row["group"], row["requests"]) for row in days["rows"]] == [
        ("2024-02-28", 1), ("2024-02-29", 3), ("2024-03-01", 2)]
    assert days["totals"] == {"requests": 6, "prompt_tokens": 210, "completion_tokens": 45, "cached_tokens": 4,
                              "cost_usd": 1.600000008, "errors": 1}
    leap_day = _report(ledger, key=key, since="2024-02-29", until="2024-03-01").json()  # until is exclusive
    assert leap_day["totals"]["requests"] == 3 and leap_day["totals"]["cost_usd"] == 1.200000007
    assert (leap_day["since"], leap_day["until"]) == ("2024-02-29T00:00:00+00:00", "2024-03-01T00:00:00+00:00")
    # an offset moves the boundary: 02:00+02:00 is midnight UTC; 23:59:59.999999 is the last instant of the 29th
    shifted = _report(ledger, key=key, since="2024-02-29T02:00:00+02:00", until="2024-02-29T23:59:59.999999").json()
    assert shifted["totals"]["requests"] == 2 and shifted["since"] == "2024-02-29T00:00:00+00:00"
    assert _report(ledger, key=key, since="2024-03-01T00:00:00.000001Z").json()["totals"]["requests"] == 0
    # `+` left unencoded in a query string arrives as a space, and still means an offset
    raw = http("GET", f"{ledger.gateway.url}/admin/usage?key={key}&since=2024-02-29T02:00:00+02:00", None,
               {"Authorization": f"Bearer {MASTER_KEY}"}).json()
    assert raw["since"] == "2024-02-29T00:00:00+00:00" and raw["totals"]["requests"] == 5
    empty = _report(ledger, key="nobody", group_by="day").json()
    assert empty["rows"] == [] and empty["totals"] == {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                                       "cached_tokens": 0, "cost_usd": 0.0, "errors": 0}


def test_bad_parameters_are_400_naming_them(ledger: Ledger) -> None:
    cases = [({"group_by": "week"}, "group_by"), ({"since": "yesterday"}, "since"), ({"until": "2024-13-01"}, "until"),
             ({"since": "2024-03-01", "until": "2024-03-01"}, "until"), ({"vendro": "azure"}, "vendro"),
             ({"key": ""}, "key")]
    for params, param in cases:
        response = _report(ledger, **params)
        assert response.status == 400, params
        error = response.json()["error"]
        assert error["param"] == param and error["type"] == "invalid_request_error" and param in error["message"]
    twice = http("GET", f"{ledger.gateway.url}/admin/usage?model=a&model=b", None,
                 {"Authorization": f"Bearer {MASTER_KEY}"})
    assert twice.status == 400 and twice.json()["error"]["param"] == "model"
    for key in ("sk-usage-alpha-0000", None):
        denied = http("GET", f"{ledger.gateway.url}/admin/usage", None,
                      {"Authorization": f"Bearer {key}"} if key else {})
        assert denied.status == 401 and denied.json()["error"]["code"] == "invalid_api_key"


def test_cli_table_json_and_csv(ledger: Ledger, tmp_path: Path) -> None:
    path = write_config(tmp_path / "usage.yaml", ledger.config)
    as_json = yourouter("usage", "--config", str(path), "--key", ledger.alpha, "--group-by", "model",
                        "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == _report(ledger, key=ledger.alpha, group_by="model").json()

    as_csv = yourouter("usage", "--config", str(path), "--key", ledger.synthetic, "--group-by", "day",
                       "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    assert list(csv.reader(io.StringIO(as_csv.stdout))) == [
        ["day", "requests", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "errors"],
        ["2024-02-28", "1", "10", "5", "0", "0.100000000", "0"],
        ["2024-02-29", "3", "90", "16", "4", "1.200000007", "1"],
        ["2024-03-01", "2", "110", "24", "0", "0.300000001", "0"]]

    table = yourouter("usage", "--config", str(path), "--group-by", "key", "--since", "2024-02-29",
                      "--until", "2024-03-01")
    assert table.returncode == 0, table.stderr
    lines = [line for line in table.stdout.splitlines() if "│" in line or "┃" in line]
    assert "key" in lines[0] and "cost usd" in lines[0]
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines[1:]]
    assert cells[-1][0] == "total" and cells[-1][1] == "3" and cells[-1][5] == "1.200000007"
    assert [ledger.synthetic, "3", "90", "16", "4", "1.200000007", "1"] in cells

    bad = yourouter("usage", "--config", str(path), "--group-by", "week")
    assert bad.returncode == 2 and "--group-by" in bad.stderr


def test_report_indexes_are_migrated(ledger: Ledger) -> None:
    found = _indexes(ledger.gateway.settings.database_url)
    assert {index.name for index in usage.indexes} <= found
    assert {"ix_usage_key_name_created", "ix_usage_vendor_created"} <= found


def test_days_are_utc_whatever_the_postgresql_session_time_zone(postgres_url: str) -> None:
    """A server or session set to another time zone changes neither the days nor the since/until boundaries."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from yourouter.storage.db import async_url, migrate
    from yourouter.storage.reports import UsageQuery, UsageReport

    key = f"synthetic-tz-{secrets.token_hex(3)}"

    async def run() -> list[tuple[str | None, int]]:
        engine = create_async_engine(async_url(postgres_url),
                                     connect_args={"server_settings": {"timezone": "Pacific/Kiritimati"}})  # UTC+14
        try:
            await migrate(engine)
            await UsageRepository(engine).insert_rows(COLUMNS, [
                tuple(row.get(name, False if name in ("streamed", "unpriced") else None) for name in COLUMNS)
                for row in _synthetic_rows(key)])
            report = UsageReport(engine)
            days = await report.summarize(UsageQuery(key=key, group_by="day"))
            leap = await report.summarize(UsageQuery.parse({"key": key, "since": "2024-02-29",
                                                            "until": "2024-03-01"}))
            assert leap.totals.requests == 3 and leap.totals.cost_usd == Decimal("1.200000007")
            return [(row.group, row.totals.requests) for row in days.rows]
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == [("2024-02-28", 1), ("2024-02-29", 3), ("2024-03-01", 2)]
