"""``RedisPresenceDirectory``: which users are online on which node, kept in Redis.

Keys (``tm<db>:`` first, as the broker's channels):

- ``presence:user:<user>``  the set of nodes the user has a socket on (online while not empty)
- ``presence:node:<node>``  the set of users this node registered
- ``presence:nodes``        sorted set: node → the time its claim expires
- ``presence:alive``        hash: node → its last sign of life (the dead node's ``last_seen``)

Each node renews its claim every third of ``ttl_s``; every node also sweeps the nodes whose
claim expired (crashed, or stopped: a stopping node expires its own claim), removing them from
their users' sets and reporting the users left on no node. So a dead node's users go offline
within 4/3 of ``ttl_s``. Every step is one Lua script, atomic in Redis: two nodes that gain or
lose one user at once cannot both see (or both miss) the first or last socket, and a sweep
claims a dead node exactly once. The clock is Redis's own (``TIME``), so the nodes' clocks
need not agree.

A node whose renewal finds its claim gone (it was swept after a long stall, or Redis restarted
empty) tells its :class:`~trustmess.delivery.presence.Presence`, which registers its users
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from trustmess.cluster.redis_broker import channel_prefix
from trustmess.delivery.presence import Seen

log = logging.getLogger(__name__)

WARN_EVERY_S = 10.0

_JOIN = """
local gained = {}
local mine = ARGV[1] .. 'presence:node:' .. ARGV[2]
for i = 3, #ARGV do
  local key = ARGV[1] .. 'presence:user:' .. ARGV[i]
  redis.call('SADD', mine, ARGV[i])
  if redis.call('SADD', key, ARGV[2]) == 1 and redis.call('SCARD', key) == 1 then
    table.insert(gained, ARGV[i])
  end
end
return gained
"""

# Offline when the user is on no node afterwards, even if this node was no longer listed (Redis
# restarted empty, or a sweep took this node for dead): its watchers may still show them online,
# and a second offline is harmless where one was sent already.
_LEAVE = """
local lost = {}
local mine = ARGV[1] .. 'presence:node:' .. ARGV[2]
for i = 3, #ARGV do
  local key = ARGV[1] .. 'presence:user:' .. ARGV[i]
  redis.call('SREM', mine, ARGV[i])
  redis.call('SREM', key, ARGV[2])
  if redis.call('SCARD', key) == 0 then
    table.insert(lost, ARGV[i])
  end
end
return lost
"""

# ARGV: prefix, node, ttl (0: expire now). Returns 1 when the claim was gone (or new).
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local added = redis.call('ZADD', ARGV[1] .. 'presence:nodes', now + tonumber(ARGV[3]), ARGV[2])
redis.call('HSET', ARGV[1] .. 'presence:alive', ARGV[2], string.format('%.3f', now))
return added
"""

# ARGV: prefix. Returns user, last_seen, user, last_seen, ...
_SWEEP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local nodes = ARGV[1] .. 'presence:nodes'
local alive = ARGV[1] .. 'presence:alive'
local out = {}
-- To the microsecond: at milliseconds, a claim expired (score now) less than 1 ms before
-- could round above the bound and wait for the next sweep.
for _, node in ipairs(redis.call('ZRANGEBYSCORE', nodes, '-inf', string.format('%.6f', now))) do
  redis.call('ZREM', nodes, node)
  local seen = redis.call('HGET', alive, node) or string.format('%.3f', now)
  redis.call('HDEL', alive, node)
  local theirs = ARGV[1] .. 'presence:node:' .. node
  for _, user in ipairs(redis.call('SMEMBERS', theirs)) do
    local key = ARGV[1] .. 'presence:user:' .. user
    if redis.call('SREM', key, node) == 1 and redis.call('SCARD', key) == 0 then
      table.insert(out, user)
      table.insert(out, seen)
    end
  end
  redis.call('DEL', theirs)
end
return out
"""


class RedisPresenceDirectory:
    """The presence directory of a node of a cluster (see the module docstring)."""

    def __init__(self, url: str, ttl_s: float) -> None:
        self.node = uuid.uuid4().hex[:12]
        self._prefix = channel_prefix(url)
        self._ttl_s = ttl_s
        self._client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self._join = self._client.register_script(_JOIN)
        self._leave = self._client.register_script(_LEAVE)
        self._renew = self._client.register_script(_RENEW)
        self._sweep = self._client.register_script(_SWEEP)
        self._on_expired: Callable[[list[Seen]], None] = lambda seen: None
        self._on_lost: Callable[[], None] = lambda: None
        self._task: asyncio.Task[None] | None = None
        self._warned = float("-inf")
        self._closed = False
        self.swept = 0  # users this node found offline on dead nodes

    def bind(self, on_expired: Callable[[list[Seen]], None], on_lost: Callable[[], None]) -> None:
        self._on_expired = on_expired
        self._on_lost = on_lost

    async def start(self) -> None:
        await self._beat(first=True)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="presence-beat")

    async def close(self) -> None:
        """Expire this node's claim now: the next sweep of another node publishes its users'
        offline (or this deployment's next node to start, if none is left)."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self._renew(args=[self._prefix, self.node, 0])
        except (aioredis.RedisError, OSError) as exc:
            log.warning("presence: could not expire this node's claim: %s", exc)
        await self._client.aclose()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_s / 3)
            await self._beat(first=False)

    async def _beat(self, *, first: bool) -> None:
        """Renew this node's claim, then sweep the expired ones."""
        try:
            renewed_new = await self._renew(args=[self._prefix, self.node, self._ttl_s])
            if renewed_new and not first:
                log.warning("presence: this node's claim had expired; registering again")
                self._on_lost()
            found = await self._sweep(args=[self._prefix])
        except (aioredis.RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._warned >= WARN_EVERY_S:
                self._warned = now
                log.warning("presence: redis unavailable: %s", exc)
            return
        if found:
            seen = [(int(found[i]), float(found[i + 1])) for i in range(0, len(found), 2)]
            self.swept += len(seen)
            self._on_expired(seen)

    async def join(self, user_ids: list[int]) -> list[int]:
        gained = await self._join(args=[self._prefix, self.node, *user_ids])
        return [int(u) for u in gained]

    async def leave(self, user_ids: list[int]) -> list[int]:
        lost = await self._leave(args=[self._prefix, self.node, *user_ids])
        return [int(u) for u in lost]

    async def online_among(self, user_ids: list[int]) -> set[int]:
        async with self._client.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.exists(f"{self._prefix}presence:user:{user_id}")
            found: list[Any] = await pipe.execute()
        return {u for u, exists in zip(user_ids, found, strict=True) if exists}
