"""The process's live connections: per-user limits, membership cache, typing state, shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import asyncpg

from trustmess.delivery.hub import Hub
from trustmess.errors import CloseCode
from trustmess.gateway.connection import Connection, WriteBatcher
from trustmess.gateway.expiry import TokenExpiry
from trustmess.gateway.heartbeat import Heartbeat
from trustmess.settings import Settings
from trustmess.store.conversations import is_member

log = logging.getLogger(__name__)


class MembershipCache:
    """``(conversation, user) → member?`` for the hot path, dropped on every membership change.

    Entries also expire after ``ttl_s`` so a change made by another node is seen soon.
    """

    def __init__(self, pool: asyncpg.Pool, ttl_s: float = 30.0) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        # conversation -> user -> (member?, expiry): a membership change drops one inner dict.
        self._entries: dict[int, dict[int, tuple[bool, float]]] = {}
        self._size = 0

    async def is_member(self, conversation_id: int, user_id: int) -> bool:
        now = time.monotonic()
        users = self._entries.get(conversation_id)
        hit = None if users is None else users.get(user_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        async with self._pool.acquire() as conn:
            member = await is_member(conn, conversation_id, user_id)
        if self._size > 200_000:
            self.clear()
        users = self._entries.setdefault(conversation_id, {})
        self._size += user_id not in users
        users[user_id] = (member, now + self._ttl_s)
        return member

    def forget_conversation(self, conversation_id: int) -> None:
        self._size -= len(self._entries.pop(conversation_id, ()))

    def clear(self) -> None:
        self._entries.clear()
        self._size = 0


@dataclass(slots=True)
class _Typist:
    last_start_sent: float = -1e9
    stop_timer: asyncio.TimerHandle | None = None
    connections: set[Connection] = field(default_factory=set)


class TypingTracker:
    """Throttles ``start`` (one per user per conversation every ``throttle_s``) and emits
    ``stop`` after ``timeout_s`` without a new start, on leave and on disconnect."""

    def __init__(self, hub: Hub, throttle_s: float, timeout_s: float) -> None:
        self._hub = hub
        self._throttle_s = throttle_s
        self._timeout_s = timeout_s
        self._typists: dict[tuple[int, int], _Typist] = {}

    def start(self, conn: Connection, conversation_id: int) -> None:
        key = (conversation_id, conn.user_id)
        typist = self._typists.get(key)
        if typist is None:
            typist = self._typists[key] = _Typist()
        typist.connections.add(conn)
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - typist.last_start_sent >= self._throttle_s:
            typist.last_start_sent = now
            self._publish(conversation_id, conn.user_id, "start")
        if typist.stop_timer is not None:
            typist.stop_timer.cancel()
        typist.stop_timer = loop.call_later(self._timeout_s, self._expire, key)

    def stop(self, conn: Connection | None, conversation_id: int, user_id: int) -> None:
        """Stop the user's typing in the conversation (if it was typing) and tell the others."""
        typist = self._typists.pop((conversation_id, user_id), None)
        if typist is None:
            return
        if typist.stop_timer is not None:
            typist.stop_timer.cancel()
        self._publish(conversation_id, user_id, "stop")

    def disconnect(self, conn: Connection) -> None:
        """The connection went away: stop what only it was typing."""
        for key, typist in list(self._typists.items()):
            if key[1] == conn.user_id and conn in typist.connections:
                typist.connections.discard(conn)
                if not typist.connections:
                    self.stop(None, key[0], key[1])

    def _expire(self, key: tuple[int, int]) -> None:
        typist = self._typists.get(key)
        if typist is not None:
            typist.stop_timer = None
            self.stop(None, key[0], key[1])

    def _publish(self, conversation_id: int, user_id: int, state: str) -> None:
        event = {
            "type": "typing",
            "conversation_id": conversation_id,
            "user_id": user_id,
            "state": state,
        }
        self._hub.publish(conversation_id, event, skip_user=user_id, volatile=True)


class Gateway:
    """Registry of this process's connections."""

    def __init__(self, settings: Settings, hub: Hub, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.hub = hub
        self.membership = MembershipCache(pool)
        self.typing = TypingTracker(hub, settings.typing_throttle_s, settings.typing_timeout_s)
        self._by_user: dict[int, list[Connection]] = {}
        self.connections: set[Connection] = set()
        self.batcher = WriteBatcher()
        self.heartbeat = Heartbeat(self.connections, settings.ws_heartbeat_s)
        self.expiry = TokenExpiry()
        self.accepting = True

    def register(self, conn: Connection) -> None:
        """Add a connection; beyond the per-user limit the user's oldest is closed with 4006."""
        conns = self._by_user.setdefault(conn.user_id, [])
        self.hub.claim_user_slot(conn.user_id, conn.session_id, self.settings.ws_max_per_user)
        while self.settings.broker == "local" and len(conns) >= self.settings.ws_max_per_user:
            oldest = conns.pop(0)
            oldest.close_soon(CloseCode.REPLACED, "replaced by a newer connection")
            self._detach(oldest)
        conns.append(conn)
        self.connections.add(conn)
        self.hub.register_user(conn)

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
