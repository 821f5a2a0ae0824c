"""Business events that fan out to sockets: the one place views and commands announce changes.

Views and socket commands call these after a change is committed. Changes that every node must
act on (membership, disabled accounts) travel as hub *control* operations, carried out on each
node, the publishing one included, by ``gateway.control.apply_control``.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from trustmess.delivery.broker import Subscriber
from trustmess.delivery.hub import Hub
from trustmess.delivery.presence import Presence, Sight
from trustmess.delivery.readbuffer import ReadMarkerBuffer
from trustmess.store.contacts import Forgotten
from trustmess.store.conversations import get_conversation_for_members, member_ids
from trustmess.store.users import User
from trustmess.wire import events


class Notifier:
    """Announces committed changes to the sockets that must hear of them, on every node."""

    def __init__(
        self, hub: Hub, pool: asyncpg.Pool, markers: ReadMarkerBuffer, presence: Presence
    ) -> None:
        self._hub = hub
        self._pool = pool
        self._markers = markers
        self._presence = presence

    async def conversation_created(self, conversation_id: int) -> None:
        """A conversation was created: every member's devices get the whole conversation."""
        self._hub.publish_control(
            {"op": "conversation_changed", "conversation_id": conversation_id}
        )
        async with self._pool.acquire() as conn:
            members = await member_ids(conn, conversation_id)
            views = await get_conversation_for_members(
                conn, conversation_id, self._audience(members)
            )
        # They may see each other's presence now: their audiences, and only theirs, change.
        self._presence.people_changed(members)
        for user_id, conversation in views:
            self._hub.publish_user(user_id, events.conversation(conversation))

    async def title_changed(self, conversation_id: int, version: int, title: str | None) -> None:
        """A group was renamed: one small event, the same for every member."""
        async with self._pool.acquire() as conn:
            user_ids = self._audience(await member_ids(conn, conversation_id))
        self._publish_users(user_ids, events.title_changed(conversation_id, version, title))

    async def members_added(self, conversation_id: int, version: int, added: list[int]) -> None:
        """Users joined a group: they get the whole conversation (each with its own read
        marker), the other members only who joined."""
        self._hub.publish_control(
            {"op": "conversation_changed", "conversation_id": conversation_id}
        )
        new = set(added)
        async with self._pool.acquire() as conn:
            user_ids = await member_ids(conn, conversation_id)
            # Read even for offline newcomers: the view carries the member entries to announce.
            views = await get_conversation_for_members(conn, conversation_id, added)
        self._presence.people_changed(sorted({*user_ids, *added}))
        if not views:
            return  # they left again before this ran; the removal announces itself
        members = [member for member in views[0][1].members if member.id in new]
        for user_id, conversation in views:
            if not self._hub.single_node or self._hub.has_user(user_id):
                self._hub.publish_user(user_id, events.conversation(conversation))
        others = self._audience([user_id for user_id in user_ids if user_id not in new])
        self._publish_users(others, events.members_added(conversation_id, version, members))

    def conversation_blocked_changed(self, conversation_id: int) -> None:
        """A direct conversation was blocked or unblocked: every node's membership cache, which
        holds the flag for typing, forgets it (sends read the flag in SQL)."""
        self._hub.publish_control(
            {"op": "conversation_changed", "conversation_id": conversation_id}
        )

    async def members_removed(
        self, conversation_id: int, version: int, removed: list[int], owner_id: int | None
    ) -> None:
        """Members left or were removed: their devices get ``removed`` and stop hearing the
        conversation at once; the remaining members get who left (and the owner now)."""
        for user_id in removed:
            self._hub.publish_control(
                {"op": "member_removed", "conversation_id": conversation_id, "user_id": user_id}
            )
            self._hub.publish_user(user_id, events.removed(conversation_id))
        async with self._pool.acquire() as conn:
            members = await member_ids(conn, conversation_id)
        self._presence.people_changed(sorted({*members, *removed}))
        payload = events.members_removed(conversation_id, version, removed, owner_id)
        self._publish_users(self._audience(members), payload)

    def _audience(self, user_ids: list[int]) -> list[int]:
        # With one process we know who is online; across nodes every member is told.
        if self._hub.single_node:
            return [user_id for user_id in user_ids if self._hub.has_user(user_id)]
        return user_ids

    def _publish_users(self, user_ids: list[int], payload: bytes) -> None:
        for user_id in user_ids:
            self._hub.publish_user(user_id, payload)

    def to_user(self, user_id: int, payload: bytes) -> None:
        """An event about the user's own people (``contact``, ``invitation``) for every socket
        of the user, on every node."""
        self._hub.publish_user(user_id, payload)

    async def relationship_changed(
        self,
        me: User,
        other: User,
        change: str | None = None,
        *,
        sight_before: Sight | None = None,
        **fields: Any,
    ) -> None:
        """The contact or a block between two users changed. With ``change``, both hear it as
        a ``contact`` event, each about the other; and always every node recomputes who may see
        whose presence, which is what a route changing people must not forget. A block, an
        unblock, a contact's start or its end passes ``sight_before`` (``Presence.sight``
        before the change): whoever lost sight of the other gets ``hidden`` at once, whoever
        gained it the current state."""
        if change is not None:
            self.to_user(me.id, events.contact(change, other.public_json(), **fields))
            self.to_user(other.id, events.contact(change, me.public_json(), **fields))
        if sight_before is None:
            self._presence.people_changed([me.id, other.id])
        else:
            await self._presence.sight_changed(me.id, other.id, sight_before)

    def account_deleted(self, user: User, people: Forgotten, watchers: list[int]) -> None:
        """An account was deleted (``user``: its profile before): each of its people hears the
        end of what they had with it, as a removal, a withdrawal or a block tells it; whoever
        could see its presence gets ``hidden``."""
        profile = user.public_json()
        for contact_id in people.contacts:
            self.to_user(contact_id, events.contact("removed", profile))
        for recipient_id in people.requested:
            self.to_user(recipient_id, events.contact("cancelled", profile, direction="incoming"))
        for requester_id in people.requesters:
            self.to_user(requester_id, events.contact("cancelled", profile, direction="outgoing"))
        for invitee_id, conversation_id in people.invitations:
            self.to_user(invitee_id, events.invitation("withdrawn", conversation_id))
        self._presence.account_deleted(user.id, watchers)

    def user_disabled(self, user_id: int) -> None:
        """An administrator disabled the account: its open sockets end now (4001: do not retry)."""
        self._hub.publish_control({"op": "user_disabled", "user_id": user_id})

    def sessions_ended(
        self,
        user_id: int,
        session_ids: list[str],
        *,
        everything: bool,
        keep: str | None,
        reason: str,
    ) -> None:
        """Sessions of ``user_id`` ended: every node refuses their access tokens from now on and
        closes their sockets with 4001 (``everything``: every socket of the user but those of
        session ``keep``). ``reason`` is the close frame's reason."""
        self._hub.publish_control(
            {
                "op": "sessions_ended",
                "user_id": user_id,
                "session_ids": session_ids,
                "all": everything,
                "keep": keep,
                "reason": reason,
            }
        )

    def read_moved(self, conversation_id: int, user_id: int, seq: int) -> None:
        """``user_id``'s read marker moved forward to ``seq`` (over HTTP: every device hears it)."""
        self._markers.note_read(conversation_id, user_id, seq)
        self.read(conversation_id, user_id, seq)

    def read(
        self, conversation_id: int, user_id: int, seq: int, skip: Subscriber | None = None
    ) -> None:
        """Publish the ``read`` event (``skip``: the socket whose ack moved it)."""
        self._hub.publish(conversation_id, events.read(conversation_id, user_id, seq), skip=skip)
