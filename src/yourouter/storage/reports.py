"""Usage reporting: totals and groups over the ledger, for `GET /admin/usage` and `yourouter usage`.

One aggregate query per report (grouped in SQL, ordered here), served by the `usage` indexes on
(key_name, created_at), (model, created_at), (vendor, created_at) and (created_at). Money is summed exactly: on
PostgreSQL as NUMERIC, on SQLite (which sums NUMERIC as floats) as integer nanodollars.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Integer, case, cast, func, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from yourouter.storage.tables import usage

GROUPS = ("day", "model", "key", "vendor", "endpoint")
FILTERS = ("key", "model", "vendor", "endpoint")
PARAMETERS = (*FILTERS, "since", "until", "group_by")
#: Outcomes that are not errors (the same two that are billed).
_NOT_ERRORS = ("ok", "cancelled")
_NANO = Decimal("0.000000001")
_NANOS_PER_USD = 1_000_000_000


class UsageQueryError(ValueError):
    """A report parameter that cannot be used; `param` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def parse_moment(param: str, value: str) -> dt.datetime:
    """An ISO 8601 date (midnight) or datetime, UTC unless it carries an offset; returned in UTC."""
    for candidate in (value, _plus_restored(value)):
        try:
            moment = dt.datetime.fromisoformat(candidate)
            return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
        except (ValueError, OverflowError):  # not ISO; or beyond year 9999 once in UTC
            continue
    raise UsageQueryError(param, f"{param} must be an ISO 8601 date or datetime (e.g. 2026-11-01 or "
                                 f"2026-11-01T08:00:00+02:00), not {value!r}.")


def _plus_restored(value: str) -> str:
    # An unencoded `+02:00` in a query string arrives as ` 02:00`.
    head, space, tail = value.rpartition(" ")
    return f"{head}+{tail}" if space and tail[:2].isdigit() else value


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """What to report: filters (key by name; `until` exclusive) and an optional grouping."""

    key: str | None = None
    model: str | None = None
    vendor: str | None = None
    endpoint: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    group_by: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> UsageQuery:
        """From text parameters (query string, command line); raises `UsageQueryError` naming the bad one."""
        for name, value in params.items():
            if name not in PARAMETERS:
                raise UsageQueryError(name, f"Unknown parameter {name!r}; expected one of {', '.join(PARAMETERS)}.")
            if not value.strip():
                raise UsageQueryError(name, f"{name} must not be empty.")
        group_by = params.get("group_by")
        if group_by is not None and group_by not in GROUPS:
            raise UsageQueryError("group_by", f"group_by must be one of {', '.join(GROUPS)}, not {group_by!r}.")
        since = parse_moment("since", params["since"].strip()) if "since" in params else None
        until = parse_moment("until", params["until"].strip()) if "until" in params else None
        if since is not None and until is not None and until <= since:
            raise UsageQueryError("until", "until must be later than since.")
        return cls(key=params.get("key"), model=params.get("model"), vendor=params.get("vendor"),
                   endpoint=params.get("endpoint"), since=since, until=until, group_by=group_by)


@dataclass(frozen=True, slots=True)
class UsageTotals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    errors: int = 0

    def __add__(self, other: UsageTotals) -> UsageTotals:
        return UsageTotals(self.requests + other.requests, self.prompt_tokens + other.prompt_tokens,
                           self.completion_tokens + other.completion_tokens, self.cached_tokens + other.cached_tokens,
                           self.cost_usd + other.cost_usd, self.errors + other.errors)

    def as_dict(self) -> dict[str, int | float]:
        return {"requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "cached_tokens": self.cached_tokens,
                "cost_usd": float(self.cost_usd.quantize(_NANO)), "errors": self.errors}


@dataclass(frozen=True, slots=True)
class UsageGroup:
    group: str | None  # a UTC date (`2026-11-29`) for `day`; None for rows without the value (e.g. no key)
    totals: UsageTotals


