"""Group invitations: what a group add becomes for a user whose ``group_policy`` is
``contacts`` when the adder is not a contact. The user is not a member (no events, no history)
until they accept; only the invited user sees the invitation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from trustmess.models import format_ts
from trustmess.store.contacts import OTHER_USER_COLUMNS, other_user
from trustmess.store.users import Conn, Db, User


@dataclass(frozen=True, slots=True)
class Invitation:
    """An invitation as its invitee sees it."""

    conversation_id: int
    title: str | None
    inviter: User
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "title": self.title,
            "inviter": self.inviter.public_json(),
            "created_at": format_ts(self.created_at),
        }


_SELECT = f"""
SELECT i.conversation_id, c.title, i.created_at, {OTHER_USER_COLUMNS}
FROM group_invitations i
JOIN conversations c ON c.id = i.conversation_id
JOIN users o ON o.id = i.inviter_id
"""  # noqa: S608


async def invite(
    conn: Conn, conversation_id: int, inviter_id: int, user_ids: list[int], pending_max: int
) -> list[int]:
    """Invite users who are neither members nor invited yet, each while they hold fewer than
    ``pending_max`` pending invitations; returns those invited."""
    if not user_ids:
        return []
    rows = await conn.fetch(
        "INSERT INTO group_invitations (conversation_id, user_id, inviter_id) "
        "SELECT $1, u.id, $2 FROM unnest($3::bigint[]) AS u(id) "
        "WHERE NOT EXISTS (SELECT 1 FROM conversation_members m "
        "                  WHERE m.conversation_id = $1 AND m.user_id = u.id) "
        "  AND (SELECT count(*) FROM group_invitations g WHERE g.user_id = u.id) < $4 "
        "ON CONFLICT (conversation_id, user_id) DO NOTHING RETURNING user_id",
        conversation_id,
        inviter_id,
        user_ids,
        pending_max,
    )
    return sorted(row["user_id"] for row in rows)


async def invitation_for(db: Db, conversation_id: int, user_id: int) -> Invitation | None:
    row = await db.fetchrow(
        _SELECT + "WHERE i.conversation_id = $1 AND i.user_id = $2", conversation_id, user_id
    )
    return None if row is None else _invitation(row)


async def invitations_page(
    db: Db, user_id: int, limit: int, after: tuple[datetime, int] | None
) -> list[Invitation]:
    """The user's pending invitations, newest first, continuing after (created_at, id)."""
    at, after_id = after if after is not None else (None, None)
    rows = await db.fetch(
        _SELECT + "WHERE i.user_id = $1 AND ($2::timestamptz IS NULL "
        "  OR (i.created_at, i.conversation_id) < ($2::timestamptz, $3::bigint)) "
        "ORDER BY i.created_at DESC, i.conversation_id DESC LIMIT $4",
        user_id,
        at,
        after_id,
        limit,
    )
    return [_invitation(row) for row in rows]


async def take_invitation(conn: Conn, conversation_id: int, user_id: int) -> bool:
    """Remove the invitation (accepted or declined); False when there is none."""
    status: str = await conn.execute(
        "DELETE FROM group_invitations WHERE conversation_id = $1 AND user_id = $2",
        conversation_id,
        user_id,
    )
    return status == "DELETE 1"


async def drop_invitations(conn: Conn, conversation_id: int, user_ids: list[int]) -> None:
    """Forget the invitations of users who became members another way (a contact added them)."""
    if user_ids:
        await conn.execute(
            "DELETE FROM group_invitations WHERE conversation_id = $1 AND user_id = ANY($2)",
            conversation_id,
            user_ids,
        )


def _invitation(row: Any) -> Invitation:
    return Invitation(row["conversation_id"], row["title"], other_user(row), row["created_at"])
