"""Pricing a request for the ledger: zero-completion insurance, embeddings by input, unknown models flagged."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from yourouter.config.schema import ModelEntry
from yourouter.metering.cost import billable, period_label, price_record
from yourouter.metering.ledger import UsageRecord
from yourouter.pricing import Price, PriceBook

BOOK = PriceBook({"m": Price.of(input=2.5, output=10, cached_input=1.25), "e": Price.of(input=0.02)}, table={})


def _record(**fields: object) -> UsageRecord:
    base: dict[str, object] = {"request_id": "r", "endpoint": "chat.completions", "status": 200, "outcome": "ok",
                               "prompt_tokens": 1000, "completion_tokens": 500, "cached_tokens": 400}
    base.update(fields)
    return UsageRecord(**base)  # type: ignore[arg-type]


def test_a_good_answer_costs_its_tokens_exactly() -> None:
    record = _record()
    cost = price_record(record, BOOK, "m")
    assert cost == Decimal("0.0015") + Decimal("0.0005") + Decimal("0.005")  # fresh + cached + output
    assert record.cost_usd == float(cost) and not record.unpriced


@pytest.mark.parametrize("fields", [
    {"status": 500, "outcome": "upstream_error"}, {"status": 429, "outcome": "rate_limited"},
    {"completion_tokens": 0}, {"status": 200, "outcome": "upstream_error"}, {"status": 400, "outcome": "client_error"}])
def test_errors_and_zero_completions_cost_nothing(fields: dict[str, object]) -> None:
    record = _record(**fields)
    assert price_record(record, BOOK, "m") == 0 and record.cost_usd == 0 and not billable(record)


def test_cancelled_streams_pay_for_what_was_generated_and_embeddings_for_input() -> None:
    assert price_record(_record(outcome="cancelled", completion_tokens=10), BOOK, "m") > 0
    for endpoint in ("embeddings", "gemini.embedContent", "gemini.batchEmbedContents", "gemini.predict"):
        embedding = _record(endpoint=endpoint, completion_tokens=0, cached_tokens=0)
        assert price_record(embedding, BOOK, "e") == Decimal("0.00002"), endpoint


def test_unknown_models_cost_zero_and_are_flagged_and_entries_win() -> None:
    record = _record()
    assert price_record(record, BOOK, "nobody-knows") == 0 and record.unpriced
    entry = ModelEntry(name="m", price={"input": 1, "output": 1})  # type: ignore[arg-type]
    assert price_record(_record(cached_tokens=0), BOOK, entry) == Decimal("0.0015")


def test_period_labels_are_utc() -> None:
    moment = dt.datetime(2026, 11, 30, 23, 59, 59, tzinfo=dt.UTC).timestamp()
    assert period_label("day", moment) == "2026-11-30" and period_label("month", moment) == "2026-11"
    assert period_label(None, moment) == "lifetime"
