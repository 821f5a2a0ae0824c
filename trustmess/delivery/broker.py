"""The broker: how the hub's events reach every node.

The hub publishes into its broker, and the broker delivers to the hub of every node, this
one included (the split of centrifuge's node and broker). ``MemoryBroker`` is the bus of a
single process: it hands each event straight back. ``cluster.redis_broker.RedisBroker``
carries events between processes and machines over Redis and puts message events in seq
order. The hub never needs to know which one it has.
"""

from __future__ import annotations

from typing import Any, Protocol

from trustmess.metrics import Sample


class Subscriber(Protocol):
    """A connection as the hub sees it."""

    user_id: int

    def deliver(self, conversation_id: int, seq: int | None, payload: bytes) -> None:
        """Queue an encoded event; ``seq`` is set for ``message`` events (ordering)."""

    def deliver_user(self, payload: bytes) -> None:
        """Queue an encoded per-user event (``conversation``, ``removed``)."""


class Node(Protocol):
    """What a broker delivers to: this node's hub."""

    def deliver(
        self,
        conversation_id: int,
        seq: int | None,
        payload: bytes,
        skip_user: int | None = None,
        skip: Subscriber | None = None,
    ) -> None: ...

    def deliver_user(self, user_id: int, payload: bytes) -> None: ...

    def control(self, op: dict[str, Any]) -> None: ...

    def rooms(self) -> list[int]: ...

    def users(self) -> list[int]: ...


class Broker(Protocol):
    """The bus between nodes, as the hub uses it."""

    # True when this process is the only node: it then knows every user's sockets.
    single_node: bool

    def bind(self, node: Node) -> None:
        """Where to deliver events (called once, by the hub)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def healthy(self) -> tuple[bool, str]:
        """(usable, reason) for /readyz and for accepting sockets."""

    async def subscribe(self, conversation_id: int) -> None:
        """The node's first subscriber of the conversation: returns once events published
        from now on will arrive."""

    def unsubscribe(self, conversation_id: int) -> None: ...

    def subscribe_user(self, user_id: int) -> None: ...

    def unsubscribe_user(self, user_id: int) -> None: ...

    def position(self, conversation_id: int, last_seq: int) -> None:
        """A join read the conversation's ``last_seq`` after subscribing."""

    def publish(
        self,
        conversation_id: int,
        seq: int | None,
        payload: bytes,
        skip_user: int | None,
        skip: Subscriber | None,
        volatile: bool,
    ) -> None:
        """Deliver to every node (``skip`` is a local subscriber: only this node has it)."""

    def publish_user(self, user_id: int, payload: bytes) -> None: ...

    def publish_control(self, op: dict[str, Any]) -> None:
        """Run ``op`` on every node, this one first."""

    def claim_user_slot(self, user_id: int, session_id: str, limit: int) -> None:
        """Count the user's sockets on every node; beyond ``limit`` the oldest get 4006."""

    def release_user_slot(self, user_id: int, session_id: str) -> None: ...

    def samples(self) -> list[Sample]:
        """The broker's own metrics for ``/metrics``."""


class MemoryBroker:
    """One process is the whole cluster: every event goes straight back to its hub, and
    message events are already in seq order (the writer publishes in commit order)."""

    single_node = True

    def __init__(self) -> None:
        self._node: Node | None = None

    def bind(self, node: Node) -> None:
        self._node = node

    async def start(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to disconnect from."""

    def healthy(self) -> tuple[bool, str]:
        return True, "local"

    async def subscribe(self, conversation_id: int) -> None:
        """Local events reach local subscribers at once."""

    def unsubscribe(self, conversation_id: int) -> None:
        """See subscribe."""

    def subscribe_user(self, user_id: int) -> None:
        """See subscribe."""

    def unsubscribe_user(self, user_id: int) -> None:
        """See subscribe."""

    def position(self, conversation_id: int, last_seq: int) -> None:
        """Nothing to reorder."""

    def publish(
        self,
        conversation_id: int,
        seq: int | None,
        payload: bytes,
        skip_user: int | None,
        skip: Subscriber | None,
        volatile: bool,
    ) -> None:
        assert self._node is not None
        self._node.deliver(conversation_id, seq, payload, skip_user, skip)

    def publish_user(self, user_id: int, payload: bytes) -> None:
        assert self._node is not None
        self._node.deliver_user(user_id, payload)

    def publish_control(self, op: dict[str, Any]) -> None:
        assert self._node is not None
        self._node.control(op)

    def claim_user_slot(self, user_id: int, session_id: str, limit: int) -> None:
        """One process enforces the per-user limit in the gateway's registry."""

    def release_user_slot(self, user_id: int, session_id: str) -> None:
        """See claim_user_slot."""

    def samples(self) -> list[Sample]:
        return []
