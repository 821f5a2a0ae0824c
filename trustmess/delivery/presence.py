"""Presence: who is online, pushed to the people allowed to see it.

A user is online while they have at least one socket on any node. This node counts its own
sockets per user; the :class:`PresenceDirectory` (one process: :class:`LocalDirectory`; several:
``cluster.redis_presence.RedisPresenceDirectory``) knows which nodes have the user, and says
when the first node gains or the last loses them: only those transitions are events.

Churn is coalesced twice. A user whose last socket here closes stays registered for
``grace_s``, so a reconnect within it (to any node) is no offline/online pair. And the changes
go through one worker task that takes everything pending at once: one directory round trip,
one SQL statement for every audience it needs (``store.presence.relations``), one statement
for the ``last_seen`` of every user that went offline. Nothing here runs per message.

An event travels as a control operation (every node runs it): ``{"op": "presence",
"user_id", "status", "last_seen", "audience"}``; each node hands the encoded event to the
sockets of the audience it has. The audience of a user online here is computed when they
connect and cached until membership (or contacts, or the setting) changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from array import array
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg

from trustmess.delivery.broker import Subscriber
from trustmess.delivery.hub import Hub
from trustmess.errors import ApiError, ErrorCode
from trustmess.models import format_ts
from trustmess.store import presence as store
from trustmess.wire import events

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1.0
# After a wake-up the worker waits this long for more changes: a connect storm (a node's
# restart, a network blip) is a few steps a second, not one query per socket.
BATCH_WINDOW_S = 0.05
SNAPSHOT_TIMEOUT_S = 10.0

# (user_id, unix time their last socket closed)
Seen = tuple[int, float]
# Of two users, who may see the other's presence: (viewer, user) -> the user's last_seen.
Sight = dict[tuple[int, int], datetime | None]


class PresenceDirectory(Protocol):
    """Which users have a socket on some node: this node registers its own."""

    def bind(self, on_expired: Callable[[list[Seen]], None], on_lost: Callable[[], None]) -> None:
        """``on_expired``: users of a dead node went offline (with its last sign of life);
        ``on_lost``: this node's registrations were lost (it looked dead, or the store
        restarted): register them all again."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def join(self, user_ids: list[int]) -> list[int]:
        """Register the users on this node; those that were online nowhere before."""

    async def leave(self, user_ids: list[int]) -> list[int]:
        """Unregister the users from this node; those now online nowhere."""

    async def online_among(self, user_ids: list[int]) -> set[int]:
        """Which of ``user_ids`` are online on some node."""


