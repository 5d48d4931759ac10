"""Budget periods (UTC days and months, or a lifetime) and exact money in integer nano-dollars."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from yourouter.limits.model import Budget, Period

NANOS_PER_USD = 10**9


@dataclass(frozen=True, slots=True)
class PeriodSpan:
    """One budget period: spend is counted per (scope, key)."""

    key: str  # "2025-06-01" (a day), "2025-06" (a month) or "lifetime"
    start: datetime | None  # what the ledger sums from; None = ever
    start_ts: float
    end_ts: float  # when the next period starts (inf for a lifetime)


LIFETIME = PeriodSpan("lifetime", None, -math.inf, math.inf)


def period_span(period: Period | None, now: float) -> PeriodSpan:
    if period is None:
        return LIFETIME
    moment = datetime.fromtimestamp(now, UTC)
    if period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return PeriodSpan(start.strftime("%Y-%m-%d"), start, start.timestamp(), (start + timedelta(days=1)).timestamp())
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return PeriodSpan(start.strftime("%Y-%m"), start, start.timestamp(), end.timestamp())


class PeriodCalendar:
    """`period_span` with the current day and month cached: the hot path pays two float comparisons."""

    __slots__ = ("_day", "_month")

    def __init__(self) -> None:
        self._day = period_span("day", 0.0)
        self._month = period_span("month", 0.0)

    def span(self, budget: Budget, now: float) -> PeriodSpan:
        period = budget.period
        if period is None:
            return LIFETIME
        if period == "day":
            if not self._day.start_ts <= now < self._day.end_ts:
                self._day = period_span("day", now)
            return self._day
        if not self._month.start_ts <= now < self._month.end_ts:
            self._month = period_span("month", now)
        return self._month


def budget_wait(budget: Budget, span: PeriodSpan, now: float) -> float | None:
    """Seconds until a refused budget can pass again: the next period, or never for a lifetime budget."""
    return None if budget.period is None else max(0.0, span.end_ts - now)


def to_nanos(usd: Decimal, rounding: str = ROUND_HALF_EVEN) -> int:
    return int((usd * NANOS_PER_USD).to_integral_value(rounding=rounding))


def reserve_nanos(usd: Decimal) -> int:
    return to_nanos(usd, ROUND_CEILING)  # a reservation never rounds below its worst case


def limit_nanos(usd: Decimal) -> int:
    return to_nanos(usd, ROUND_FLOOR)  # nor a limit above what was set


def from_nanos(nanos: int) -> Decimal:
    return Decimal(nanos).scaleb(-9)
