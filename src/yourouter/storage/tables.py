"""The database schema (SQLAlchemy Core tables). Alembic migrations in `migrations/` create and evolve it; an empty
database gets it directly (`storage.db.migrate`), so it must equal what the migrations build (checked, server defaults
included, by tests/unit/test_migrations.py)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    # sha256 of the full key; the key itself is never stored.
    Column("key_hash", String(64), nullable=False, unique=True),
    # The first characters, so a person can tell keys apart in a listing.
    Column("key_prefix", String(16), nullable=False),
    Column("models", JSON, nullable=False),
    Column("metadata", JSON, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("vendors", JSON, nullable=True),  # null = all
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("max_concurrency", Integer, nullable=True),
    Column("budget_usd", Numeric(18, 9), nullable=True),
    Column("budget_period", String(8), nullable=True),  # day | month | null (lifetime)
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("disabled", Boolean, nullable=False, default=False, server_default=false()),
    Column("updated_at", DateTime(timezone=True), nullable=True),
)

usage = Table(
    "usage",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("key_id", String(40), nullable=True),
    Column("key_name", String(200), nullable=True),
    Column("endpoint", String(40), nullable=False),
    Column("model", String(200), nullable=True),
    Column("vendor", String(100), nullable=True),
    Column("deployment", String(100), nullable=True),
    Column("status", Integer, nullable=False),
    # ok | client_error | auth_error | upstream_error | rate_limited | cancelled | gateway_error
    Column("outcome", String(32), nullable=False),
    Column("error_type", String(64), nullable=True),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cached_tokens", Integer, nullable=False, default=0),
    Column("cost_usd", Numeric(18, 9), nullable=False, default=0),  # 0 for errors and zero-completion answers
    Column("latency_ms", Float, nullable=False),
    Column("ttfb_ms", Float, nullable=True),
    Column("streamed", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False, default=1),
    Column("detail", Text, nullable=True),
    Column("budget_period", String(16), nullable=True),  # "2026-11-29", "2026-11" or "lifetime"
    Column("unpriced", Boolean, nullable=False, default=False,
           server_default=false()),  # the model had no price (cost 0)
    Index("ix_usage_created_at", "created_at"),
    Index("ix_usage_key_created", "key_id", "created_at"),
    Index("ix_usage_model_created", "model", "created_at"),
    Index("ix_usage_request_id", "request_id", unique=True),  # one row per request (migration 0005)
    # usage reports filter by key name and by vendor over a time range (migration 0004)
    Index("ix_usage_key_name_created", "key_name", "created_at"),
    Index("ix_usage_vendor_created", "vendor", "created_at"),
)

video_tasks = Table(
    "video_tasks",
    metadata,
    Column("id", String(64), primary_key=True),  # the upstream's task id, which clients and callbacks see
    Column("key_id", String(40), nullable=False),  # the owner: only this key may see or delete the task
    Column("key_name", String(200), nullable=True),
    Column("model", String(200), nullable=False),  # as the client named it
    Column("upstream_model", String(200), nullable=False),
    Column("vendor", String(100), nullable=False),
    Column("deployment", String(100), nullable=False),
    Column("body_sha256", String(64), nullable=False),
    # queued | running | succeeded | failed | cancelled | expired
    Column("status", String(16), nullable=False),
    Column("task", JSON, nullable=False),  # the last task object the upstream answered
    Column("completion_tokens", Integer, nullable=False, default=0, server_default="0"),
    Column("cost_usd", Numeric(18, 9), nullable=False, default=0, server_default="0"),
    Column("budget_usd", Numeric(18, 9), nullable=True),  # the owner's budget when the task was created
    Column("budget_period", String(8), nullable=True),
    # set once, when the task first reached a terminal status and its usage row was written (billing exactly once)
    Column("settled_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("next_poll_at", DateTime(timezone=True), nullable=False),
    Column("claimed_until", DateTime(timezone=True), nullable=True),  # a poller's lease on the task
    Column("claimed_by", String(64), nullable=True),
    Index("ix_video_tasks_key_created", "key_id", "created_at"),
    Index("ix_video_tasks_poll", "settled_at", "next_poll_at"),
)
