"""The hub on its in-process broker: subscriptions, encode-once fan-out, user events, control."""

from __future__ import annotations

from typing import Any

from trustmess.delivery.broker import MemoryBroker
from trustmess.delivery.hub import Hub


class Recorder:
    """A subscriber that records what the hub hands it."""

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.events: list[tuple[int, int | None, bytes]] = []
        self.user_events: list[bytes] = []

    def deliver(self, conversation_id: int, seq: int | None, payload: bytes) -> None:
        self.events.append((conversation_id, seq, payload))

    def deliver_user(self, payload: bytes) -> None:
        self.user_events.append(payload)


class CountingBroker(MemoryBroker):
    """The memory broker, counting what the hub asks of it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []

    async def subscribe(self, conversation_id: int) -> None:
        self.calls.append(("subscribe", conversation_id))

    def unsubscribe(self, conversation_id: int) -> None:
        self.calls.append(("unsubscribe", conversation_id))

    def subscribe_user(self, user_id: int) -> None:
        self.calls.append(("subscribe_user", user_id))

    def unsubscribe_user(self, user_id: int) -> None:
        self.calls.append(("unsubscribe_user", user_id))


async def test_an_event_reaches_every_subscriber_of_its_conversation_as_the_same_bytes() -> None:
    hub = Hub()
    a, b, other = Recorder(1), Recorder(2), Recorder(3)
    await hub.subscribe(7, a)
    await hub.subscribe(7, b)
    await hub.subscribe(8, other)
    payload = b'{"type":"message"}'
    hub.publish(7, payload, seq=1)
    assert a.events == [(7, 1, payload)] and b.events == [(7, 1, payload)]
    assert a.events[0][2] is b.events[0][2]  # encoded once, not per recipient
    assert other.events == []
    assert (hub.published, hub.deliveries) == (1, 2)


async def test_skip_user_and_skip_leave_out_the_author() -> None:
    hub = Hub()
    a, a2, b = Recorder(1), Recorder(1), Recorder(2)
    for sub in (a, a2, b):
        await hub.subscribe(7, sub)
    hub.publish(7, b"typing", skip_user=1, volatile=True)
    hub.publish(7, b"read", skip=a)
    assert [e[2] for e in a.events] == []
    assert [e[2] for e in a2.events] == [b"read"]
    assert [e[2] for e in b.events] == [b"typing", b"read"]


async def test_the_broker_hears_only_of_the_first_and_last_subscriber() -> None:
    broker = CountingBroker()
    hub = Hub(broker)
    a, b = Recorder(1), Recorder(2)
    await hub.subscribe(7, a)
    await hub.subscribe(7, b)
    hub.unsubscribe(7, a)
    assert broker.calls == [("subscribe", 7)]
    hub.unsubscribe(7, b)
    hub.unsubscribe(7, b)  # twice is harmless
    assert broker.calls == [("subscribe", 7), ("unsubscribe", 7)]
    assert hub.rooms() == [] and hub.subscription_count() == 0


async def test_per_user_events_reach_each_socket_of_the_user() -> None:
    broker = CountingBroker()
    hub = Hub(broker)
    phone, laptop, other = Recorder(1), Recorder(1), Recorder(2)
    for sub in (phone, laptop, other):
        hub.register_user(sub)
    hub.register_user(phone)  # again: still one entry
    hub.publish_user(1, b"removed")
    assert phone.user_events == [b"removed"] and laptop.user_events == [b"removed"]
    assert other.user_events == []
    assert hub.has_user(1) and not hub.has_user(9)
    hub.unregister_user(phone)
    hub.unregister_user(laptop)
    assert not hub.has_user(1)
    assert broker.calls == [
        ("subscribe_user", 1),
        ("subscribe_user", 2),
        ("unsubscribe_user", 1),
    ]
    hub.publish_user(1, b"nobody hears this")  # no socket: nothing, no error
    assert phone.user_events == [b"removed"]


async def test_control_operations_run_on_this_node() -> None:
    hub = Hub()
    seen: list[dict[str, Any]] = []
    hub.publish_control({"op": "before a handler"})  # dropped: nothing to run it yet
    hub.set_control_handler(seen.append)
    hub.publish_control({"op": "user_disabled", "user_id": 5})
    assert seen == [{"op": "user_disabled", "user_id": 5}]


async def test_a_subscriber_that_unsubscribes_during_fan_out_does_not_break_it() -> None:
    hub = Hub()
    received: list[int] = []

    class Leaver(Recorder):
        def deliver(self, conversation_id: int, seq: int | None, payload: bytes) -> None:
            received.append(self.user_id)
            hub.unsubscribe(conversation_id, self)  # as a too-slow connection closing does

    for user_id in range(5):
        await hub.subscribe(7, Leaver(user_id))
    hub.publish(7, b"x")
    assert sorted(received) == [0, 1, 2, 3, 4]
    assert hub.rooms() == []


def test_a_memory_broker_is_a_single_healthy_node() -> None:
    hub = Hub()
    assert hub.single_node
    assert hub.healthy() == (True, "local")
    assert hub.broker.samples() == []
