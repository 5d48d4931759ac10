"""What a request costs, as the ledger and budgets count it.

Zero-completion insurance: errors (any outcome but `ok` or `cancelled`, any status from 300 up) and answers with no
completion tokens cost nothing; they are still recorded. Embeddings, which have no completion, are billed by their
input. A model without a price costs 0 and its row is flagged `unpriced`.
"""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal

from yourouter.config.schema import ModelEntry
from yourouter.limits.periods import PeriodSpan, period_span
from yourouter.metering.ledger import UsageRecord
from yourouter.pricing import PriceBook

ZERO = Decimal(0)
_BILLED_OUTCOMES = frozenset({"ok", "cancelled"})
#: Endpoints (as the ledger names them) billed by their input: embeddings have no completion.
_INPUT_ONLY = frozenset({"embeddings", "gemini.embedContent", "gemini.batchEmbedContents", "gemini.predict"})
_NANO = Decimal("0.000000001")


def period_label(period: str | None, at: float) -> str:
    """The budget period a request counts toward: `2026-11-29` (day), `2026-11` (month) or `lifetime` (UTC) — the
    limits engine's own period key."""
    return _span(period, int(at)).key


def period_start(period: str | None, at: float) -> dt.datetime | None:
    """When the budget period holding `at` began (UTC); None for a lifetime budget."""
    return _span(period, int(at)).start


@functools.lru_cache(maxsize=4)
def _span(period: str | None, second: int) -> PeriodSpan:
    """Memoised per second: every request of a busy second shares one date conversion."""
    return period_span(period, second)  # type: ignore[arg-type]


def billable(record: UsageRecord) -> bool:
    if record.status >= 300 or record.status < 200 or record.outcome not in _BILLED_OUTCOMES:
        return False
    if record.endpoint in _INPUT_ONLY:
        return record.prompt_tokens > 0
    return record.completion_tokens > 0


def price_record(record: UsageRecord, prices: PriceBook, model: str | ModelEntry | None) -> Decimal:
    """Sets the row's `cost_usd` and `unpriced` flag; returns the exact cost (what budgets are charged)."""
    if model is None or not billable(record):
        record.cost_usd = 0.0
        return ZERO
    price = prices.price_for(model)
    if price is None:
        record.unpriced, record.cost_usd = True, 0.0
        return ZERO
    cost = price.tokens_cost(record.prompt_tokens, record.completion_tokens, record.cached_tokens)
    cost = cost.quantize(_NANO)  # the ledger keeps nine decimals; budgets count exactly what it keeps
    record.cost_usd = float(cost)
    return cost
