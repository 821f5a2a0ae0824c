"""The registry of this process's live connections: per-user limits, membership drops, shutdown."""

from __future__ import annotations

import asyncio
import logging

from trustmess.delivery.hub import Hub
from trustmess.delivery.membership import MembershipCache
from trustmess.delivery.presence import Presence
from trustmess.errors import CloseCode
from trustmess.gateway.connection import Connection, WriteBatcher
from trustmess.gateway.expiry import TokenExpiry
from trustmess.gateway.heartbeat import Heartbeat
from trustmess.gateway.typing import TypingTracker
from trustmess.settings import Settings
from trustmess.store.batching import BatchedLookup
from trustmess.store.joins import JoinRead, JoinRequest

log = logging.getLogger(__name__)

OPENINGS_AT_ONCE = 32


class Gateway:
    """Registry of this process's connections."""

    def __init__(
        self,
        settings: Settings,
        hub: Hub,
        membership: MembershipCache,
        joins: BatchedLookup[JoinRequest, JoinRead | None],
        presence: Presence | None = None,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.membership = membership
        self.joins = joins  # what each join reads, shared by the joins that arrive together
        self.presence = presence
        self.typing = TypingTracker(hub, settings.typing_throttle_s, settings.typing_timeout_s)
        self._by_user: dict[int, list[Connection]] = {}
        self.connections: set[Connection] = set()
        self.batcher = WriteBatcher()
        self.heartbeat = Heartbeat(self.connections, settings.ws_heartbeat_s)
        self.expiry = TokenExpiry()
        self.accepting = True
        # At most this many sockets being authenticated and upgraded at once: when a node takes
        # over another's 2,000 sockets, the connected ones' traffic waits behind a bounded
        # share of that work in each loop iteration, not behind all of it (p99 300-600 ms
        # without, bench/RESULTS.md "Reconnect storm"). Not held while a client is awaited.
        self.openings = asyncio.Semaphore(OPENINGS_AT_ONCE)

    def register(self, conn: Connection) -> None:
        """Add a connection; beyond the per-user limit the user's oldest is closed with 4006."""
        conns = self._by_user.setdefault(conn.user_id, [])
        self.hub.claim_user_slot(conn.user_id, conn.session_id, self.settings.ws_max_per_user)
        while self.hub.single_node and len(conns) >= self.settings.ws_max_per_user:
            oldest = conns.pop(0)
            oldest.close_soon(CloseCode.REPLACED, "replaced by a newer connection")
            self._detach(oldest)
        conns.append(conn)
        self.connections.add(conn)
        self.hub.register_user(conn)
        if self.presence is not None:
            self.presence.connected(conn)

    def unregister(self, conn: Connection) -> None:
        conns = self._by_user.get(conn.user_id)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._by_user[conn.user_id]
        self._detach(conn)

    def close_sessions(self, session_ids: list[str], code: int, reason: str) -> None:
        wanted = set(session_ids)
        for conn in list(self.connections):
            if conn.session_id in wanted:
                conn.close_soon(code, reason)

    def _detach(self, conn: Connection) -> None:
        self.hub.release_user_slot(conn.user_id, conn.session_id)
        self.connections.discard(conn)
        self.hub.unregister_user(conn)
        if self.presence is not None:
            self.presence.disconnected(conn)
        for conversation_id in list(conn.joined):
            self.hub.unsubscribe(conversation_id, conn)
        conn.joined.clear()
        self.typing.disconnect(conn)

    def user_connections(self, user_id: int) -> list[Connection]:
        return list(self._by_user.get(user_id, ()))

    def drop_membership(self, conversation_id: int, user_id: int) -> list[Connection]:
        """The user left the conversation: unsubscribe its connections here at once."""
        self.membership.forget_conversation(conversation_id)
        dropped = []
        for conn in self._by_user.get(user_id, ()):
            if conn.joined.pop(conversation_id, None) is not None:
                self.hub.unsubscribe(conversation_id, conn)
            dropped.append(conn)
        self.typing.stop(None, conversation_id, user_id)
        return dropped

    async def close_all(self, code: int, reason: str, flush_s: float = 1.0) -> None:
        conns = list(self.connections)
        await asyncio.gather(
            *(conn.close(code, reason, flush_s=flush_s) for conn in conns),
            return_exceptions=True,
        )
