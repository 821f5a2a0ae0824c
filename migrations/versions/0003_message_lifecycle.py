"""message lifecycle: edits, deletions for everyone, reactions, full-text search

Changes are entries of the conversation's ordered stream (message_changes, sharing the seq
counter with messages); message_reactions holds the reactions in force; messages.body becomes
nullable (a deleted message's text is erased) and gets a GIN full-text index. On a large
messages table the index build holds a write lock for its duration: migrate in a quiet window.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 08:37:53
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "message_changes",
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("target_seq", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("client_change_id", sa.String(length=64), nullable=True),
        sa.Column("emoji", sa.String(length=32), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(emoji IS NOT NULL) = (kind IN ('react', 'unreact'))",
            name=op.f("ck_message_changes_emoji"),
        ),
        sa.CheckConstraint(
            "kind IN ('edit', 'delete', 'react', 'unreact')", name=op.f("ck_message_changes_kind")
        ),
        sa.CheckConstraint("seq > 0", name=op.f("ck_message_changes_seq_positive")),
        sa.ForeignKeyConstraint(
            ["conversation_id", "target_seq"],
            ["messages.conversation_id", "messages.seq"],
            name="fk_message_changes_target_messages",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_message_changes_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_message_changes_user_id_users")
        ),
        sa.PrimaryKeyConstraint("conversation_id", "seq", name=op.f("pk_message_changes")),
        sa.UniqueConstraint(
            "conversation_id",
            "user_id",
            "client_change_id",
            name=op.f("uq_message_changes_conversation_id_user_id_client_change_id"),
        ),
    )
    op.create_index(
        "ix_message_changes_conversation_id_target_seq",
        "message_changes",
        ["conversation_id", "target_seq"],
        unique=False,
    )
    op.create_table(
        "message_reactions",
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.Column("target_seq", sa.BigInteger(), nullable=False),
        sa.Column("emoji", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id", "target_seq"],
            ["messages.conversation_id", "messages.seq"],
            name="fk_message_reactions_target_messages",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_message_reactions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "conversation_id", "target_seq", "emoji", "user_id", name=op.f("pk_message_reactions")
        ),
    )
    op.alter_column("messages", "body", existing_type=sa.TEXT(), nullable=True)
    # btree_gin lets conversation_id share the GIN index with the words (a trusted extension:
    # the database owner may create it; PostgreSQL ships it in contrib).
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    op.create_index(
        "ix_messages_conversation_id_body_tsv",
        "messages",
        ["conversation_id", sa.literal_column("to_tsvector('simple'::regconfig, body)")],
        unique=False,
        postgresql_using="gin",
    )


def downgrade() -> None:
    # btree_gin stays: other objects may use it by now.
    op.drop_index(
        "ix_messages_conversation_id_body_tsv", table_name="messages", postgresql_using="gin"
    )
    # Tombstones get an empty body back: 0001's schema has no place for an erased text.
    op.execute("UPDATE messages SET body = '' WHERE body IS NULL")
    op.alter_column("messages", "body", existing_type=sa.TEXT(), nullable=False)
    op.drop_table("message_reactions")
    op.drop_index("ix_message_changes_conversation_id_target_seq", table_name="message_changes")
    op.drop_table("message_changes")
