"""email on accounts, verification and password-reset tokens

users gets an optional ``email`` (kept as typed) and ``email_verified_at``; a verified address
is unique in any letter case (a partial unique index on lower(email)), an unverified one is
only a claim. email_tokens holds the SHA-256 of each mailed verification or reset token.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("email", sa.String(length=254), nullable=True))
    op.add_column(
        "users", sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_check_constraint(
        op.f("ck_users_email_verified"),
        "users",
        "email IS NOT NULL OR email_verified_at IS NULL",
    )
    op.create_index(
        "uq_users_email_verified",
        "users",
        [sa.text("lower(email)")],
        unique=True,
        postgresql_where=sa.text("email_verified_at IS NOT NULL"),
    )
    op.create_index("ix_users_email_lower", "users", [sa.text("lower(email)")], unique=False)
    op.create_table(
        "email_tokens",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("purpose", sa.String(length=6), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("purpose IN ('verify', 'reset')", name=op.f("ck_email_tokens_purpose")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_email_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_email_tokens_token_hash")),
    )
    op.create_index(op.f("ix_email_tokens_user_id"), "email_tokens", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_email_tokens_user_id"), table_name="email_tokens")
    op.drop_table("email_tokens")
    op.drop_index("ix_users_email_lower", table_name="users")
    op.drop_index("uq_users_email_verified", table_name="users")
    op.drop_constraint(op.f("ck_users_email_verified"), "users", type_="check")
    op.drop_column("users", "email_verified_at")
    op.drop_column("users", "email")
