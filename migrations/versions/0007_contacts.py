"""contacts, contact requests, blocks, group invitations and consent settings

contacts holds each accepted contact in both directions; contact_requests the pending and
declined requests; blocks who blocked whom; group_invitations the invitations of users whose
group_policy asks for one. users gets direct_policy and group_policy ('anyone' by default, so
nothing changes for existing accounts), conversations a blocked flag for direct conversations.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 12:32:58.855727
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blocks",
        sa.Column("blocker_id", sa.BigInteger(), nullable=False),
        sa.Column("blocked_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("blocker_id <> blocked_id", name=op.f("ck_blocks_not_self")),
        sa.ForeignKeyConstraint(
            ["blocked_id"],
            ["users.id"],
            name=op.f("fk_blocks_blocked_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["blocker_id"],
            ["users.id"],
            name=op.f("fk_blocks_blocker_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("blocker_id", "blocked_id", name=op.f("pk_blocks")),
    )
    op.create_index("ix_blocks_blocked_id", "blocks", ["blocked_id"], unique=False)
    op.create_table(
        "contact_requests",
        sa.Column("requester_id", sa.BigInteger(), nullable=False),
        sa.Column("recipient_id", sa.BigInteger(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("declined_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "requester_id <> recipient_id", name=op.f("ck_contact_requests_not_self")
        ),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["users.id"],
            name=op.f("fk_contact_requests_recipient_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["requester_id"],
            ["users.id"],
            name=op.f("fk_contact_requests_requester_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("requester_id", "recipient_id", name=op.f("pk_contact_requests")),
    )
    op.create_index(
        "ix_contact_requests_recipient_id_created_at",
        "contact_requests",
        ["recipient_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "contacts",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["users.id"],
            name=op.f("fk_contacts_contact_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_contacts_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "contact_id", name=op.f("pk_contacts")),
    )
    op.create_index("ix_contacts_contact_id", "contacts", ["contact_id"], unique=False)
    op.create_table(
        "group_invitations",
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("inviter_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_group_invitations_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["inviter_id"],
            ["users.id"],
            name=op.f("fk_group_invitations_inviter_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_group_invitations_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("conversation_id", "user_id", name=op.f("pk_group_invitations")),
    )
    op.create_index(
        "ix_group_invitations_inviter_id", "group_invitations", ["inviter_id"], unique=False
    )
    op.create_index(
        "ix_group_invitations_user_id_created_at",
        "group_invitations",
        ["user_id", "created_at"],
        unique=False,
    )
    op.add_column(
        "conversations",
        sa.Column("blocked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column(
        "users",
        sa.Column("direct_policy", sa.String(length=8), server_default="anyone", nullable=False),
    )
    op.add_column(
        "users",
        sa.Column("group_policy", sa.String(length=8), server_default="anyone", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_users_direct_policy"), "users", "direct_policy IN ('anyone', 'contacts')"
    )
    op.create_check_constraint(
        op.f("ck_users_group_policy"), "users", "group_policy IN ('anyone', 'contacts')"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_users_group_policy"), "users", type_="check")
    op.drop_constraint(op.f("ck_users_direct_policy"), "users", type_="check")
    op.drop_column("users", "group_policy")
    op.drop_column("users", "direct_policy")
    op.drop_column("conversations", "blocked")
    op.drop_index("ix_group_invitations_user_id_created_at", table_name="group_invitations")
    op.drop_index("ix_group_invitations_inviter_id", table_name="group_invitations")
    op.drop_table("group_invitations")
    op.drop_index("ix_contacts_contact_id", table_name="contacts")
    op.drop_table("contacts")
    op.drop_index("ix_contact_requests_recipient_id_created_at", table_name="contact_requests")
    op.drop_table("contact_requests")
    op.drop_index("ix_blocks_blocked_id", table_name="blocks")
    op.drop_table("blocks")
