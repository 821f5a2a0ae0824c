"""indexes for the directory's prefix search

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 09:00:00.000000

``GET /users?q=`` matched ``username ILIKE 'q%' OR display_name ILIKE 'q%'`` with no index:
every search read the whole users table. These btree indexes (code-point order, so a prefix
is a range whatever the database's collation; active users only) turn it into two range scans.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_users_username_prefix",
        "users",
        ["username"],
        unique=False,
        postgresql_ops={"username": "text_pattern_ops"},
        postgresql_where=sa.text("is_active"),
    )
    op.create_index(
        "ix_users_display_name_prefix",
        "users",
        [sa.text("lower(display_name) text_pattern_ops")],
        unique=False,
        postgresql_where=sa.text("is_active"),
    )


def downgrade() -> None:
    op.drop_index("ix_users_display_name_prefix", table_name="users")
    op.drop_index("ix_users_username_prefix", table_name="users")
