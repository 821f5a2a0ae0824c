"""Typing indicators: throttled ``start``, and ``stop`` on timeout, leave and disconnect.

Typing never touches the database: it goes from the command straight to the hub, as a
volatile event (not worth delivering late).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from trustmess.delivery.hub import Hub
from trustmess.gateway.connection import Connection
from trustmess.wire import events


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
        payload = events.typing(conversation_id, user_id, state)
        self._hub.publish(conversation_id, payload, skip_user=user_id, volatile=True)
