"""Alembic environment. The gateway runs migrations itself at start (`storage.db.migrate`), handing a connection
in `config.attributes["connection"]`; `alembic` on the command line is not needed."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from yourouter.storage.db import MIGRATION_LOCK
from yourouter.storage.tables import metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `yourouter.storage.db.migrate`")
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK})
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    context.run_migrations()


run_migrations_online()
