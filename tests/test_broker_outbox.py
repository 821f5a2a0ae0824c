"""The Redis broker's outbox: what a node publishes while the bus is down or a publish fails.

Each test drives one in-process hub on a ``RedisBroker`` on the tests' Redis and watches the bus
with a plain subscriber, so it sees exactly what went out and in which order.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import redis.asyncio as aioredis

from tests.conftest import RedisProcess
from trustmess.cluster.redis_broker import RedisBroker, channel_prefix
from trustmess.delivery.hub import Hub

CID = 900_001  # no other test uses this conversation's channel


async def no_fetch(conversation_id: int, after: int, through: int) -> list[tuple[int, bytes]]:
    # The hubs here have no local subscribers: their sequencer never reads the database.
    raise AssertionError("not expected to read messages")


class BusTap:
    """A plain subscriber: (channel suffix, seq, event) for each bus message, in order."""

    def __init__(self, url: str, *suffixes: str) -> None:
        self.prefix = channel_prefix(url)
        self.client = aioredis.Redis.from_url(url)
        self.pubsub = self.client.pubsub()
        self.channels = [self.prefix + s for s in suffixes]

    async def __aenter__(self) -> BusTap:
        await self.pubsub.subscribe(*self.channels)
        for _ in self.channels:
            assert (await self.next_raw())["type"] == "subscribe"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pubsub.aclose()
        await self.client.aclose()

    async def next_raw(self, timeout: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.pubsub.get_message(timeout=timeout)
                if message is not None:
                    return message

    async def next(self, timeout: float = 10.0) -> tuple[str, int | None, dict[str, Any]]:
        message = await self.next_raw(timeout)
        header, _, payload = message["data"].partition(b"\n")
        seq = orjson.loads(header)[2]
        return message["channel"].decode().removeprefix(self.prefix), seq, orjson.loads(payload)


@asynccontextmanager
async def redis_user(redis_url: str) -> AsyncIterator[tuple[str, aioredis.Redis]]:
    """A Redis ACL user of its own (URL, admin client): a test can take PUBLISH away from it,
    a transient failure of one node only."""
    admin = aioredis.Redis.from_url(redis_url)
    name = f"tm_test_{uuid.uuid4().hex[:8]}"
    await admin.execute_command("ACL", "SETUSER", name, "on", ">pw", "~*", "&*", "+@all")
    parts = urlsplit(redis_url)
    try:
        yield parts._replace(netloc=f"{name}:pw@{parts.netloc}").geturl(), admin
    finally:
        await admin.execute_command("ACL", "DELUSER", name)
        await admin.aclose()


async def publish_denied(admin: aioredis.Redis, url: str, timeout: float = 10.0) -> None:
    """Wait until Redis has refused a PUBLISH from ``url``'s user."""
    user = urlsplit(url).username
    async with asyncio.timeout(timeout):
        while not any(
            e["username"] == user and e["object"] == "publish" for e in await admin.acl_log()
        ):
            await asyncio.sleep(0.02)


def redis_hub(url: str, **options: Any) -> Hub:
    """A hub whose broker is Redis (not started: the bus is down until ``start``)."""
    return Hub(RedisBroker(url, no_fetch, **options))


def dropped(hub: Hub) -> int:
    assert isinstance(hub.broker, RedisBroker)
    return hub.broker.bus_dropped


def message_event(seq: int) -> bytes:
    return orjson.dumps({"type": "message", "conversation_id": CID, "seq": seq})


def read_event(seq: int) -> bytes:
    return orjson.dumps({"type": "read", "conversation_id": CID, "user_id": 1, "seq": seq})


async def test_events_published_while_the_bus_is_down_go_out_in_order_on_connect(
    redis_url: str,
) -> None:
    hub = redis_hub(redis_url)  # not started: the bus is down
    try:
        hub.publish(CID, message_event(1), seq=1)
        hub.publish(CID, read_event(1))
        hub.publish(CID, b'{"type":"typing"}', volatile=True)
        hub.publish(CID, message_event(2), seq=2)
        async with BusTap(redis_url, f"c:{CID}") as tap:
            await hub.start()
            got = [await tap.next() for _ in range(3)]
        # Typing is stale by then; everything else goes out, message events included.
        assert [(seq, event["type"]) for _, seq, event in got] == [
            (1, "message"),
            (None, "read"),
            (2, "message"),
        ]
        assert dropped(hub) == 1
    finally:
        await hub.close()


async def test_events_of_a_failed_publish_go_out_again_before_later_ones(
    redis_process: RedisProcess | None, redis_url: str
) -> None:
    if redis_process is None:
        pytest.skip("creates a Redis ACL user: needs the tests' own redis-server")
    async with redis_user(redis_url) as (url, admin):
        hub = redis_hub(url)
        try:
            await hub.start()
            async with BusTap(redis_url, f"c:{CID}") as tap:
                await admin.execute_command("ACL", "SETUSER", urlsplit(url).username, "-publish")
                hub.publish(CID, message_event(1), seq=1)
                hub.publish(CID, message_event(2), seq=2)
                await publish_denied(admin, url)
                hub.publish(CID, read_event(2))
                hub.publish(CID, message_event(3), seq=3)
                await admin.execute_command("ACL", "SETUSER", urlsplit(url).username, "+publish")
                got = [await tap.next() for _ in range(4)]
            assert [(seq, event["type"]) for _, seq, event in got] == [
                (1, "message"),
                (2, "message"),
                (None, "read"),
                (3, "message"),
            ]
            assert dropped(hub) == 0
        finally:
            await hub.close()


async def test_overflow_drops_the_oldest_events_but_no_control_operation(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="trustmess.cluster")
    hub = redis_hub(redis_url, outbox_events=5)
    try:
        # A flood of read events fills the outbox; a control operation comes after it.
        for seq in range(1, 21):
            hub.publish(CID, read_event(seq))
        kick = {"op": "kick", "sessions": ["s1"]}
        hub.publish_control(kick)
        assert dropped(hub) == 15
        async with BusTap(redis_url, "ctl", f"c:{CID}") as tap:
            await hub.start()
            got = [await tap.next() for _ in range(6)]
        assert [event["seq"] for _, _, event in got[:5]] == [16, 17, 18, 19, 20]
        assert got[5] == ("ctl", None, kick)
        # Logged once when it started and once, with the count, when the outbox drained.
        async with asyncio.timeout(5):
            while not any("15 events dropped" in r.getMessage() for r in caplog.records):
                await asyncio.sleep(0.01)
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        await hub.close()


async def test_a_dropped_control_operation_is_logged_as_an_error(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    hub = redis_hub(redis_url, control_outbox_events=2)
    try:
        for user_id in (1, 2, 3):
            hub.publish_control({"op": "user_disabled", "user_id": user_id})
        assert dropped(hub) == 1
        [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert '"user_id":1' in error.getMessage()
    finally:
        await hub.close()
