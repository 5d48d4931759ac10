"""One usage row per request id: the ledger's index on `request_id` becomes unique.

The ledger writes with `ON CONFLICT (request_id) DO NOTHING`, so a batch retried after a commit whose reply was lost
(a dropped connection, a timeout) cannot count a request twice. Rows already duplicated by such a retry are removed
first, keeping the earliest of each request id: they are copies of one request, counted more than once.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM usage WHERE EXISTS (SELECT 1 FROM usage AS earlier "
               "WHERE earlier.request_id = usage.request_id AND earlier.id < usage.id)")
    op.drop_index("ix_usage_request_id", table_name="usage")
    op.create_index("ix_usage_request_id", "usage", ["request_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_usage_request_id", table_name="usage")
    op.create_index("ix_usage_request_id", "usage", ["request_id"])
