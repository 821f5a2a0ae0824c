"""Contacts and contact requests.

An accepted contact is two rows, (a, b) and (b, a). A request is one row (requester,
recipient) while pending; a declined one stays with ``declined_at`` for the cooldown, and its
requester keeps seeing it as pending (a decline is never told). If that requester cancels it, it
stays with ``cancelled_at`` too, hidden from both, until the cooldown is over. Every change of a
pair runs under a transaction-scoped advisory lock of the pair, so two requests crossing each
other, or an accept racing a cancel, are serialised.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from trustmess.models import format_ts
from trustmess.store.conversations import direct_key
from trustmess.store.users import Conn, Db, User

# The columns other_user() reads, of the other user joined as ``o``. Only this constant is
# put into the SQL text of the lists (hence their noqa: S608); values go as $n parameters.
OTHER_USER_COLUMNS = (
    "o.id AS o_id, o.username AS o_username, o.display_name AS o_display_name, "
    "o.bio AS o_bio, o.created_at AS o_created_at, o.is_active AS o_is_active, "
    "o.is_admin AS o_is_admin"
)


def other_user(row: asyncpg.Record) -> User:
    """The ``o_*`` columns of a row (the other user, joined as ``o``) as a User."""
    return User(
        id=row["o_id"],
        username=row["o_username"],
        display_name=row["o_display_name"],
        bio=row["o_bio"],
        created_at=row["o_created_at"],
        is_active=row["o_is_active"],
        is_admin=row["o_is_admin"],
    )


@dataclass(frozen=True, slots=True)
class Contact:
    """One of the user's contacts, and since when."""

    user: User
    since: datetime

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user.public_json(), "since": format_ts(self.since)}


@dataclass(frozen=True, slots=True)
class ContactRequest:
    """A request as one side sees it: ``direction`` incoming (``user`` sent it) or outgoing
    (sent to ``user``)."""

    user: User
    direction: str
    message: str | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user.public_json(),
            "direction": self.direction,
            "message": self.message,
            "created_at": format_ts(self.created_at),
        }

    def seen_by_other(self, me: User) -> ContactRequest:
        """The same request as the other side sees it (``me`` is this side's user)."""
        direction = "incoming" if self.direction == "outgoing" else "outgoing"
        return ContactRequest(me, direction, self.message, self.created_at)


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """What sending a request did. ``state``:

    * ``sent``: a new request the recipient sees (tell both);
    * ``held``: stored, but the recipient never sees it (a cooldown after a decline, or the
      recipient blocked the requester); to the requester it looks exactly like ``sent``;
    * ``repeated``: the same request was already pending (or looks so to the requester);
    * ``accepted``: the recipient had requested the requester: they are contacts now;
    * ``already_contacts``, ``blocking`` (the requester blocked the recipient): refused.
    """

    state: str
    request: ContactRequest | None = None
    since: datetime | None = None


