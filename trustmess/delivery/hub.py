"""Fan-out: who on this node listens to which conversation and user, and publishing to them.

Events arrive here already encoded (``wire.events``): the same bytes go to every subscriber,
and a subscriber's ``deliver`` only queues them (it never awaits), so one slow socket cannot
hold up the others. The hub publishes through its :class:`~trustmess.delivery.broker.Broker`,
which delivers back to the hub of every node, this one included; the hub tells the broker
when this node gains its first or loses its last subscriber of a conversation or user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trustmess.delivery.broker import Broker, MemoryBroker, Subscriber

ControlHandler = Callable[[dict[str, Any]], None]


class Hub:
    """This node's subscribers, joined to the other nodes through a broker."""

    def __init__(self, broker: Broker | None = None) -> None:
        self.broker: Broker = broker if broker is not None else MemoryBroker()
        self.broker.bind(self)
        self._rooms: dict[int, set[Subscriber]] = {}
        # A user has few sockets here (usually one): a list costs less than a set.
        self._users: dict[int, list[Subscriber]] = {}
        self._control: ControlHandler | None = None
        self.published = 0
        self.deliveries = 0

    @property
    def single_node(self) -> bool:
        """True when this process is the whole cluster (it knows every user's sockets)."""
        return self.broker.single_node

    # --- subscriptions -------------------------------------------------------------------

    async def subscribe(self, conversation_id: int, subscriber: Subscriber) -> None:
        """Add a subscriber; returns once events published from now on will reach it."""
        room = self._rooms.get(conversation_id)
        if room is None:
            room = self._rooms[conversation_id] = set()
        room.add(subscriber)
        if len(room) == 1:
            await self.broker.subscribe(conversation_id)

    def position(self, conversation_id: int, last_seq: int) -> None:
        """A join read the conversation's ``last_seq`` after subscribing."""
        self.broker.position(conversation_id, last_seq)

    def unsubscribe(self, conversation_id: int, subscriber: Subscriber) -> None:
        room = self._rooms.get(conversation_id)
        if room is None:
            return
        room.discard(subscriber)
        if not room:
            del self._rooms[conversation_id]
            self.broker.unsubscribe(conversation_id)

    def register_user(self, subscriber: Subscriber) -> None:
        """Per-user events (``conversation``, ``removed``) now reach this subscriber."""
        conns = self._users.setdefault(subscriber.user_id, [])
        if subscriber not in conns:
            conns.append(subscriber)
            if len(conns) == 1:
                self.broker.subscribe_user(subscriber.user_id)

    def unregister_user(self, subscriber: Subscriber) -> None:
        conns = self._users.get(subscriber.user_id)
        if conns is None:
            return
        if subscriber in conns:
            conns.remove(subscriber)
        if not conns:
            del self._users[subscriber.user_id]
            self.broker.unsubscribe_user(subscriber.user_id)

    def rooms(self) -> list[int]:
        return list(self._rooms)

    def users(self) -> list[int]:
        return list(self._users)

    def has_user(self, user_id: int) -> bool:
        """Does the user have a socket on this node?"""
        return user_id in self._users

    def subscription_count(self) -> int:
        return sum(len(room) for room in self._rooms.values())

    # --- publishing ----------------------------------------------------------------------

    def publish(
        self,
        conversation_id: int,
        payload: bytes,
        *,
        seq: int | None = None,
        skip_user: int | None = None,
        skip: Subscriber | None = None,
        volatile: bool = False,
    ) -> None:
        """Fan an encoded event out to the conversation's subscribers on every node. ``seq``
        marks a message event (delivered once, in order); ``volatile`` an event not worth
        delivering late (typing)."""
        self.published += 1
        self.broker.publish(conversation_id, seq, payload, skip_user, skip, volatile)

    def publish_user(self, user_id: int, payload: bytes) -> None:
        """An encoded event for every socket of the user, on every node."""
        self.broker.publish_user(user_id, payload)

    def publish_control(self, op: dict[str, Any]) -> None:
        """Run ``op`` (cache invalidation, membership changes) on every node."""
        self.broker.publish_control(op)

    def set_control_handler(self, handler: ControlHandler) -> None:
        self._control = handler

    # --- delivering (called by the broker) -----------------------------------------------

    def deliver(
        self,
        conversation_id: int,
        seq: int | None,
        payload: bytes,
        skip_user: int | None = None,
        skip: Subscriber | None = None,
    ) -> None:
        """Queue encoded bytes on this node's subscribers of the conversation."""
        room = self._rooms.get(conversation_id)
        if not room:
            return
        # Copy: a delivery may close a too-slow connection, which unsubscribes it.
        for subscriber in tuple(room):
            if subscriber is skip or subscriber.user_id == skip_user:
                continue
            self.deliveries += 1
            subscriber.deliver(conversation_id, seq, payload)

    def deliver_user(self, user_id: int, payload: bytes) -> None:
        for subscriber in tuple(self._users.get(user_id, ())):
            subscriber.deliver_user(payload)

    def control(self, op: dict[str, Any]) -> None:
        if self._control is not None:
            self._control(op)

    # --- the broker's lifecycle ----------------------------------------------------------

    def claim_user_slot(self, user_id: int, session_id: str, limit: int) -> None:
        self.broker.claim_user_slot(user_id, session_id, limit)

    def release_user_slot(self, user_id: int, session_id: str) -> None:
        self.broker.release_user_slot(user_id, session_id)

    def healthy(self) -> tuple[bool, str]:
        """(usable, reason) for /readyz and for accepting sockets."""
        return self.broker.healthy()

    async def start(self) -> None:
        await self.broker.start()

    async def close(self) -> None:
        await self.broker.close()
