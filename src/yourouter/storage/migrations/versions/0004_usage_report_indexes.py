"""Indexes for usage reports, which filter the ledger by key name and by vendor over a time range.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_usage_key_name_created", "usage", ["key_name", "created_at"])
    op.create_index("ix_usage_vendor_created", "usage", ["vendor", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_usage_vendor_created", table_name="usage")
    op.drop_index("ix_usage_key_name_created", table_name="usage")