async def lock_pair(conn: Conn, user_a: int, user_b: int) -> None:
    """Serialise changes of the pair's contact, requests and blocks (inside a transaction)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('people:' || $1::text, 0))",
        direct_key(user_a, user_b),
    )


async def are_contacts(db: Db, user_id: int, other_id: int) -> bool:
    return bool(
        await db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM contacts WHERE user_id = $1 AND contact_id = $2)",
            user_id,
            other_id,
        )
    )


async def _insert_contact(conn: Conn, user_a: int, user_b: int) -> datetime:
    since: datetime = await conn.fetchval(
        "WITH added AS (INSERT INTO contacts (user_id, contact_id) VALUES ($1, $2), ($2, $1) "
        "ON CONFLICT DO NOTHING RETURNING created_at) "
        "SELECT coalesce((SELECT max(created_at) FROM added), now())",
        user_a,
        user_b,
    )
    return since


async def send_request(
    conn: Conn,
    requester: User,
    recipient: User,
    message: str | None,
    cooldown_s: int,
) -> RequestOutcome:
    """``requester`` asks ``recipient`` to become contacts (see :class:`RequestOutcome`)."""
    me, other = requester.id, recipient.id
    async with conn.transaction():
        await lock_pair(conn, me, other)
        state = await conn.fetchrow(
            "SELECT "
            " EXISTS (SELECT 1 FROM contacts WHERE user_id = $1 AND contact_id = $2) AS contacts,"
            " EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2) AS blocking,"
            " EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $2 AND blocked_id = $1) AS blocked,"
            " EXISTS (SELECT 1 FROM contact_requests WHERE requester_id = $2"
            "         AND recipient_id = $1 AND cancelled_at IS NULL) AS crossing",
            me,
            other,
        )
        assert state is not None
        if state["contacts"]:
            return RequestOutcome("already_contacts")
        if state["blocking"]:
            return RequestOutcome("blocking")
        if state["crossing"] and not state["blocked"]:
            # Both want it: the recipient's own request (even one the requester declined
            # earlier) is accepted.
            await conn.execute(
                "DELETE FROM contact_requests WHERE (requester_id = $1 AND recipient_id = $2) "
                "OR (requester_id = $2 AND recipient_id = $1)",
                me,
                other,
            )
            return RequestOutcome("accepted", since=await _insert_contact(conn, me, other))
        existing = await conn.fetchrow(
            "SELECT message, created_at, declined_at, cancelled_at, "
            "  declined_at < now() - make_interval(secs => $3::float8) AS cooled "
            "FROM contact_requests WHERE requester_id = $1 AND recipient_id = $2",
            me,
            other,
            float(cooldown_s),
        )
        if (
            existing is not None
            and existing["cancelled_at"] is None
            and (existing["declined_at"] is None or not existing["cooled"] or state["blocked"])
        ):
            request = ContactRequest(
                recipient, "outgoing", existing["message"], existing["created_at"]
            )
            return RequestOutcome("repeated", request)
        # A new request, or a declined one whose cooldown is over made new again. It reaches
        # the recipient unless they blocked the requester or declined within the cooldown.
        held = state["blocked"] or (
            existing is not None and existing["declined_at"] is not None and not existing["cooled"]
        )
        row = await conn.fetchrow(
            "INSERT INTO contact_requests (requester_id, recipient_id, message, declined_at) "
            "VALUES ($1, $2, $3, CASE WHEN $4 THEN now() END) "
            "ON CONFLICT (requester_id, recipient_id) DO UPDATE SET message = $3, "
            "  created_at = now(), cancelled_at = NULL, "
            "  declined_at = CASE WHEN $4 THEN coalesce(contact_requests.declined_at, now()) END "
            "RETURNING created_at",
            me,
            other,
            message,
            held,
        )
        assert row is not None
    request = ContactRequest(recipient, "outgoing", message, row["created_at"])
    return RequestOutcome("held" if held else "sent", request)


async def accept_request(conn: Conn, recipient_id: int, requester_id: int) -> datetime | None:
    """Accept the pending request of ``requester_id``: they are contacts from now (returned);
    None when there is no such request (or it was declined)."""
    async with conn.transaction():
        await lock_pair(conn, recipient_id, requester_id)
        taken = await conn.fetchval(
            "DELETE FROM contact_requests WHERE requester_id = $1 AND recipient_id = $2 "
            "AND declined_at IS NULL RETURNING 1",
            requester_id,
            recipient_id,
        )
        if taken is None:
            return None
        # A request of the recipient's own to the same user is answered by this too.
        await conn.execute(
            "DELETE FROM contact_requests WHERE requester_id = $1 AND recipient_id = $2",
            recipient_id,
            requester_id,
        )
        return await _insert_contact(conn, recipient_id, requester_id)


async def decline_request(db: Db, recipient_id: int, requester_id: int) -> bool:
    """Decline a pending request; False when there is none."""
    status: str = await db.execute(
        "UPDATE contact_requests SET declined_at = now() "
        "WHERE requester_id = $1 AND recipient_id = $2 AND declined_at IS NULL",
        requester_id,
        recipient_id,
    )
    return status == "UPDATE 1"


async def cancel_request(conn: Conn, requester_id: int, recipient_id: int) -> str | None:
    """Withdraw the requester's request: ``withdrawn`` (it was pending: the recipient saw it),
    ``hidden`` (it had been declined: kept, unseen, for the cooldown), None when there is none."""
    async with conn.transaction():
        await lock_pair(conn, requester_id, recipient_id)
        deleted = await conn.fetchval(
            "DELETE FROM contact_requests WHERE requester_id = $1 AND recipient_id = $2 "
            "AND declined_at IS NULL RETURNING 1",
            requester_id,
            recipient_id,
        )
        if deleted is not None:
            return "withdrawn"
        status: str = await conn.execute(
            "UPDATE contact_requests SET cancelled_at = now() WHERE requester_id = $1 "
            "AND recipient_id = $2 AND cancelled_at IS NULL",
            requester_id,
            recipient_id,
        )
    return "hidden" if status == "UPDATE 1" else None


async def remove_contact(conn: Conn, user_id: int, other_id: int) -> bool:
    """End a contact (both rows); False when they were not contacts."""
    status: str = await conn.execute(
        "DELETE FROM contacts WHERE (user_id = $1 AND contact_id = $2) "
        "OR (user_id = $2 AND contact_id = $1)",
        user_id,
        other_id,
    )
    return status != "DELETE 0"


_CONTACTS_PAGE = f"""
SELECT c.created_at, {OTHER_USER_COLUMNS}
FROM contacts c JOIN users o ON o.id = c.contact_id
WHERE c.user_id = $1
  AND ($2::timestamptz IS NULL OR (c.created_at, c.contact_id) < ($2::timestamptz, $3::bigint))
