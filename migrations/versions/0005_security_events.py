"""security events: the audit trail

One row per security-relevant change (API.md §10). ``user_id`` and
``actor_id`` are not foreign keys: a user's events outlive the account.
Each index serves one listing, newest first, keyed by (occurred_at, id).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_security_events_occurred", ["occurred_at", "id"]),
    ("ix_security_events_user", ["user_id", "occurred_at", "id"]),
    ("ix_security_events_type", ["type", "occurred_at", "id"]),
)


def upgrade():
    op.create_table(
        "security_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    for name, columns in INDEXES:
        op.create_index(name, "security_events", columns)


def downgrade():
    for name, _ in reversed(INDEXES):
        op.drop_index(name, table_name="security_events")
    op.drop_table("security_events")
