"""Business events that fan out to sockets: the one place views and commands announce changes.

Views and socket commands call these after a change is committed. Changes that every node must
act on (membership, disabled accounts) travel as hub *control* operations, carried out on each
node, the publishing one included, by ``gateway.control.apply_control``.
"""

from __future__ import annotations

import asyncpg

from trustmess.delivery.broker import Subscriber
from trustmess.delivery.hub import Hub
from trustmess.delivery.readbuffer import ReadMarkerBuffer
from trustmess.store.conversations import get_conversation_for_members, member_ids
from trustmess.wire import events


class Notifier:
    """Announces committed changes to the sockets that must hear of them, on every node."""

    def __init__(self, hub: Hub, pool: asyncpg.Pool, markers: ReadMarkerBuffer) -> None:
        self._hub = hub
        self._pool = pool
        self._markers = markers

    async def conversation_changed(self, conversation_id: int) -> None:
        """Title or members changed, or the conversation was created: tell every member's
        connections (each member sees its own read_seq and unread count)."""
        hub = self._hub
        hub.publish_control({"op": "conversation_changed", "conversation_id": conversation_id})
        async with self._pool.acquire() as conn:
            user_ids = await member_ids(conn, conversation_id)
            if hub.single_node:
                # With one process we know who is online; across nodes every member is told.
                user_ids = [u for u in user_ids if hub.has_user(u)]
            views = await get_conversation_for_members(conn, conversation_id, user_ids)
        for user_id, conversation in views:
            hub.publish_user(user_id, events.conversation(conversation))

    def conversation_blocked_changed(self, conversation_id: int) -> None:
        """A direct conversation was blocked or unblocked: every node's membership cache, which
        holds the flag for typing, forgets it (sends read the flag in SQL)."""
        self._hub.publish_control(
            {"op": "conversation_changed", "conversation_id": conversation_id}
        )

    def member_removed(self, conversation_id: int, user_id: int) -> None:
        """``user_id`` left or was removed: stop its live events at once and tell its devices."""
        self._hub.publish_control(
            {"op": "member_removed", "conversation_id": conversation_id, "user_id": user_id}
        )
        self._hub.publish_user(user_id, events.removed(conversation_id))

    def to_user(self, user_id: int, payload: bytes) -> None:
        """An event about the user's own people (``contact``, ``invitation``) for every socket
        of the user, on every node."""
        self._hub.publish_user(user_id, payload)

    def user_disabled(self, user_id: int) -> None:
        """An administrator disabled the account: its open sockets end now (4001: do not retry)."""
        self._hub.publish_control({"op": "user_disabled", "user_id": user_id})

    def read_moved(self, conversation_id: int, user_id: int, seq: int) -> None:
        """``user_id``'s read marker moved forward to ``seq`` (over HTTP: every device hears it)."""
        self._markers.note_read(conversation_id, user_id, seq)
        self.read(conversation_id, user_id, seq)

    def read(
        self, conversation_id: int, user_id: int, seq: int, skip: Subscriber | None = None
    ) -> None:
        """Publish the ``read`` event (``skip``: the socket whose ack moved it)."""
        self._hub.publish(conversation_id, events.read(conversation_id, user_id, seq), skip=skip)
