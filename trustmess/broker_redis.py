"""``RedisHub``: the hub across processes and machines, over Redis pub/sub.

PostgreSQL stays the source of truth; Redis only carries live events between nodes (the
convention of Socket.IO's Redis adapter and Centrifugo's Redis engine). A node subscribes to a
conversation's channel only while a local socket has joined it, and to a user's channel only
while that user has a local socket. Each event is encoded once: the bus message is a small
JSON header line followed by the very bytes the sockets receive.

Message events go through a per-conversation :class:`Sequencer`, local ones included, so
every node delivers each conversation in seq order with no gap. When Redis is unreachable the
node keeps serving and persisting; after ``grace_s`` its sockets are closed with 1001 so their
clients resume (``join`` with ``since``) on a node that can see everybody's messages.

While the bus is down, message events are not queued (receivers read what they missed from
PostgreSQL when it is back) and typing is dropped (stale by then); every other event (read
markers, per-user events, control operations) waits in the outbox and goes out on reconnect.
Events other nodes published meanwhile are lost to this one, so on reconnect it also calls
``on_reconnect``, which re-checks its sockets against PostgreSQL (see events.resync).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis

from trustmess.hub import ControlHandler, LocalHub, Subscriber
from trustmess.sequencer import FetchRange, Sequencer

log = logging.getLogger(__name__)

BACKOFF_MAX_S = 5.0


def channel_prefix(url: str) -> str:
    """``tm<db>:``: Redis pub/sub ignores the database number, so the channel names carry it
    (two deployments on one Redis server, on different databases, stay apart)."""
    path = urlsplit(url).path.strip("/")
    return f"tm{path if path.isdigit() else 0}:"


class RedisHub(LocalHub):
    """A LocalHub for this node's sockets, joined to the others through Redis."""

    def __init__(
        self,
        url: str,
        fetch: FetchRange,
        *,
        gap_timeout_s: float = 0.2,
        grace_s: float = 5.0,
        on_outage: Callable[[], Awaitable[None]] | None = None,
        on_reconnect: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        super().__init__()
        self.node = uuid.uuid4().hex[:12]
        self._url = url
        self._prefix = channel_prefix(url)
        self._control_channel = self._prefix + "ctl"
        self._sequencer = Sequencer(self._deliver_message, fetch, gap_timeout_s)
        self._grace_s = grace_s
        self._on_outage = on_outage
        self._on_reconnect = on_reconnect
        # (channel, bus message, kept while the bus is down?)
        self._outbox: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue(maxsize=100_000)
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._client: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()
        self._down_since: float | None = time.monotonic()
        self.bus_published = 0
        self.bus_received = 0
        self.bus_dropped = 0
        self.bus_lag_s = 0.0

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="redis-listen"),
            asyncio.create_task(self._publish_loop(), name="redis-publish"),
            asyncio.create_task(self._watch_outage(), name="redis-watch"),
        ]
        # Start serving only once the bus works (bounded: a node may start while Redis is down).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), 10)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.aclose()

    @property
    def gaps_filled(self) -> int:
        return self._sequencer.gaps_filled

    def healthy(self) -> tuple[bool, str]:
        if self._connected.is_set():
            return True, "redis connected"
        return False, "redis unreachable"

    # --- subscriptions -------------------------------------------------------------------

    def _conversation_channel(self, conversation_id: int) -> str:
        return f"{self._prefix}c:{conversation_id}"

    def _user_channel(self, user_id: int) -> str:
        return f"{self._prefix}u:{user_id}"

    async def subscribe(self, conversation_id: int, subscriber: Subscriber) -> None:
        if self.add(conversation_id, subscriber):
            self._sequencer.start(conversation_id)
            await self._subscribe(self._conversation_channel(conversation_id))

    def position(self, conversation_id: int, last_seq: int) -> None:
        self._sequencer.position(conversation_id, last_seq)

    def unsubscribe(self, conversation_id: int, subscriber: Subscriber) -> None:
        if self.remove(conversation_id, subscriber):
            self._sequencer.stop(conversation_id)
            self._unsubscribe(self._conversation_channel(conversation_id))

    def register_user(self, subscriber: Subscriber) -> None:
        if self.add_user(subscriber):
            task = asyncio.get_running_loop().create_task(
                self._subscribe(self._user_channel(subscriber.user_id))
            )
            task.add_done_callback(_log_failure)

    def unregister_user(self, subscriber: Subscriber) -> None:
        if self.remove_user(subscriber):
            self._unsubscribe(self._user_channel(subscriber.user_id))

    def claim_user_slot(self, user_id: int, session_id: str, limit: int) -> None:
        """Count the user's sockets on every node; beyond ``limit`` the oldest get 4006."""
        task = asyncio.get_running_loop().create_task(self._claim(user_id, session_id, limit))
        task.add_done_callback(_log_failure)

    async def _claim(self, user_id: int, session_id: str, limit: int) -> None:
        if self._client is None or not self._connected.is_set():
            return
        key = f"{self._prefix}uc:{user_id}"
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {session_id: time.time()})
            pipe.expire(key, 7 * 86400)
            pipe.zrange(key, 0, -1)
            *_, members = await pipe.execute()
        excess = [m.decode() for m in members[: max(0, len(members) - limit)]]
        if excess:
            # A socket of a crashed node stays listed until it is the oldest and is kicked.
            await self._client.zrem(key, *excess)
            self.publish_control({"op": "kick", "sessions": excess})

    def release_user_slot(self, user_id: int, session_id: str) -> None:
        client = self._client
        if client is not None and self._connected.is_set():

            async def release() -> None:
                await client.zrem(f"{self._prefix}uc:{user_id}", session_id)

            asyncio.get_running_loop().create_task(release()).add_done_callback(_log_failure)

    async def _subscribe(self, channel: str) -> None:
        """SUBSCRIBE and wait (briefly) for Redis to confirm it."""
        if self._pubsub is None or not self._connected.is_set():
            return  # subscribed on reconnect
        future = self._ready.get(channel)
        if future is None or future.done():
            future = self._ready[channel] = asyncio.get_running_loop().create_future()
        try:
            await self._pubsub.subscribe(channel)
            await asyncio.wait_for(asyncio.shield(future), 2.0)
        except (TimeoutError, aioredis.RedisError, OSError):
            log.warning("subscribing to %s not confirmed", channel)

    def _unsubscribe(self, channel: str) -> None:
        if self._pubsub is not None and self._connected.is_set():
            task = asyncio.get_running_loop().create_task(self._pubsub.unsubscribe(channel))
            task.add_done_callback(_log_failure)

    def _wanted_channels(self) -> list[str]:
        return (
            [self._control_channel]
            + [self._conversation_channel(c) for c in self.rooms()]
            + [self._user_channel(u) for u in self.users()]
        )

    # --- publishing ----------------------------------------------------------------------

    def _route(
        self,
        conversation_id: int,
        seq: int | None,
        payload: bytes,
        skip_user: int | None,
        skip: Subscriber | None,
        volatile: bool,
    ) -> None:
        """Here through the sequencer (message events) and to the other nodes through Redis."""
        if seq is not None:
            self._sequencer.offer(conversation_id, seq, payload)
        else:
            self.deliver(conversation_id, None, payload, skip_user, skip)
        channel = self._conversation_channel(conversation_id)
        self._send(channel, [seq, skip_user], payload, keep=seq is None and not volatile)

    def publish_user(self, user_id: int, event: dict[str, Any]) -> None:
        payload = orjson.dumps(event)
        self.deliver_user(user_id, payload)
        self._send(self._user_channel(user_id), [None, None], payload, keep=True)

    def publish_control(self, op: dict[str, Any]) -> None:
        super().publish_control(op)
        self._send(self._control_channel, [None, None], orjson.dumps(op), keep=True)

    def _send(self, channel: str, header: list[Any], payload: bytes, *, keep: bool) -> None:
        if not keep and not self._connected.is_set():
            self.bus_dropped += 1
            return
        line = orjson.dumps([self.node, time.time(), *header])
        try:
            self._outbox.put_nowait((channel, line + b"\n" + payload, keep))
        except asyncio.QueueFull:
            self.bus_dropped += 1

    async def _publish_loop(self) -> None:
        retry: list[tuple[str, bytes, bool]] = []
        while True:
            batch = retry or [await self._outbox.get()]
            while not self._outbox.empty() and len(batch) < 512:
                batch.append(self._outbox.get_nowait())
            retry = []
            await self._connected.wait()
            client = self._client
            if client is None:
                retry = batch
                continue
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for channel, data, _ in batch:
                        pipe.publish(channel, data)
                    await pipe.execute()
                self.bus_published += len(batch)
            except (aioredis.RedisError, OSError):
                # Message events: receivers fill the gap from PostgreSQL (or their sockets
                # are closed after the grace period). The rest is sent again on reconnect;
                # it is idempotent, so a batch that was half sent does no harm.
                retry = [item for item in batch if item[2]]
                self.bus_dropped += len(batch) - len(retry)
                # Until the listener notices the outage, don't spin on a dead connection.
                await asyncio.sleep(0.1)

    # --- receiving -----------------------------------------------------------------------

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._connect_and_listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._connected.is_set():
                    log.warning("redis connection lost: %s", exc)
                self._connected.clear()
                self._down_since = self._down_since or time.monotonic()
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX_S, backoff * 2)

    async def _connect_and_listen(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
        self._client = aioredis.Redis.from_url(self._url, socket_connect_timeout=2)
        self._pubsub = self._client.pubsub()
        await self._pubsub.subscribe(*self._wanted_channels())
        was_down = self._down_since is not None
        self._connected.set()
        self._down_since = None
        log.info("redis connected (node %s)", self.node)
        if was_down:
            self._catch_up()
            if self._on_reconnect is not None:
                task = asyncio.get_running_loop().create_task(self._on_reconnect())
                task.add_done_callback(_log_failure)
        while True:
            message = await self._pubsub.get_message(timeout=None)
            if message is not None:
                self._receive(message)

    def _receive(self, message: dict[str, Any]) -> None:
        channel = message["channel"].decode()
        if message["type"] == "subscribe":
            future = self._ready.pop(channel, None)
            if future is not None and not future.done():
                future.set_result(None)
            return
        if message["type"] != "message":
            return
        data: bytes = message["data"]
        split = data.index(b"\n")
        node, sent_at, seq, skip_user = orjson.loads(data[:split])
        if node == self.node:
            return
        self.bus_received += 1
        self.bus_lag_s = max(0.0, time.time() - sent_at)
        payload = data[split + 1 :]
        kind, _, key = channel.removeprefix(self._prefix).partition(":")
        if channel == self._control_channel:
            if self._control is not None:
                self._control(orjson.loads(payload))
        elif kind == "c":
            conversation_id = int(key)
            if seq is not None:
                self._sequencer.offer(conversation_id, seq, payload)
            else:
                self.deliver(conversation_id, None, payload, skip_user)
        elif kind == "u":
            self.deliver_user(int(key), payload)

    def _deliver_message(self, conversation_id: int, seq: int, payload: bytes) -> None:
        self.deliver(conversation_id, seq, payload)

    def _catch_up(self) -> None:
        """After an outage, fetch what other nodes committed while we could not hear them."""
        for conversation_id in self.rooms():
            self._sequencer.catch_up(conversation_id)

    async def _watch_outage(self) -> None:
        """Close local sockets with 1001 once the bus has been down for ``grace_s``."""
        while True:
            await asyncio.sleep(min(1.0, self._grace_s / 2))
            down = self._down_since
            outage = down is not None and time.monotonic() - down >= self._grace_s
            if outage and self._on_outage is not None and (self.rooms() or self.users()):
                log.warning("redis down for %.1f s: closing sockets", self._grace_s)
                await self._on_outage()

    def set_control_handler(self, handler: ControlHandler) -> None:
        self._control = handler


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("redis operation failed: %s", task.exception())
