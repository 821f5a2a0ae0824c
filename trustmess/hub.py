"""Fan-out: who is listening to which conversation, and publishing events to them.

Each event is serialised once per publish and the same bytes are handed to every subscriber;
a subscriber's ``deliver`` only queues them (it never awaits), so one slow socket cannot hold
up the others. ``LocalHub`` is the in-process implementation; a cross-process broker
implements the same interface.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson


class Subscriber(Protocol):
    """A connection as the hub sees it."""

    user_id: int

    def deliver(self, conversation_id: int, seq: int | None, payload: bytes) -> None:
        """Queue an encoded event; ``seq`` is set for ``message`` events (ordering)."""

    def deliver_user(self, payload: bytes) -> None:
        """Queue an encoded per-user event (``conversation``, ``removed``)."""


class Hub(Protocol):
    def subscribe(self, conversation_id: int, subscriber: Subscriber) -> None: ...

    def unsubscribe(self, conversation_id: int, subscriber: Subscriber) -> None: ...

    def register_user(self, subscriber: Subscriber) -> None: ...

    def unregister_user(self, subscriber: Subscriber) -> None: ...

    def publish(
        self,
        conversation_id: int,
        event: dict[str, Any],
        *,
        seq: int | None = None,
        skip_user: int | None = None,
        skip: Subscriber | None = None,
    ) -> None: ...

    def publish_user(self, user_id: int, event: dict[str, Any]) -> None: ...

    def subscribers(self, conversation_id: int) -> list[Subscriber]: ...


class LocalHub:
    """The in-process hub: dictionaries of sets, no I/O."""

    def __init__(self) -> None:
        self._rooms: dict[int, set[Subscriber]] = {}
        self._users: dict[int, set[Subscriber]] = {}
        self.published = 0
        self.deliveries = 0

    def subscribe(self, conversation_id: int, subscriber: Subscriber) -> None:
        self._rooms.setdefault(conversation_id, set()).add(subscriber)

    def unsubscribe(self, conversation_id: int, subscriber: Subscriber) -> None:
        room = self._rooms.get(conversation_id)
        if room is not None:
            room.discard(subscriber)
            if not room:
                del self._rooms[conversation_id]

    def register_user(self, subscriber: Subscriber) -> None:
        self._users.setdefault(subscriber.user_id, set()).add(subscriber)

    def unregister_user(self, subscriber: Subscriber) -> None:
        conns = self._users.get(subscriber.user_id)
        if conns is not None:
            conns.discard(subscriber)
            if not conns:
                del self._users[subscriber.user_id]

    def publish(
        self,
        conversation_id: int,
        event: dict[str, Any],
        *,
        seq: int | None = None,
        skip_user: int | None = None,
        skip: Subscriber | None = None,
    ) -> None:
        """Encode ``event`` once and queue it on every subscriber of the conversation."""
        room = self._rooms.get(conversation_id)
        self.published += 1
        if not room:
            return
        payload = orjson.dumps(event)
        # Copy: a delivery may close a too-slow connection, which unsubscribes it.
        for subscriber in tuple(room):
            if subscriber is skip or subscriber.user_id == skip_user:
                continue
            self.deliveries += 1
            subscriber.deliver(conversation_id, seq, payload)

    def publish_user(self, user_id: int, event: dict[str, Any]) -> None:
        conns = self._users.get(user_id)
        if not conns:
            return
        payload = orjson.dumps(event)
        for subscriber in tuple(conns):
            subscriber.deliver_user(payload)

    def subscribers(self, conversation_id: int) -> list[Subscriber]:
        return list(self._rooms.get(conversation_id, ()))

    def subscription_count(self) -> int:
        return sum(len(room) for room in self._rooms.values())

    def user_connections(self, user_id: int) -> list[Subscriber]:
        return list(self._users.get(user_id, ()))
