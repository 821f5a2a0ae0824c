"""a version on conversations, for delta events

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 12:45:00.000000

A rename or a membership change used to send every online member the whole conversation, its
member list included (85 KB per member per rename at 1,000 members). Members now get what
changed plus this version; a client that sees a gap refetches the conversation.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "conversations",
        sa.Column("version", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("conversations", "version")