ORDER BY c.created_at DESC, c.contact_id DESC LIMIT $4
"""  # noqa: S608

# Incoming: pending only (a declined request leaves the recipient's list).
_INCOMING_PAGE = f"""
SELECT r.message, r.created_at, {OTHER_USER_COLUMNS}
FROM contact_requests r JOIN users o ON o.id = r.requester_id
WHERE r.recipient_id = $1 AND r.declined_at IS NULL
  AND ($2::timestamptz IS NULL OR (r.created_at, r.requester_id) < ($2::timestamptz, $3::bigint))
ORDER BY r.created_at DESC, r.requester_id DESC LIMIT $4
"""  # noqa: S608

# Outgoing: declined ones too (they look pending), not those withdrawn after a decline.
_OUTGOING_PAGE = f"""
SELECT r.message, r.created_at, {OTHER_USER_COLUMNS}
FROM contact_requests r JOIN users o ON o.id = r.recipient_id
WHERE r.requester_id = $1 AND r.cancelled_at IS NULL
  AND ($2::timestamptz IS NULL OR (r.created_at, r.recipient_id) < ($2::timestamptz, $3::bigint))
ORDER BY r.created_at DESC, r.recipient_id DESC LIMIT $4
"""  # noqa: S608


async def contacts_page(
    db: Db, user_id: int, limit: int, after: tuple[datetime, int] | None
) -> list[Contact]:
    """The user's contacts, newest first, continuing after (since, contact id)."""
    at, after_id = after if after is not None else (None, None)
    rows = await db.fetch(_CONTACTS_PAGE, user_id, at, after_id, limit)
    return [Contact(other_user(row), row["created_at"]) for row in rows]


async def requests_page(
    db: Db, user_id: int, direction: str, limit: int, after: tuple[datetime, int] | None
) -> list[ContactRequest]:
    """The user's incoming (pending, not declined) or outgoing (not cancelled; declined ones
    look pending) requests, newest first, continuing after (created_at, other user id)."""
    at, after_id = after if after is not None else (None, None)
    query = _INCOMING_PAGE if direction == "incoming" else _OUTGOING_PAGE
    rows = await db.fetch(query, user_id, at, after_id, limit)
    return [
        ContactRequest(other_user(row), direction, row["message"], row["created_at"])
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class Forgotten:
    """Who saw a deleted account among their people, to be told it is gone."""

    contacts: list[int]
    # Saw its request to them (incoming; not those declined: those left their list).
    requested: list[int]
    # Had asked it (outgoing; declined ones too: they looked pending).
    requesters: list[int]
    # Held its invitation to a group: (invitee, conversation_id).
    invitations: list[tuple[int, int]]


async def forget_user(conn: Conn, user_id: int) -> Forgotten:
    """Everything of the people graph that names the user, both ways: contacts, requests
    (with their messages), blocks and group invitations, sent or received; and who saw those
    in their lists. The account is being deleted (its users row stays as a tombstone, so
    nothing cascades); call inside its transaction."""
    contacts = await conn.fetch(
        "DELETE FROM contacts WHERE user_id = $1 OR contact_id = $1 RETURNING user_id", user_id
    )
    requests = await conn.fetch(
        "DELETE FROM contact_requests WHERE requester_id = $1 OR recipient_id = $1 "
        "RETURNING requester_id, recipient_id, declined_at IS NULL AS pending, "
        "cancelled_at IS NULL AS listed",
        user_id,
    )
    await conn.execute("DELETE FROM blocks WHERE blocker_id = $1 OR blocked_id = $1", user_id)
    invitations = await conn.fetch(
        "DELETE FROM group_invitations WHERE user_id = $1 OR inviter_id = $1 "
        "RETURNING user_id, conversation_id",
        user_id,
    )
    return Forgotten(
        contacts=sorted(row["user_id"] for row in contacts if row["user_id"] != user_id),
        requested=sorted(
            row["recipient_id"]
            for row in requests
            if row["requester_id"] == user_id and row["pending"]
        ),
        requesters=sorted(
            row["requester_id"]
            for row in requests
            if row["recipient_id"] == user_id and row["listed"]
        ),
        invitations=sorted(
            (row["user_id"], row["conversation_id"])
            for row in invitations
            if row["user_id"] != user_id
        ),
    )
