"""Fan-out: who is listening to which conversation, and publishing events to them.

Each event is serialised once per publish and the same bytes are handed to every subscriber;
a subscriber's ``deliver`` only queues them (it never awaits), so one slow socket cannot hold
up the others. ``LocalHub`` is the in-process implementation; ``broker_redis.RedisHub``
implements the same interface across processes and machines.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import orjson

ControlHandler = Callable[[dict[str, Any]], None]


class Subscriber(Protocol):
    """A connection as the hub sees it."""

    user_id: int

    def deliver(self, conversation_id: int, seq: int | None, payload: bytes) -> None:
        """Queue an encoded event; ``seq`` is set for ``message`` events (ordering)."""

    def deliver_user(self, payload: bytes) -> None:
        """Queue an encoded per-user event (``conversation``, ``removed``)."""


class Hub(Protocol):
    """What the gateway, the commands and the writer need from a hub."""

    published: int
    deliveries: int

    async def subscribe(self, conversation_id: int, subscriber: Subscriber) -> None:
        """Add a subscriber; returns once events published from now on will reach it."""

    def position(self, conversation_id: int, last_seq: int) -> None:
        """A join read the conversation's ``last_seq`` after subscribing."""

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
        volatile: bool = False,
    ) -> None:
        """Fan ``event`` out to the conversation's subscribers. ``seq`` marks a message event
        (delivered once, in order); ``volatile`` an event not worth delivering late (typing)."""

    def publish_user(self, user_id: int, event: dict[str, Any]) -> None: ...

    def publish_control(self, op: dict[str, Any]) -> None:
        """Run ``op`` (cache invalidation, membership changes) on every node."""

    def set_control_handler(self, handler: ControlHandler) -> None: ...

    def subscription_count(self) -> int: ...

    def claim_user_slot(self, user_id: int, session_id: str, limit: int) -> None: ...

    def release_user_slot(self, user_id: int, session_id: str) -> None: ...

    def healthy(self) -> tuple[bool, str]:
        """(usable, reason) for /readyz and for accepting sockets."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class LocalHub:
    """The in-process hub: dictionaries of sets, no I/O."""

    def __init__(self) -> None:
        self._rooms: dict[int, set[Subscriber]] = {}
        # A user has few sockets here (usually one): a list costs less than a set.
        self._users: dict[int, list[Subscriber]] = {}
        self._control: ControlHandler | None = None
        self.published = 0
        self.deliveries = 0

    async def subscribe(self, conversation_id: int, subscriber: Subscriber) -> None:
        self.add(conversation_id, subscriber)

    def add(self, conversation_id: int, subscriber: Subscriber) -> bool:
        """Add a subscriber; True when it is the conversation's first here."""
        room = self._rooms.get(conversation_id)
        if room is None:
            room = self._rooms[conversation_id] = set()
        room.add(subscriber)
        return len(room) == 1

    def position(self, conversation_id: int, last_seq: int) -> None:
        """One process publishes in commit order: nothing to reorder."""

    def unsubscribe(self, conversation_id: int, subscriber: Subscriber) -> None:
        self.remove(conversation_id, subscriber)

    def remove(self, conversation_id: int, subscriber: Subscriber) -> bool:
        """Remove a subscriber; True when the conversation has none left here."""
        room = self._rooms.get(conversation_id)
        if room is None:
            return False
        room.discard(subscriber)
        if room:
            return False
        del self._rooms[conversation_id]
        return True

    def register_user(self, subscriber: Subscriber) -> None:
        self.add_user(subscriber)

    def add_user(self, subscriber: Subscriber) -> bool:
        conns = self._users.setdefault(subscriber.user_id, [])
        if subscriber not in conns:
            conns.append(subscriber)
        return len(conns) == 1

    def unregister_user(self, subscriber: Subscriber) -> None:
        self.remove_user(subscriber)

    def remove_user(self, subscriber: Subscriber) -> bool:
        conns = self._users.get(subscriber.user_id)
        if conns is None:
            return False
        if subscriber in conns:
            conns.remove(subscriber)
        if conns:
            return False
        del self._users[subscriber.user_id]
        return True

    def publish(
        self,
        conversation_id: int,
        event: dict[str, Any],
        *,
        seq: int | None = None,
        skip_user: int | None = None,
        skip: Subscriber | None = None,
        volatile: bool = False,
    ) -> None:
        """Encode ``event`` once and route it (see ``_route``)."""
        self.published += 1
        self._route(conversation_id, seq, orjson.dumps(event), skip_user, skip, volatile)

    def _route(
        self,
        conversation_id: int,
        seq: int | None,
        payload: bytes,
        skip_user: int | None,
        skip: Subscriber | None,
        volatile: bool,
    ) -> None:
        """Where a published event goes: here, only this process's subscribers."""
        self.deliver(conversation_id, seq, payload, skip_user, skip)

    def deliver(
        self,
        conversation_id: int,
        seq: int | None,
        payload: bytes,
        skip_user: int | None = None,
        skip: Subscriber | None = None,
    ) -> None:
        """Queue already-encoded bytes on this process's subscribers of the conversation."""
        room = self._rooms.get(conversation_id)
        if not room:
            return
        # Copy: a delivery may close a too-slow connection, which unsubscribes it.
        for subscriber in tuple(room):
            if subscriber is skip or subscriber.user_id == skip_user:
                continue
            self.deliveries += 1
            subscriber.deliver(conversation_id, seq, payload)

    def publish_user(self, user_id: int, event: dict[str, Any]) -> None:
        if user_id in self._users:
            self.deliver_user(user_id, orjson.dumps(event))

    def deliver_user(self, user_id: int, payload: bytes) -> None:
        for subscriber in tuple(self._users.get(user_id, ())):
            subscriber.deliver_user(payload)

    def publish_control(self, op: dict[str, Any]) -> None:
        if self._control is not None:
            self._control(op)

    def set_control_handler(self, handler: ControlHandler) -> None:
        self._control = handler

    def subscribers(self, conversation_id: int) -> list[Subscriber]:
        return list(self._rooms.get(conversation_id, ()))

    def has_room(self, conversation_id: int) -> bool:
        return conversation_id in self._rooms

    def rooms(self) -> list[int]:
        return list(self._rooms)

    def users(self) -> list[int]:
        return list(self._users)

    def subscription_count(self) -> int:
        return sum(len(room) for room in self._rooms.values())

    def claim_user_slot(self, user_id: int, session_id: str, limit: int) -> None:
        """Cross-node connection limits; one process enforces them in the gateway."""

    def release_user_slot(self, user_id: int, session_id: str) -> None:
        """See claim_user_slot."""

    def healthy(self) -> tuple[bool, str]:
        return True, "local"

    async def start(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to disconnect from."""
