"""sessions (devices) and deleted accounts

A session is a login: the refresh-token family it started (``sessions.id`` is the family id),
with when it was created and last used, the client and the address. Ended sessions keep their
row (without client or address) until no access token issued for them can still be valid, so a
restarted node rebuilds its revocation set from this table. Live refresh-token families get a
session row here, so devices signed in before the upgrade keep working and appear in the list.

A deleted account keeps its users row as a tombstone (``deleted_at`` set, no password hash,
no display name): user ids in message history still resolve and the username stays taken.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 12:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "last_used_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("user_agent", sa.String(length=256), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    op.create_index(op.f("ix_sessions_user_id"), "sessions", ["user_id"], unique=False)
    op.create_index(
        "ix_sessions_ended_at",
        "sessions",
        ["ended_at"],
        unique=False,
        postgresql_where=sa.text("ended_at IS NOT NULL"),
    )
    op.add_column("users", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.alter_column("users", "password_hash", existing_type=sa.Text(), nullable=True)
    op.alter_column("users", "display_name", existing_type=sa.String(length=64), nullable=True)
    op.create_check_constraint(
        op.f("ck_users_live_has_credentials"),
        "users",
        "deleted_at IS NOT NULL OR (password_hash IS NOT NULL AND display_name IS NOT NULL)",
    )
    # Every family that can still refresh becomes a session: created with its first token, last
    # used with its newest, with the newest one's client.
    op.execute(
        "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, user_agent) "
        "SELECT family_id, min(user_id), min(created_at), max(created_at), max(expires_at), "
        "       (array_agg(user_agent ORDER BY created_at DESC))[1] "
        "FROM refresh_tokens WHERE family_id IN ("
        "    SELECT family_id FROM refresh_tokens "
        "    WHERE used_at IS NULL AND revoked_at IS NULL AND expires_at > now()"
        ") GROUP BY family_id"
    )


def downgrade() -> None:
    # A tombstone has no password hash or display name to go back under NOT NULL: refuse rather
    # than invent credentials for a deleted account.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM users WHERE deleted_at IS NOT NULL) THEN "
        "RAISE EXCEPTION 'deleted accounts exist: cannot downgrade below 0005'; END IF; END $$"
    )
    op.drop_constraint(op.f("ck_users_live_has_credentials"), "users", type_="check")
    op.alter_column("users", "display_name", existing_type=sa.String(length=64), nullable=False)
    op.alter_column("users", "password_hash", existing_type=sa.Text(), nullable=False)
    op.drop_column("users", "deleted_at")
    op.drop_index(
        "ix_sessions_ended_at",
        table_name="sessions",
        postgresql_where=sa.text("ended_at IS NOT NULL"),
    )
    op.drop_index(op.f("ix_sessions_user_id"), table_name="sessions")
    op.drop_table("sessions")
