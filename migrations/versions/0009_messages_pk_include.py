"""messages: the primary key carries sender_id and deleted_at (a covering index)

A conversation's unread count (store/conversations.py) counts the messages after the reader's
marker that others sent and that are not deleted. With only (conversation_id, seq) in the key
that count reads every such message's row: 280-680 ms for a never-read conversation of 31,000
messages among 10,000,000 (bench/RESULTS.md, "Read paths at scale"). With sender_id and
deleted_at in the index it is an index-only scan (5 ms). No index is added: a message's insert
still writes the same four index entries, the key's wider (301 -> 473 MB at 10,000,000 messages;
about 3 us, 9%, more database time per inserted message); a deletion already rewrote its key
entry (the body's full-text entry changes, so the update was never HOT).

The key is rebuilt, and the two foreign keys that point at it with it: on a large messages table
the table is locked for the build (7-15 s for 10,000,000 messages on a 2-core machine):
migrate in a quiet window.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 16:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TARGETS = ("message_changes", "message_reactions")


def _rebuild_key(include: str) -> None:
    for table in _TARGETS:
        op.drop_constraint(f"fk_{table}_target_messages", table, type_="foreignkey")
    op.drop_constraint("pk_messages", "messages", type_="primary")
    op.execute(
        f"ALTER TABLE messages ADD CONSTRAINT pk_messages PRIMARY KEY (conversation_id, seq)"
        f"{include}"
    )
    for table in _TARGETS:
        op.create_foreign_key(
            f"fk_{table}_target_messages",
            table,
            "messages",
            ["conversation_id", "target_seq"],
            ["conversation_id", "seq"],
            ondelete="CASCADE",
        )


def upgrade() -> None:
    _rebuild_key(" INCLUDE (sender_id, deleted_at)")


def downgrade() -> None:
    _rebuild_key("")
