"""webhook deliveries: the outbox, and the delivery counts of every process

One row per event and URL of WEBHOOK_URLS (API.md §10), written in the
event's transaction and deleted with it. ``ix_webhook_deliveries_due``
serves the delivery processes' claim (pending rows due now); the counts
table holds authapi_webhook_deliveries_total by outcome.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-12
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_webhook_deliveries_due", ["status", "next_attempt_at"]),
    ("ix_webhook_deliveries_event_id", ["event_id"]),
)


def upgrade():
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')", name="ck_webhook_deliveries_status"
        ),
        sa.ForeignKeyConstraint(["event_id"], ["security_events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    for name, columns in INDEXES:
        op.create_index(name, "webhook_deliveries", columns)
    op.create_table(
        "webhook_outcome_counts",
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("outcome"),
    )


def downgrade():
    op.drop_table("webhook_outcome_counts")
    for name, _ in reversed(INDEXES):
        op.drop_index(name, table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