@dataclass(frozen=True, slots=True)
class UsageSummary:
    query: UsageQuery
    totals: UsageTotals
    rows: tuple[UsageGroup, ...]

    def as_dict(self) -> dict[str, Any]:
        """The JSON the admin API answers and `yourouter usage --format json` prints."""
        return {"totals": self.totals.as_dict(),
                "rows": [{"group": row.group, **row.totals.as_dict()} for row in self.rows],
                "since": self.query.since.isoformat() if self.query.since else None,
                "until": self.query.until.isoformat() if self.query.until else None,
                "group_by": self.query.group_by}


def _column(name: str) -> ColumnElement[Any]:
    """The ledger column of a filter or group (a key by its name)."""
    return usage.c.key_name if name == "key" else usage.c[name]


def _utc(moment: dt.datetime) -> dt.datetime:
    # SQLite's DateTime binds the wall-clock fields and drops the offset: the ledger's text is UTC.
    return moment.astimezone(dt.UTC)


class UsageReport:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"

    def _day(self) -> ColumnElement[Any]:
        if self._sqlite:  # the ledger's text is UTC `YYYY-MM-DD HH:MM:SS.ffffff`
            return func.date(usage.c.created_at)
        return func.to_char(func.timezone("UTC", usage.c.created_at), "YYYY-MM-DD")

    def _group(self, group_by: str) -> ColumnElement[Any]:
        return self._day() if group_by == "day" else _column(group_by)

    def _cost(self) -> ColumnElement[Any]:
        if self._sqlite:  # exact: integer nanodollars, not a float sum
            nanos = func.round(usage.c.cost_usd * literal_column(str(_NANOS_PER_USD)))
            return func.coalesce(func.sum(cast(nanos, Integer)), 0)
        return func.coalesce(func.sum(usage.c.cost_usd), 0)

    def _money(self, value: Any) -> Decimal:
        if self._sqlite:
            return Decimal(int(value)) / _NANOS_PER_USD
        return Decimal(value).quantize(_NANO)

    async def summarize(self, query: UsageQuery) -> UsageSummary:
        measures: list[ColumnElement[Any]] = [
            func.count(), func.coalesce(func.sum(usage.c.prompt_tokens), 0),
            func.coalesce(func.sum(usage.c.completion_tokens), 0), func.coalesce(func.sum(usage.c.cached_tokens), 0),
            self._cost(), func.coalesce(func.sum(case((usage.c.outcome.in_(_NOT_ERRORS), 0), else_=1)), 0)]
        group = self._group(query.group_by) if query.group_by else None
        statement = select(*([group.label("grp")] if group is not None else []), *measures).select_from(usage)
        for name in FILTERS:
            value = getattr(query, name)
            if value is not None:
                statement = statement.where(_column(name) == value)
        if query.since is not None:
            statement = statement.where(usage.c.created_at >= _utc(query.since))
        if query.until is not None:
            statement = statement.where(usage.c.created_at < _utc(query.until))
        if group is not None:
            statement = statement.group_by(group)
        async with self._engine.begin() as conn:
            if not self._sqlite:
                # asyncpg prepares statements, and after five runs PostgreSQL may switch to a generic plan that
                # does not know the key or the window: measured 5-6x slower for one key's month on 1M rows.
                await conn.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
            result = (await conn.execute(statement)).all()
        if group is None:
            return UsageSummary(query, self._totals(result[0]), ())
        rows = sorted((UsageGroup(None if row[0] is None else str(row[0]), self._totals(row[1:])) for row in result),
                      key=lambda row: (row.group is None, row.group or ""))
        totals = sum((row.totals for row in rows), UsageTotals())
        return UsageSummary(query, totals, tuple(rows))

    def _totals(self, row: Any) -> UsageTotals:
        requests, prompt, completion, cached, cost, errors = row
        return UsageTotals(int(requests), int(prompt), int(completion), int(cached), self._money(cost), int(errors))
