"""The Redis presence directory on a real Redis, several "nodes" in one process: first and last
socket across nodes, the sweep of an expired node (exactly once, with its last sign of life),
and a node that finds its claim gone registering again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from tests.conftest import eventually
from trustmess.cluster.redis_presence import RedisPresenceDirectory
from trustmess.delivery.presence import Seen

# A database of its own: these tests flush it, and nothing else here uses it.
DB = 7

MakeNode = Callable[..., Awaitable["Node"]]


class Node:
    """A directory as one node holds it, with what it was told."""

    def __init__(self, directory: RedisPresenceDirectory) -> None:
        self.directory = directory
        self.expired: list[Seen] = []
        self.lost = 0
        directory.bind(self.expired.extend, self._lost)

    def _lost(self) -> None:
        self.lost += 1


@pytest.fixture
async def make_node(redis_url: str) -> AsyncIterator[MakeNode]:
    url = redis_url.rsplit("/", 1)[0] + f"/{DB}"
    client = aioredis.Redis.from_url(url)
    await client.flushdb()
    started: list[Node] = []

    async def make(ttl_s: float = 30.0) -> Node:
        node = Node(RedisPresenceDirectory(url, ttl_s))
        await node.directory.start()
        started.append(node)
        return node

    yield make
    for node in started:
        await node.directory.close()
    await client.flushdb()
    await client.aclose()


async def test_online_is_the_first_socket_anywhere_offline_the_last(make_node) -> None:
    a, b = await make_node(), await make_node()
    assert await a.directory.join([1, 2]) == [1, 2]
    assert await b.directory.join([2, 3]) == [3]  # 2 was online on a already
    assert await b.directory.online_among([1, 2, 3, 4]) == {1, 2, 3}
    assert await a.directory.leave([2]) == []  # still on b
    assert await b.directory.leave([2, 3]) == [2, 3]
    assert await a.directory.online_among([1, 2, 3]) == {1}


async def test_a_leave_redis_forgot_is_still_an_offline(make_node, redis_url) -> None:
    node = await make_node()
    await node.directory.join([5])
    client = aioredis.Redis.from_url(redis_url.rsplit("/", 1)[0] + f"/{DB}")
    await client.flushdb()  # Redis restarted empty meanwhile
    await client.aclose()
    assert await node.directory.leave([5]) == [5]


async def test_an_expired_node_is_swept_once_with_its_last_sign_of_life(make_node) -> None:
    survivors = [await make_node(ttl_s=30.0), await make_node(ttl_s=30.0)]
    dying = await make_node(ttl_s=0.6)
    assert await dying.directory.join([10, 11]) == [10, 11]
    await survivors[0].directory.join([11])
    # The dying node stops renewing (as if SIGKILLed): cancel its loop, keep its keys.
    assert dying.directory._task is not None
    dying.directory._task.cancel()
    stopped = time.time()

    async def both_sweep() -> bool:
        # Both at once, as two live nodes would: the dead node must be claimed once.
        await asyncio.gather(*(n.directory._beat(first=False) for n in survivors))
        return any(n.expired for n in survivors)

    await eventually(both_sweep, timeout=10, what="the expired node swept")
    await both_sweep()
    expired = [seen for node in survivors for seen in node.expired]
    # Only 10 went offline (11 is still on a survivor), reported by exactly one node.
    assert [user for user, _ in expired] == [10]
    assert stopped - 1.0 <= expired[0][1] <= stopped + 0.01
    assert await survivors[1].directory.online_among([10, 11]) == {11}


async def test_a_node_whose_claim_was_swept_registers_again(make_node) -> None:
    other = await make_node()
    stalled = await make_node(ttl_s=0.6)
    await stalled.directory.join([20])
    assert stalled.directory._task is not None
    stalled.directory._task.cancel()  # a stall longer than the TTL

    async def swept() -> bool:
        await other.directory._beat(first=False)
        return bool(other.expired)

    await eventually(swept, timeout=10, what="the stalled node swept")
    assert other.expired[0][0] == 20
    # Its next renewal finds the claim gone: the node is told to register its users again.
    await stalled.directory._beat(first=False)
    assert stalled.lost == 1
    assert await stalled.directory.join([20]) == [20]


async def test_a_stopped_node_expires_its_own_claim(make_node) -> None:
    other = await make_node()
    stopping = await make_node()
    await stopping.directory.join([30])
    await stopping.directory.close()
    await other.directory._beat(first=False)
    assert [user for user, _ in other.expired] == [30]
