"""presence: who sees my presence, and when I was last seen

users.presence_visibility is the profile setting (``everyone``: the users I share a
conversation with, and my contacts; ``contacts``; ``nobody``); users.last_seen is when the
last socket of the user closed, written once per offline transition (delivery/presence.py),
never per message.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column(
            "presence_visibility",
            sa.String(length=8),
            server_default="everyone",
            nullable=False,
        ),
    )
    op.add_column("users", sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(
        op.f("ck_users_presence_visibility"),
        "users",
        "presence_visibility IN ('everyone', 'contacts', 'nobody')",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_users_presence_visibility"), "users", type_="check")
    op.drop_column("users", "last_seen")
    op.drop_column("users", "presence_visibility")
