"""two-factor authentication: TOTP secrets, recovery codes, sessions' amr

The TOTP secrets are stored encrypted (MFA_ENCRYPTION_KEYS), the recovery
codes as SHA-256 hashes; a session's amr (RFC 8176) is what its tokens carry,
"pwd" for every session made before this revision (API.md §8).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

USER_COLUMNS = (
    ("totp_secret", sa.String(length=255)),
    ("totp_enabled_at", sa.DateTime(timezone=True)),
    ("totp_last_step", sa.BigInteger()),
    ("totp_pending_secret", sa.String(length=255)),
    ("totp_pending_expires_at", sa.DateTime(timezone=True)),
)


def upgrade():
    for name, type_ in USER_COLUMNS:
        op.add_column("users", sa.Column(name, type_, nullable=True))
    op.add_column("sessions", sa.Column("amr", sa.String(length=64), nullable=False, server_default="pwd"))
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_recovery_codes_user_hash", "recovery_codes", ["user_id", "code_hash"])


def downgrade():
    op.drop_index("ix_recovery_codes_user_hash", table_name="recovery_codes")
    op.drop_table("recovery_codes")
    op.drop_column("sessions", "amr")
    for name, _ in reversed(USER_COLUMNS):
        op.drop_column("users", name)
