"""Key attributes (vendors, limits, budget, expiry, disabled) and the ledger's budget period and price flag.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as table:
        table.add_column(sa.Column("vendors", sa.JSON, nullable=True))
        table.add_column(sa.Column("rpm", sa.Integer, nullable=True))
        table.add_column(sa.Column("tpm", sa.Integer, nullable=True))
        table.add_column(sa.Column("max_concurrency", sa.Integer, nullable=True))
        table.add_column(sa.Column("budget_usd", sa.Numeric(18, 9), nullable=True))
        table.add_column(sa.Column("budget_period", sa.String(8), nullable=True))
        table.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()))
        table.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("usage") as table:
        # the budget period the cost counted toward: "2026-11-29" (day), "2026-11" (month), "lifetime"
        table.add_column(sa.Column("budget_period", sa.String(16), nullable=True))
        # the model had no price: its cost is 0 and flagged
        table.add_column(sa.Column("unpriced", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("usage") as table:
        table.drop_column("unpriced")
        table.drop_column("budget_period")
    with op.batch_alter_table("api_keys") as table:
        for name in ("updated_at", "disabled", "expires_at", "budget_period", "budget_usd", "max_concurrency",
                     "tpm", "rpm", "vendors"):
            table.drop_column(name)