class LocalDirectory:
    """One process is the whole cluster: what it registered is all that is online."""

    def __init__(self) -> None:
        self._online: set[int] = set()

    def bind(self, on_expired: Callable[[list[Seen]], None], on_lost: Callable[[], None]) -> None:
        """No other node can die, nothing can be lost."""

    async def start(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to disconnect from."""

    async def join(self, user_ids: list[int]) -> list[int]:
        new = [u for u in user_ids if u not in self._online]
        self._online.update(new)
        return new

    async def leave(self, user_ids: list[int]) -> list[int]:
        gone = [u for u in user_ids if u in self._online]
        self._online.difference_update(gone)
        return gone

    async def online_among(self, user_ids: list[int]) -> set[int]:
        return {u for u in user_ids if u in self._online}


def _iso(at: float | datetime | None) -> str | None:
    if at is None:
        return None
    if isinstance(at, float):
        at = datetime.fromtimestamp(at, UTC)
    return format_ts(at)


class Presence:
    """This node's side of presence: its users' sockets, the grace, the events."""

    def __init__(
        self, hub: Hub, pool: asyncpg.Pool, directory: PresenceDirectory, *, grace_s: float
    ) -> None:
        self._hub = hub
        self._pool = pool
        self._directory = directory
        self._grace_s = grace_s
        self._sockets: dict[int, set[Subscriber]] = {}
        self._grace: dict[int, asyncio.TimerHandle] = {}
        self._left_at: dict[int, float] = {}  # last socket closed, offline not yet published
        self._registered: set[int] = set()  # in the directory, for this node
        self._dirty: set[int] = set()
        self._expired: list[Seen] = []
        # Sockets here that asked for presence events (the ``presence`` command), by user.
        self._subscribed: dict[int, list[Subscriber]] = {}
        # The watchers of users registered here: (generation, user ids). 8 bytes an id (an
        # array, not a list of ints): an idle socket of a user with 50 contacts stays small.
        self._audiences: dict[int, tuple[int, array[int]]] = {}
        self._generation = 0
        # Sockets waiting for their snapshot (the reply to ``presence``).
        self._snapshots: dict[Subscriber, asyncio.Future[list[dict[str, Any]]]] = {}
        # While a step reads snapshots: the users an event was delivered about (a snapshot read
        # before that event must not contradict it).
        self._tracking = False
        self._evented: set[int] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.changes = 0  # presence events published by this node
        self.queries = 0  # relation queries run (one per step that needs audiences)
        directory.bind(self._on_expired, self._on_lost)

    # --- sockets (the gateway's registry) ------------------------------------------------

    def connected(self, conn: Subscriber) -> None:
        """A socket of ``conn.user_id`` opened here: its user may come online."""
        user_id = conn.user_id
        self._sockets.setdefault(user_id, set()).add(conn)
        timer = self._grace.pop(user_id, None)
        if timer is not None:
            timer.cancel()
        self._left_at.pop(user_id, None)
        # Even when registered: a step may be unregistering the user right now, and the next
        # one must then register them again.
        self._dirty.add(user_id)
        self._wake.set()

    def disconnected(self, conn: Subscriber) -> None:
        """A socket closed (may be called twice for one socket): after the grace, its user
        leaves this node."""
        user_id = conn.user_id
        conns = self._sockets.get(user_id)
        if conns is None or conn not in conns:
            return
        conns.discard(conn)
        subscribed = self._subscribed.get(user_id)
        if subscribed is not None and conn in subscribed:
            subscribed.remove(conn)
            if not subscribed:
                del self._subscribed[user_id]
        if conns:
            return
        del self._sockets[user_id]
        self._left_at[user_id] = _now()
        if self._grace_s > 0:
            loop = asyncio.get_running_loop()
            self._grace[user_id] = loop.call_later(self._grace_s, self._grace_over, user_id)
        else:
            self._grace_over(user_id)

    def _grace_over(self, user_id: int) -> None:
        self._grace.pop(user_id, None)
        self._dirty.add(user_id)
        self._wake.set()

    def _wanted(self, user_id: int) -> bool:
        """Should this node have the user registered (a socket, or within the grace)?"""
        return user_id in self._sockets or user_id in self._grace

    # --- the directory's callbacks -------------------------------------------------------

    def _on_expired(self, seen: list[Seen]) -> None:
        self._expired.extend(seen)
        self._wake.set()

    def _on_lost(self) -> None:
        self._dirty.update(self._registered)
        self._registered.clear()
        self._wake.set()

    # --- the worker ----------------------------------------------------------------------

    async def start(self) -> None:
        await self._directory.start()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="presence")

    async def close(self) -> None:
        """Stop; the users still here were last seen now (another node, or this one when it
        starts again, publishes their offline: see the directory)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for timer in self._grace.values():
            timer.cancel()
        now = _now()
        seen = [(u, self._left_at.get(u, now)) for u in self._registered]
        with contextlib.suppress(Exception):
            await store.write_last_seen(self._pool, [(u, _dt(at)) for u, at in seen])
        await self._directory.close()

    async def _run(self) -> None:
        failing = False
        while True:
            await self._wake.wait()
            await asyncio.sleep(BATCH_WINDOW_S)
            self._wake.clear()
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Once per outage (Redis or PostgreSQL down), not once per retry.
                if not failing:
                    log.warning(
                        "presence update failed, retrying every %.0f s: %r", RETRY_AFTER_S, exc
                    )
                failing = True
                await asyncio.sleep(RETRY_AFTER_S)
                self._wake.set()
            else:
                if failing:
                    log.info("presence updates work again")
                failing = False

    async def _step(self) -> None:
        """Carry out everything pending: joins and leaves, events, last_seen, snapshots."""
        dirty, self._dirty = self._dirty, set()
        expired, self._expired = self._expired, []
        snapshots = [
            (c, f)
            for c, f in self._snapshots.items()
            if not f.done() and c in self._sockets.get(c.user_id, ())
        ]
        self._snapshots = {}
        self._tracking = bool(snapshots)
        self._evented.clear()
        try:
            await self._carry_out(dirty, expired, snapshots)
        except BaseException:
            for conn, future in snapshots:
                if not future.done():
                    self._snapshots.setdefault(conn, future)
            raise
        finally:
            self._tracking = False
            self._evented.clear()

    async def _carry_out(
        self,
        dirty: set[int],
        expired: list[Seen],
        snapshots: list[tuple[Subscriber, asyncio.Future[list[dict[str, Any]]]]],
    ) -> None:
        joins = sorted(u for u in dirty if self._wanted(u) and u not in self._registered)
        leaves = sorted(u for u in dirty if not self._wanted(u) and u in self._registered)
        try:
            came_online = await self._directory.join(joins) if joins else []
            self._registered.update(joins)
            went_offline = await self._directory.leave(leaves) if leaves else []
            self._registered.difference_update(leaves)
        except BaseException:
            # Try again: joins and leaves are idempotent.
            self._dirty.update(dirty)
            self._expired[:0] = expired
            raise
        offline: list[Seen] = [(u, self._left_at.pop(u, _now())) for u in went_offline]
        for user_id in leaves:
            self._left_at.pop(user_id, None)
            if user_id not in went_offline:
                self._audiences.pop(user_id, None)  # still online elsewhere: not ours to keep
        offline.extend(expired)
        # One statement for every audience and snapshot this step needs.
        readers = {c.user_id for c, _ in snapshots}
        needed = set(came_online) | readers
        needed.update(u for u, _ in offline if self._cached_audience(u) is None)
        watchers: dict[int, list[int]] = {}
        watched: dict[int, dict[int, datetime | None]] = {u: {} for u in readers}
        if needed:
            self.queries += 1
            async with self._pool.acquire() as db:
                found = await store.relations(db, needed)
                if offline:
                    await store.write_last_seen(db, [(u, _dt(at)) for u, at in offline])
            for rel in found:
                if rel.other_sees_owner:
                    watchers.setdefault(rel.owner, []).append(rel.other)
                if rel.owner in readers and rel.owner_sees_other:
                    watched[rel.owner][rel.other] = rel.other_last_seen
        elif offline:
            await store.write_last_seen(self._pool, [(u, _dt(at)) for u, at in offline])
        for user_id in needed:
            if user_id in self._registered:
                self._audiences[user_id] = (self._generation, array("q", watchers.get(user_id, ())))
        for user_id in came_online:
            self._publish(user_id, "online", None, watchers.get(user_id, []))
        for user_id, at in offline:
            cached = self._cached_audience(user_id)
            self._audiences.pop(user_id, None)
            audience = watchers.get(user_id, []) if cached is None else cached.tolist()
            self._publish(user_id, "offline", _iso(at), audience)
        if snapshots:
            everyone = sorted({u for seen in watched.values() for u in seen})
            online = await self._directory.online_among(everyone) if everyone else set()
            for conn, future in snapshots:
                if not future.done():
                    future.set_result(
                        [
                            _state(u, u in online, last_seen)
                            for u, last_seen in sorted(watched[conn.user_id].items())
                            if u not in self._evented
                        ]
                    )

    def _cached_audience(self, user_id: int) -> array[int] | None:
        cached = self._audiences.get(user_id)
        if cached is None or cached[0] != self._generation:
            return None
        return cached[1]

    def _publish(
        self, user_id: int, status: str, last_seen: str | None, audience: list[int]
    ) -> None:
        self.changes += 1
        if not audience:
            return  # nobody may see it: not even the other nodes hear of it
        self._hub.publish_control(
            {
                "op": "presence",
                "user_id": user_id,
                "status": status,
                "last_seen": last_seen,
                "audience": audience,
            }
        )

    # --- control operations (every node) -------------------------------------------------

    def deliver(self, op: dict[str, Any]) -> None:
        """A ``presence`` control operation: the event to this node's sockets of its audience."""
        user_id, status, last_seen, audience = (
            op["user_id"],
            op["status"],
            op["last_seen"],
            op["audience"],
        )
        if not (
            isinstance(user_id, int)
            and status in ("online", "offline", "hidden")
            and (last_seen is None or isinstance(last_seen, str))
            and isinstance(audience, list)
        ):
            raise ValueError("malformed presence operation")
        payload = events.presence(user_id, status, last_seen)
        if self._tracking:
            self._evented.add(user_id)
        subscribed = self._subscribed
        for viewer in audience:
            for conn in subscribed.get(viewer, ()):
                conn.deliver_user(payload)

    def forget_audiences(self, user_ids: Iterable[int] | None = None) -> None:
        """Membership, contacts or a setting changed: recompute audiences when next needed
        (all of them, or those of ``user_ids``)."""
        if user_ids is None:
            self._generation += 1
            return
        for user_id in user_ids:
            self._audiences.pop(user_id, None)

    # --- queries (the presence command, HTTP profiles) ------------------------------------

    async def subscribe(self, conn: Subscriber) -> list[dict[str, Any]]:
        """From now on ``conn`` gets the ``presence`` events of the users it may see; their
        presence now (the snapshot), leaving out users an event was delivered about meanwhile
        (that event, queued before the snapshot, is newer). Concurrent subscribes share the
        worker's next step: one query for all of them."""
        subscribed = self._subscribed.setdefault(conn.user_id, [])
        if conn not in subscribed:
            subscribed.append(conn)
        # A socket asking again before its snapshot came shares it (a flood of presence
        # commands is one query per step, not one each).
        future = self._snapshots.get(conn)
        if future is None:
            future = self._snapshots[conn] = asyncio.get_running_loop().create_future()
            self._wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(future), SNAPSHOT_TIMEOUT_S)
        except TimeoutError:
            raise ApiError(503, ErrorCode.UNAVAILABLE, "presence is unavailable, retry") from None

    async def is_online(self, user_id: int) -> bool:
        return bool(await self._directory.online_among([user_id]))

    def people_changed(self, user_ids: list[int]) -> None:
        """The contacts, the conversations (their memberships) or the setting of these users
        changed: every node recomputes their audiences when next needed."""
        self._hub.publish_control({"op": "presence_audience_changed", "user_ids": user_ids})

    def account_deleted(self, user_id: int, watchers: list[int]) -> None:
        """The account was deleted: ``watchers``, who could see its presence, get ``hidden``
        (a deleted account shows nothing); every node forgets its audience, so the offline of
        its last socket finds nobody to tell."""
        self.people_changed([user_id])
        self._publish(user_id, "hidden", None, watchers)

    async def visibility_changed(self, user_id: int, old: str, new: str) -> None:
        """The user changed ``presence_visibility``: people who may no longer see them get
        ``hidden``, people who now may get the current state; every node forgets the
        audience it cached."""
        self.people_changed([user_id])
        if old == new:
            return
        async with self._pool.acquire() as db:
            found = await store.relations(db, [user_id])
            last_seen = await store.last_seen_of(db, user_id)
        before = {r.other for r in found if store.shown_to(old, r.is_contact)}
        after = {r.other for r in found if store.shown_to(new, r.is_contact)}
        if before - after:
            self._publish(user_id, "hidden", None, sorted(before - after))
        if after - before:
            await self._publish_current(user_id, last_seen, sorted(after - before))

    async def sight(self, a: int, b: int) -> Sight:
        """Which of ``a`` and ``b`` may see the other's presence now."""
        found: Sight = {}
        async with self._pool.acquire() as db:
            for viewer, user in ((a, b), (b, a)):
                view = await store.view_of(db, user, viewer)
                if view.visible:
                    found[(viewer, user)] = view.last_seen
        return found

    async def sight_changed(self, a: int, b: int, before: Sight) -> None:
        """A block or a contact between ``a`` and ``b`` came or went (``before``: their
        :meth:`sight` before it): every node recomputes their audiences; the one who lost
        sight of the other gets ``hidden``, the one who gained it the current state, as for
        ``visibility_changed``."""
        self.people_changed([a, b])
        after = await self.sight(a, b)
        for viewer, user in sorted(before.keys() - after.keys()):
            self._publish(user, "hidden", None, [viewer])
        for (viewer, user), last_seen in sorted(after.items()):
            if (viewer, user) not in before:
                await self._publish_current(user, last_seen, [viewer])

    async def _publish_current(
        self, user_id: int, last_seen: datetime | None, audience: list[int]
    ) -> None:
        """The user's presence now, to an audience that had not been shown it."""
        if await self.is_online(user_id):
            self._publish(user_id, "online", None, audience)
        else:
            self._publish(user_id, "offline", _iso(last_seen), audience)

    # --- metrics ---------------------------------------------------------------------------

    def online_here(self) -> int:
        return len(self._registered)


def _state(user_id: int, online: bool, last_seen: datetime | None) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "status": "online" if online else "offline",
        "last_seen": None if online else _iso(last_seen),
    }


def _now() -> float:
    """Now, in whole milliseconds: the event and the stored ``last_seen`` then agree."""
    return int(time.time() * 1000) / 1000


def _dt(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)
