"""Presence: who may see whose presence, the ``presence_visibility`` setting and ``last_seen``.

The people of a user are the users they share a conversation with and their contacts (both
directions of a contact are stored). Between two of them the rule is the *watched* user's
setting: ``everyone`` shows presence to all of their people, ``contacts`` to their contacts
only, ``nobody`` to no one. Nobody else (strangers) ever sees it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from trustmess.store.users import Db

VISIBILITIES = ("everyone", "contacts", "nobody")
DEFAULT_VISIBILITY = "everyone"


def shown_to(visibility: str, is_contact: bool) -> bool:
    """Does a user with this ``presence_visibility`` show it to one of their people?"""
    return visibility == "everyone" or (visibility == "contacts" and is_contact)


@dataclass(frozen=True, slots=True)
class Relation:
    """``other`` is one of ``owner``'s people (a co-member or a contact)."""

    owner: int
    owner_visibility: str
    other: int
    other_visibility: str
    other_last_seen: datetime | None
    is_contact: bool

    @property
    def other_sees_owner(self) -> bool:
        return shown_to(self.owner_visibility, self.is_contact)

    @property
    def owner_sees_other(self) -> bool:
        return shown_to(self.other_visibility, self.is_contact)


# One statement for any number of owners: a user with 1,000 people costs one query, not 1,000.
# The two sources are merged per (owner, other), a contact flag surviving the merge.
_RELATIONS = """
WITH owners AS (SELECT DISTINCT unnest($1::bigint[]) AS id),
people AS (
    SELECT o.id AS owner, theirs.user_id AS other, false AS is_contact
    FROM owners o
    JOIN conversation_members mine ON mine.user_id = o.id
    JOIN conversation_members theirs
      ON theirs.conversation_id = mine.conversation_id AND theirs.user_id <> o.id
    UNION ALL
    SELECT o.id, c.contact_id, true FROM owners o JOIN contacts c ON c.user_id = o.id
)
SELECT p.owner, owner_user.presence_visibility AS owner_visibility, p.other,
       other_user.presence_visibility AS other_visibility, other_user.last_seen,
       bool_or(p.is_contact) AS is_contact
FROM people p
JOIN users owner_user ON owner_user.id = p.owner
JOIN users other_user ON other_user.id = p.other AND other_user.is_active
-- A block either way hides presence both ways (a shared group does not reveal it).
WHERE NOT EXISTS (
    SELECT 1 FROM blocks b
    WHERE (b.blocker_id = p.owner AND b.blocked_id = p.other)
       OR (b.blocker_id = p.other AND b.blocked_id = p.owner)
)
GROUP BY p.owner, owner_user.presence_visibility, p.other, other_user.presence_visibility,
         other_user.last_seen
"""


async def relations(db: Db, owners: Iterable[int]) -> list[Relation]:
    """Every (owner, other) pair of people, for all ``owners`` at once."""
    rows = await db.fetch(_RELATIONS, list(owners))
    return [
        Relation(
            owner=row["owner"],
            owner_visibility=row["owner_visibility"],
            other=row["other"],
            other_visibility=row["other_visibility"],
            other_last_seen=row["last_seen"],
            is_contact=row["is_contact"],
        )
        for row in rows
    ]


async def watchers_of(db: Db, user_id: int) -> list[int]:
    """Who may see the user's presence now."""
    return sorted(rel.other for rel in await relations(db, [user_id]) if rel.other_sees_owner)


_VIEW = """
SELECT u.presence_visibility, u.last_seen,
       EXISTS (SELECT 1 FROM contacts WHERE user_id = $2 AND contact_id = $1) AS is_contact,
       EXISTS (
           SELECT 1 FROM conversation_members mine
           JOIN conversation_members theirs USING (conversation_id)
           WHERE mine.user_id = $2 AND theirs.user_id = $1
       ) AS shares_conversation,
       EXISTS (
           SELECT 1 FROM blocks b
           WHERE (b.blocker_id = $1 AND b.blocked_id = $2)
              OR (b.blocker_id = $2 AND b.blocked_id = $1)
       ) AS blocked
FROM users u WHERE u.id = $1
"""


@dataclass(frozen=True, slots=True)
class PresenceView:
    """What a viewer may know of a user's presence: ``visible``, and the stored ``last_seen``."""

    visible: bool
    last_seen: datetime | None


async def view_of(db: Db, user_id: int, viewer_id: int) -> PresenceView:
    """May ``viewer_id`` see ``user_id``'s presence (one's own: always)?"""
    row = await db.fetchrow(_VIEW, user_id, viewer_id)
    if row is None:
        return PresenceView(False, None)
    if user_id == viewer_id:
        return PresenceView(True, row["last_seen"])
    related = (row["is_contact"] or row["shares_conversation"]) and not row["blocked"]
    visible = related and shown_to(row["presence_visibility"], row["is_contact"])
    return PresenceView(visible, row["last_seen"] if visible else None)


async def get_visibility(db: Db, user_id: int) -> str | None:
    """The user's ``presence_visibility`` (None: no such user)."""
    value: str | None = await db.fetchval(
        "SELECT presence_visibility FROM users WHERE id = $1", user_id
    )
    return value


async def set_visibility(db: Db, user_id: int, visibility: str) -> str | None:
    """Set ``presence_visibility``; the previous value (None: no such user)."""
    value: str | None = await db.fetchval(
        "UPDATE users u SET presence_visibility = $2 FROM users old "
        "WHERE u.id = $1 AND old.id = u.id RETURNING old.presence_visibility",
        user_id,
        visibility,
    )
    return value


async def last_seen_of(db: Db, user_id: int) -> datetime | None:
    """When the user's last socket closed (None: never, or no such user)."""
    value: datetime | None = await db.fetchval("SELECT last_seen FROM users WHERE id = $1", user_id)
    return value


async def write_last_seen(db: Db, seen: list[tuple[int, datetime]]) -> None:
    """Store ``last_seen`` for many users in one statement (never moving it backwards)."""
    if not seen:
        return
    await db.execute(
        "UPDATE users u SET last_seen = s.at "
        "FROM unnest($1::bigint[], $2::timestamptz[]) AS s(id, at) "
        # A deleted account keeps no trace of its activity (its sockets close after deletion).
        "WHERE u.id = s.id AND u.deleted_at IS NULL "
        "AND (u.last_seen IS NULL OR u.last_seen < s.at)",
        [user_id for user_id, _ in seen],
        [at for _, at in seen],
    )
