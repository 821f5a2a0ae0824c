"""``RedisBroker``: the hub's broker across processes and machines, over Redis pub/sub.

PostgreSQL stays the source of truth; Redis only carries live events between nodes (the
convention of Socket.IO's Redis adapter and Centrifugo's Redis engine). A node subscribes to a
conversation's channel only while a local socket has joined it, and to a user's channel only
while that user has a local socket. Each event is encoded once: the bus message is a small
JSON header line followed by the very bytes the sockets receive.

Message events go through a per-conversation :class:`Sequencer`, local ones included, so
every node delivers each conversation in seq order with no gap. When Redis is unreachable the
node keeps serving and persisting; after ``grace_s`` its sockets are closed with 1001 so their
clients resume (``join`` with ``since``) on a node that can see everybody's messages.

While the bus is down, or a publish fails, events wait in the :class:`Outbox` and go out on
reconnect: a message event sent late still reaches nodes that would otherwise notice the gap
only at the conversation's next message, and resending is harmless (receivers drop seqs they
delivered). Events other nodes published meanwhile are lost to this one, so on reconnect it
also calls ``on_reconnect``, which re-checks its sockets against PostgreSQL (see
gateway.control.resync). A link that goes silent without a reset (a partition) counts as lost
once no answer to a PING came for ``LINK_DEAD_S``.

The bus's trust boundary: every node trusts what it reads from Redis (it is the same
deployment's own bus), so Redis must be reachable by the nodes only (README.md says what a
writer to Redis could do). A message no node could have published is still dropped, counted
and logged, rather than breaking the listener (and its connection) on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from trustmess.cluster.outbox import CONTROL_OUTBOX_EVENTS, OUTBOX_EVENTS, Outbox
from trustmess.cluster.redis_link import BusLinkError
from trustmess.cluster.redis_publisher import BusPublisher
from trustmess.cluster.redis_subscriber import BusSubscriber
from trustmess.cluster.sequencer import FetchRange, Sequencer
from trustmess.delivery.broker import Node, Subscriber
from trustmess.metrics import Sample

log = logging.getLogger(__name__)

# Within the grace period a node retries every 100-250 ms, so a short blip of the bus closes
# nothing; after it, the wait doubles up to BACKOFF_MAX_S.
RETRY_IN_GRACE_S = (0.1, 0.25)
BACKOFF_MAX_S = 5.0
# At the end of the grace period one last PING, on a fresh connection, decides.
LAST_CHECK_TIMEOUT_S = 0.5
# The listener wakes this often and, when it heard nothing meanwhile, PINGs over the pub/sub
# connection; with no answer for LINK_DEAD_S the link counts as lost.
LINK_CHECK_S = 1.0
LINK_DEAD_S = 3.0
PUBLISH_BATCH = 512
MALFORMED_LOG_EVERY_S = 10.0


def channel_prefix(url: str) -> str:
    """``tm<db>:``: Redis pub/sub ignores the database number, so the channel names carry it
    (two deployments on one Redis server, on different databases, stay apart)."""
    path = urlsplit(url).path.strip("/")
    return f"tm{path if path.isdigit() else 0}:"


class RedisBroker:
    """Joins this node's hub to the other nodes through Redis."""

    single_node = False

    def __init__(
        self,
        url: str,
        fetch: FetchRange,
        *,
        gap_timeout_s: float = 0.2,
        grace_s: float = 5.0,
        on_outage: Callable[[], Awaitable[None]] | None = None,
        on_reconnect: Callable[[], Coroutine[Any, Any, None]] | None = None,
        outbox_events: int = OUTBOX_EVENTS,
        control_outbox_events: int = CONTROL_OUTBOX_EVENTS,
    ) -> None:
        self.node = uuid.uuid4().hex[:12]
        self._url = url
        self._prefix = channel_prefix(url)
        self._control_channel = self._prefix + "ctl"
        self._hub: Node | None = None
        self._sequencer = Sequencer(self._deliver_message, fetch, gap_timeout_s)
        self._grace_s = grace_s
        self._on_outage = on_outage
        self._on_reconnect = on_reconnect
        self.outbox = Outbox(outbox_events, control_outbox_events)
        self._outbox_ready = asyncio.Event()
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._client: aioredis.Redis | None = None
        self._subscriber: BusSubscriber | None = None
        self._publisher: BusPublisher | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()
        self._retry_now = asyncio.Event()  # the last check found Redis back: don't wait
        self._down_since: float | None = time.monotonic()
        self.bus_published = 0
        self.bus_received = 0
        self._bus_dropped = 0  # volatile events not even queued (bus down)
        self.bus_lag_s = 0.0
        self.bus_malformed = 0
        self._malformed_logged = float("-inf")
        self.bus_failed = 0
        self._failure_logged = float("-inf")

    def bind(self, node: Node) -> None:
        self._hub = node

    @property
    def hub(self) -> Node:
        assert self._hub is not None, "RedisBroker used before a hub was bound to it"
        return self._hub

    @property
    def bus_dropped(self) -> int:
        return self._bus_dropped + self.outbox.dropped

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

    def healthy(self) -> tuple[bool, str]:
        if self._connected.is_set():
            return True, "redis connected"
        return False, "redis unreachable"

    def samples(self) -> list[Sample]:
        return [
            (
                "trustmess_broker_up",
                "gauge",
                "1 when the Redis bus is connected.",
                [({}, int(self._connected.is_set()))],
            ),
            (
                "trustmess_broker_published_total",
                "counter",
                "Bus messages published.",
                [({}, self.bus_published)],
            ),
            (
                "trustmess_broker_received_total",
                "counter",
                "Bus messages from other nodes.",
                [({}, self.bus_received)],
            ),
            (
                "trustmess_broker_dropped_total",
                "counter",
                "Bus messages not sent (bus down).",
                [({}, self.bus_dropped)],
            ),
            (
                "trustmess_broker_malformed_total",
                "counter",
                "Bus messages dropped as malformed (not from a node of this deployment).",
                [({}, self.bus_malformed)],
            ),
            (
                "trustmess_broker_lag_seconds",
                "gauge",
                "Publish-to-receive delay, last message.",
                [({}, self.bus_lag_s)],
            ),
            (
                "trustmess_sequencer_gaps_filled_total",
                "counter",
                "Gaps read from PostgreSQL.",
                [({}, self._sequencer.gaps_filled)],
            ),
        ]

    # --- subscriptions -------------------------------------------------------------------

    def _conversation_channel(self, conversation_id: int) -> str:
        return f"{self._prefix}c:{conversation_id}"

    def _user_channel(self, user_id: int) -> str:
        return f"{self._prefix}u:{user_id}"

    async def subscribe(self, conversation_id: int) -> None:
        self._sequencer.start(conversation_id)
        await self._subscribe(self._conversation_channel(conversation_id))

    def position(self, conversation_id: int, last_seq: int) -> None:
        self._sequencer.position(conversation_id, last_seq)

    def unsubscribe(self, conversation_id: int) -> None:
        self._sequencer.stop(conversation_id)
        self._unsubscribe(self._conversation_channel(conversation_id))

    def subscribe_user(self, user_id: int) -> None:
        task = asyncio.get_running_loop().create_task(self._subscribe(self._user_channel(user_id)))
        task.add_done_callback(_log_failure)

    def unsubscribe_user(self, user_id: int) -> None:
        self._unsubscribe(self._user_channel(user_id))

    def claim_user_slot(self, user_id: int, session_id: str, limit: int) -> None:
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
        subscriber = self._subscriber
        if subscriber is None or not self._connected.is_set():
            return  # subscribed on reconnect
        future = self._ready.get(channel)
        if future is None or future.done():
            future = self._ready[channel] = asyncio.get_running_loop().create_future()
        try:
            subscriber.subscribe(channel)
            await asyncio.wait_for(asyncio.shield(future), 2.0)
        except (TimeoutError, OSError):
            log.warning("subscribing to %s not confirmed", channel)

    def _unsubscribe(self, channel: str) -> None:
        if self._subscriber is not None and self._connected.is_set():
            try:
                self._subscriber.unsubscribe(channel)
            except OSError as exc:
                log.warning("unsubscribing from %s failed: %s", channel, exc)

    def _wanted_channels(self) -> list[str]:
        return (
            [self._control_channel]
            + [self._conversation_channel(c) for c in self.hub.rooms()]
            + [self._user_channel(u) for u in self.hub.users()]
        )

    # --- publishing ----------------------------------------------------------------------

    def publish(
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
            self.hub.deliver(conversation_id, None, payload, skip_user, skip)
        channel = self._conversation_channel(conversation_id)
        self._send(channel, [seq, skip_user], payload, volatile=volatile)

    def publish_user(self, user_id: int, payload: bytes) -> None:
        self.hub.deliver_user(user_id, payload)
        self._send(self._user_channel(user_id), [None, None], payload)

    def publish_control(self, op: dict[str, Any]) -> None:
        self.hub.control(op)
        self._send(self._control_channel, [None, None], orjson.dumps(op), control=True)

    def _send(
        self,
        channel: str,
        header: list[Any],
        payload: bytes,
        *,
        volatile: bool = False,
        control: bool = False,
    ) -> None:
        if volatile and not self._connected.is_set():
            self._bus_dropped += 1
            return
        line = orjson.dumps([self.node, time.time(), *header])
        self.outbox.add(channel, line + b"\n" + payload, volatile=volatile, control=control)
        self._outbox_ready.set()

    async def _publish_loop(self) -> None:
        failing = False
        while True:
            await self._connected.wait()
            batch = self.outbox.take(PUBLISH_BATCH)
            if not batch:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            try:
                if self._publisher is None:
                    raise BusLinkError("not connected")
                await self._publisher.publish_many((item.channel, item.data) for item in batch)
            except OSError as exc:
                self.outbox.put_back(batch)
                if not failing:
                    log.warning("publishing to redis failed, will retry: %s", exc)
                failing = True
                # Until the listener notices the outage, don't spin on a dead connection.
                await asyncio.sleep(0.1)
                continue
            failing = False
            self.bus_published += len(batch)
            overflowed = self.outbox.take_overflow()
            if overflowed:
                log.warning("bus outbox overflowed: %d events dropped", overflowed)

    # --- receiving -----------------------------------------------------------------------

    async def _listen(self) -> None:
        backoff = 0.0
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
            if self._within_grace():
                backoff = 0.0
                delay = random.uniform(*RETRY_IN_GRACE_S)
            else:
                backoff = min(BACKOFF_MAX_S, max(RETRY_IN_GRACE_S[1], backoff * 2))
                delay = backoff * random.uniform(0.5, 1.0)
            self._retry_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._retry_now.wait(), delay)

    def _within_grace(self) -> bool:
        """Is the bus down for less than the grace period (or up)?"""
        down = self._down_since
        return down is None or time.monotonic() - down < self._grace_s

    async def _connect_and_listen(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
        self._client = aioredis.Redis.from_url(
            self._url,
            socket_connect_timeout=2,
            socket_timeout=5,
            socket_keepalive=True,
            health_check_interval=5,
            # Publishing and the other commands. No silent reconnect inside redis-py: a failure
            # must reach the listener, whose reconnect catches up on what was missed.
            retry=Retry(NoBackoff(), 0),
        )
        subscriber = await BusSubscriber.open(
            self._url, 2.0, self._on_bus_message, self._on_subscribed
        )
        try:
            publisher = await BusPublisher.open(self._url, 2.0)
        except BaseException:
            subscriber.close()
            raise
        self._subscriber, self._publisher = subscriber, publisher
        try:
            subscriber.subscribe(*self._wanted_channels())
            await self._serve_link(subscriber, publisher)
        finally:
            self._subscriber = self._publisher = None
            subscriber.close()
            publisher.close()

    async def _serve_link(self, subscriber: BusSubscriber, publisher: BusPublisher) -> None:
        """Connected: catch up if we were not, then watch the link until it is lost (the
        messages themselves arrive in ``_on_bus_message``, called by the subscriber)."""
        was_down = self._down_since is not None
        self._connected.set()
        self._down_since = None
        log.info("redis connected (node %s)", self.node)
        if was_down:
            self._catch_up()
            if self._on_reconnect is not None:
                task = asyncio.get_running_loop().create_task(self._on_reconnect())
                task.add_done_callback(_log_failure)
        loop = asyncio.get_running_loop()
        while True:
            done, _ = await asyncio.wait(
                [subscriber.lost, publisher.lost],
                timeout=LINK_CHECK_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if done:
                raise BusLinkError(f"redis connection lost: {done.pop().result()}")
            quiet = loop.time() - subscriber.heard
            if quiet > LINK_DEAD_S:
                # A half-open link (a partition without a reset) would just read nothing.
                raise BusLinkError(f"no answer from redis for {quiet:.1f} s")
            if quiet >= LINK_CHECK_S:
                subscriber.ping()

    def _on_subscribed(self, channel: bytes) -> None:
        future = self._ready.pop(channel.decode(errors="replace"), None)
        if future is not None and not future.done():
            future.set_result(None)

    def _on_bus_message(self, channel_bytes: bytes, data: bytes) -> None:
        channel = channel_bytes.decode(errors="replace")
        try:
            self._receive_message(channel, data)
        except MalformedBusMessage as exc:
            self._drop_malformed(channel, str(exc))
        except Exception:
            # A bug in handling one message must not drop the link (and the rest of the
            # chunk with it): control operations and user events have no catch-up.
            self.bus_failed += 1
            now = time.monotonic()
            if now - self._failure_logged >= MALFORMED_LOG_EVERY_S:
                self._failure_logged = now
                log.exception("handling a bus message on %s failed", channel[:100])

    def _receive_message(self, channel: str, data: bytes) -> None:
        """One bus message; raises MalformedBusMessage, never anything else, for bad input
        (whoever can write to Redis can send anything: see the module's docstring)."""
        split = data.find(b"\n")
        if split < 0:
            raise MalformedBusMessage("no header line")
        try:
            header = orjson.loads(data[:split])
        except orjson.JSONDecodeError:
            raise MalformedBusMessage("header is not JSON") from None
        if not (isinstance(header, list) and len(header) == 4):
            raise MalformedBusMessage("header is not [node, sent_at, seq, skip_user]")
        node, sent_at, seq, skip_user = header
        if not (
            isinstance(node, str)
            and _is_number(sent_at)
            and (seq is None or (_is_int(seq) and seq > 0))
            and (skip_user is None or _is_int(skip_user))
        ):
            raise MalformedBusMessage("header field of the wrong type")
        if node == self.node:
            return
        payload = data[split + 1 :]
        kind, _, key = channel.removeprefix(self._prefix).partition(":")
        if channel == self._control_channel:
            try:
                op = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise MalformedBusMessage("control operation is not JSON") from None
            if not isinstance(op, dict):
                raise MalformedBusMessage("control operation is not an object")
            self._count_received(sent_at)
            try:
                self.hub.control(op)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise MalformedBusMessage(f"control operation refused: {exc!r}") from None
            return
        if kind not in ("c", "u") or not key.isdigit():
            raise MalformedBusMessage("unknown channel")
        self._count_received(sent_at)
        if kind == "c":
            conversation_id = int(key)
            if seq is not None:
                self._sequencer.offer(conversation_id, seq, payload)
            else:
                self.hub.deliver(conversation_id, None, payload, skip_user)
        else:
            self.hub.deliver_user(int(key), payload)

    def _count_received(self, sent_at: float) -> None:
        self.bus_received += 1
        self.bus_lag_s = lag = max(0.0, time.time() - sent_at)
        self._sequencer.note_lag(lag)

    def _drop_malformed(self, channel: str, reason: str) -> None:
        """Count it, and log it at most once per MALFORMED_LOG_EVERY_S (a flood of them must
        not flood the log)."""
        self.bus_malformed += 1
        now = time.monotonic()
        if now - self._malformed_logged >= MALFORMED_LOG_EVERY_S:
            self._malformed_logged = now
            log.warning(
                "dropped a malformed bus message on %s: %s (%d dropped so far)",
                channel[:100],
                reason,
                self.bus_malformed,
            )

    def _deliver_message(self, conversation_id: int, seq: int, payload: bytes) -> None:
        self.hub.deliver(conversation_id, seq, payload)

    def _catch_up(self) -> None:
        """After an outage, fetch what other nodes committed while we could not hear them."""
        for conversation_id in self.hub.rooms():
            self._sequencer.catch_up(conversation_id)

    async def _watch_outage(self) -> None:
        """Close local sockets with 1001 once the bus has been down for ``grace_s``, unless a
        last check finds Redis answering again (the listener then reconnects within 250 ms)."""
        while True:
            await asyncio.sleep(min(1.0, self._grace_s / 2))
            if self._within_grace() or self._on_outage is None:
                continue
            hub = self.hub
            if not (hub.rooms() or hub.users()):
                continue
            if await self._answers_ping():
                self._retry_now.set()
                continue
            if not self._within_grace():
                log.warning("redis down for %.1f s: closing sockets", self._grace_s)
                await self._on_outage()

    async def _answers_ping(self) -> bool:
        """Does Redis answer a PING on a fresh connection, within LAST_CHECK_TIMEOUT_S?"""
        client = aioredis.Redis.from_url(
            self._url,
            socket_connect_timeout=LAST_CHECK_TIMEOUT_S,
            socket_timeout=LAST_CHECK_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            async with asyncio.timeout(LAST_CHECK_TIMEOUT_S * 2):
                return bool(await client.ping())
        except (TimeoutError, aioredis.RedisError, OSError):
            return False
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()


class MalformedBusMessage(Exception):
    """A bus message this node cannot have published: dropped, counted and logged."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("redis operation failed: %s", task.exception())
