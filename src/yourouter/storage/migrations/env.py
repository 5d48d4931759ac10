"""Alembic environment. The gateway runs migrations itself at start (`storage.db.migrate`), handing a connection
in `config.attributes["connection"]`; `alembic` on the command line is not needed."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from yourouter.storage.tables import metadata

# Any fixed number: the advisory lock that serialises concurrent migrations on PostgreSQL.
_MIGRATION_LOCK = 7_410_215_733


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `yourouter.storage.db.migrate`")
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK})
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    context.run_migrations()


run_migrations_online()
