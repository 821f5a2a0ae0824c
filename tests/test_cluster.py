"""Several server processes on one database and one Redis (``TRUSTMESS_BROKER=redis://…``).

Each node is a real ``python -m trustmess`` process. The tests check the promises of
protocol/README.md §8 across nodes: a message reaches sockets on every node once and in seq
order, even with senders on every node at once; read, typing and per-user events cross nodes;
and neither a Redis outage nor a SIGKILLed node loses an acknowledged message, for clients
that follow §9 (reconnect to any node, ``join`` with ``since``, resend unanswered messages with
the same ``client_msg_id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp import WSMsgType

from tests.conftest import (
    JWT_SECRET,
    RedisProcess,
    SocketClient,
    User,
    eventually,
    message_frame,
)
from tests.serverproc import Server, start_server
from tests.test_broker_outbox import publish_denied, redis_user
from trustmess.cluster.redis_broker import channel_prefix
from trustmess.loadtest import LoadConfig, run_load
from trustmess.loadtest.report import result_json

StartNodes = Callable[..., Awaitable[list[Server]]]


@pytest.fixture
async def start_nodes(database_url: str, redis_url: str) -> AsyncIterator[StartNodes]:
    """Start server processes on the test database and the test Redis (killed at the end)."""
    started: list[Server] = []

    async def start(count: int, **settings: str) -> list[Server]:
        env = {
            "TRUSTMESS_DATABASE_URL": database_url,
            "TRUSTMESS_JWT_SECRET": JWT_SECRET,
            "TRUSTMESS_BROKER": redis_url,
            "TRUSTMESS_WS_RATE_PER_S": "100000",
            "TRUSTMESS_WS_BURST": "100000",
            "TRUSTMESS_POOL_MIN": "1",
            "TRUSTMESS_POOL_MAX": "8",
            **{"TRUSTMESS_" + name.upper(): value for name, value in settings.items()},
        }
        nodes = await asyncio.gather(*(start_server(env) for _ in range(count)))
        started.extend(nodes)
        return list(nodes)

    yield start
    for index, node in enumerate(started):
        await node.kill()
        # Shown by pytest only when the test failed.
        print(f"----- node {index} ({node.url}) log -----\n" + "".join(node.log[-200:]))


async def open_socket(session: aiohttp.ClientSession, node: Server, user: User) -> SocketClient:
    sock = SocketClient(await session.ws_connect(node.url + "/ws", headers=user.headers))
    hello = await sock.recv()
    assert hello["type"] == "hello", hello
    return sock


async def join(sock: SocketClient, cid: int, **extra: Any) -> dict[str, Any]:
    reply = await sock.request({"type": "join", "conversation_id": cid, **extra})
    assert reply["type"] == "reply", reply
    data: dict[str, Any] = reply["data"]
    return data


async def joined_socket(
    session: aiohttp.ClientSession, node: Server, user: User, cid: int
) -> SocketClient:
    sock = await open_socket(session, node, user)
    await join(sock, cid)
    return sock


async def message_seqs(sock: SocketClient, through: int, timeout: float = 10.0) -> list[int]:
    """Seqs of the message events ``sock`` receives, up to and including seq ``through``."""
    seqs: list[int] = []
    async with asyncio.timeout(timeout):
        while not seqs or seqs[-1] < through:
            seqs.append((await sock.recv_type("message", timeout))["seq"])
    return seqs


@pytest.mark.parametrize("node_count", [2, 3])
async def test_a_message_reaches_sockets_on_every_node_once_in_seq_order(
    node_count, start_nodes, make_user, make_group
) -> None:
    nodes = await start_nodes(node_count)
    alice, bob, carol = [await make_user() for _ in range(3)]
    cid = await make_group(alice, bob, carol)
    async with aiohttp.ClientSession() as session:
        sender = await open_socket(session, nodes[0], alice)
        receivers = [
            await open_socket(session, node, user) for node in nodes[1:] for user in (bob, carol)
        ]
        # The sender's own other device, on another node.
        receivers.append(await open_socket(session, nodes[-1], alice))
        for sock in [sender, *receivers]:
            assert (await join(sock, cid))["last_seq"] == 0
        for n in range(1, 6):
            reply = await sender.request(message_frame(cid, f"m{n}"))
            assert reply["type"] == "reply" and reply["data"]["seq"] == n, reply
        for sock in [sender, *receivers]:
            assert await message_seqs(sock, 5) == [1, 2, 3, 4, 5]
        # Exactly once: the next message event each socket sees is the next message.
        assert (await sender.request(message_frame(cid, "m6")))["data"]["seq"] == 6
        for sock in [sender, *receivers]:
            event = await sock.recv_type("message")
            assert (event["seq"], event["client_msg_id"]) == (6, "m6")
            assert event["sender_id"] == alice.id and event["body"] == "body of m6"


async def test_concurrent_senders_on_three_nodes_give_every_socket_one_gapless_stream(
    start_nodes, make_user, make_group, db
) -> None:
    per_sender = 100
    nodes = await start_nodes(3)
    senders = [await make_user() for _ in nodes]
    readers = [await make_user() for _ in nodes]
    cid = await make_group(*senders, *readers)
    total = per_sender * len(senders)
    async with aiohttp.ClientSession() as session:
        sending = [
            await open_socket(session, node, user)
            for node, user in zip(nodes, senders, strict=True)
        ]
        # Every reader has a socket on every node.
        reading = [await open_socket(session, node, user) for node in nodes for user in readers]
        for sock in sending + reading:
            await join(sock, cid)

        async def send_all(index: int, sock: SocketClient) -> None:
            for n in range(per_sender):
                frame = message_frame(cid, f"s{index}-{n}")
                await sock.send({**frame, "ref": frame["client_msg_id"]})

        async def collect(sock: SocketClient, replies_expected: int) -> tuple[list[int], list[int]]:
            seqs: list[int] = []
            replied: list[int] = []
            while len(seqs) < total or len(replied) < replies_expected:
                frame = await sock.recv(timeout=20)
                if frame["type"] == "message":
                    seqs.append(frame["seq"])
                elif frame["type"] == "reply":
                    replied.append(frame["data"]["seq"])
                else:
                    raise AssertionError(f"unexpected frame {frame}")
            return seqs, replied

        collectors = [asyncio.create_task(collect(s, per_sender)) for s in sending]
        collectors += [asyncio.create_task(collect(s, 0)) for s in reading]
        await asyncio.gather(*(send_all(i, s) for i, s in enumerate(sending)))
        async with asyncio.timeout(60):
            results = await asyncio.gather(*collectors)
    everything = list(range(1, total + 1))
    for index, (seqs, _) in enumerate(results):
        assert seqs == everything, f"socket {index}: not the gapless stream 1..{total}"
    acked = sorted(seq for _, replied in results for seq in replied)
    assert acked == everything
    stored = [r["seq"] for r in await db.fetch("SELECT seq FROM messages ORDER BY seq")]
    assert stored == everything


async def test_read_and_typing_events_cross_nodes(start_nodes, chat) -> None:
    node_a, node_b = await start_nodes(2)
    alice, bob, cid = chat
    async with aiohttp.ClientSession() as session:
        a = await open_socket(session, node_a, alice)
        b = await open_socket(session, node_b, bob)
        b_phone = await open_socket(session, node_a, bob)
        for sock in (a, b, b_phone):
            await join(sock, cid)
        assert (await a.request(message_frame(cid, "hello")))["data"]["seq"] == 1
        assert (await b.recv_type("message"))["seq"] == 1

        assert (await b.request({"type": "ack", "conversation_id": cid, "seq": 1}))["data"] == {
            "conversation_id": cid,
            "read_seq": 1,
        }
        read = {"type": "read", "conversation_id": cid, "user_id": bob.id, "seq": 1}
        assert await a.recv_type("read") == read
        # Bob's other device, on the other node, hears it too.
        assert await b_phone.recv_type("read") == read

        await a.send({"type": "typing", "conversation_id": cid})
        start = {"type": "typing", "conversation_id": cid, "user_id": alice.id, "state": "start"}
        assert await b.recv_type("typing") == start
        assert await b_phone.recv_type("typing") == start
        await a.send({"type": "typing", "conversation_id": cid, "state": "stop"})
        assert await b.recv_type("typing") == {**start, "state": "stop"}


async def test_conversation_and_removed_events_reach_users_on_other_nodes(
    start_nodes, make_user, make_group
) -> None:
    node_a, node_b = await start_nodes(2)
    alice, bob, carol = [await make_user() for _ in range(3)]
    cid = await make_group(alice, bob)
    async with aiohttp.ClientSession() as session:
        a = await open_socket(session, node_a, alice)
        b = await open_socket(session, node_b, bob)
        c = await open_socket(session, node_b, carol)
        for sock in (a, b):
            await join(sock, cid)
        refused = await c.request(message_frame(cid, "too-early"))
        assert refused["type"] == "error" and refused["code"] == "not_found"

        url = f"{node_a.url}/conversations/{cid}/members"
        async with session.post(url, json={"user_ids": [carol.id]}, headers=alice.headers) as r:
            assert r.status == 200, await r.text()
        event = await c.recv_type("conversation")  # the newcomer gets the whole conversation
        assert event["id"] == cid
        assert sorted(m["id"] for m in event["members"]) == sorted([alice.id, bob.id, carol.id])
        update = await b.recv_type("conversation_update")  # the others, who joined
        assert update["conversation_id"] == cid
        assert [m["id"] for m in update["members"]] == [carol.id]
        # Node B forgot its cached "not a member" answer.
        assert (await join(c, cid))["last_seq"] == 0
        assert (await c.request(message_frame(cid, "now-a-member")))["data"]["seq"] == 1
        assert (await a.recv_type("message"))["client_msg_id"] == "now-a-member"

        url = f"{node_a.url}/conversations/{cid}/members/{carol.id}"
        async with session.delete(url, headers=alice.headers) as r:
            assert r.status == 204, await r.text()
        assert await c.recv_type("removed") == {"type": "removed", "conversation_id": cid}
        assert (await a.request(message_frame(cid, "after-removal")))["data"]["seq"] == 2
        assert await message_seqs(b, 2) == [1, 2]
        # Carol's node delivered seq 2 to Bob already; had it been queued for Carol too, it
        # would come before the answer to this ping.
        await c.request({"type": "ping"})
        assert not [f for f in c.backlog if f["type"] == "message" and f["seq"] == 2]


async def wait_ready(node: Server, timeout: float, status: int = 200) -> None:
    """Poll ``GET /readyz`` until it answers ``status`` (200 ready, 503 not)."""
    async with aiohttp.ClientSession() as session:

        async def answers() -> bool:
            async with session.get(node.url + "/readyz") as resp:
                return resp.status == status

        await eventually(answers, timeout, f"/readyz to answer {status}")


class Device:
    """A client following protocol/README.md §9 against a list of nodes.

    On a close it reconnects to the next node (backing off while refused), joins with ``since``
    = the highest seq it holds without a gap, and resends every unanswered message with the
    same ``client_msg_id``. It records the seqs each connection delivered, in order.
    """

    def __init__(
        self, session: aiohttp.ClientSession, user: User, cid: int, nodes: list[Server], first: int
    ) -> None:
        self.session = session
        self.user = user
        self.cid = cid
        self.nodes = nodes  # shared: a dead node is removed from it
        self.next_node = first
        self.connections: list[list[int]] = []  # message seqs per connection, delivery order
        self.close_codes: list[int | None] = []
        self.refused = 0
        self.resumed: list[bool] = []
        self.errors: list[dict[str, Any]] = []
        self.last_seq = 0  # highest seq received with no gap below it
        self.outbox: dict[str, str] = {}  # client_msg_id → body, not yet answered
        self.acked: dict[str, int] = {}  # client_msg_id → seq
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.changed = asyncio.Event()
        self.finished = False

    def __repr__(self) -> str:
        return (
            f"<Device user={self.user.id} last_seq={self.last_seq} outbox={len(self.outbox)} "
            f"acked={len(self.acked)} closes={self.close_codes} refused={self.refused} "
            f"errors={self.errors[:3]}>"
        )

    async def run(self) -> None:
        attempt = 0
        while not self.finished:
            node = self.nodes[self.next_node % len(self.nodes)]
            self.next_node += 1
            try:
                ws = await self.session.ws_connect(node.url + "/ws", headers=self.user.headers)
            except (aiohttp.ClientError, OSError, TimeoutError):
                # 503 while the node cannot reach the bus, refused when it is dead.
                self.refused += 1
                attempt += 1
                await asyncio.sleep(random.uniform(0, min(1.0, 0.05 * 2**attempt)))
                continue
            attempt = 0
            await self._serve(ws)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        if self.finished:
            await ws.close()
            return
        seqs: list[int] = []
        self.connections.append(seqs)
        self.ws = ws
        try:
            join = {"type": "join", "ref": "join", "conversation_id": self.cid}
            await self._send({**join, "since": self.last_seq})
            for cmid, body in list(self.outbox.items()):
                await self._send({**message_frame(self.cid, cmid, body), "ref": cmid})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                self._receive(orjson.loads(msg.data), seqs)
        finally:
            self.ws = None
            if not self.finished:
                self.close_codes.append(ws.close_code)
            self.changed.set()

    def _receive(self, frame: dict[str, Any], seqs: list[int]) -> None:
        kind, ref = frame["type"], frame.get("ref")
        if kind == "message":
            seqs.append(frame["seq"])
            if frame["seq"] == self.last_seq + 1:
                self.last_seq = frame["seq"]
        elif kind == "reply" and ref == "join":
            self.resumed.append(frame["data"]["resumed"])
        elif kind == "reply" and ref in self.outbox:
            del self.outbox[ref]
            self.acked[ref] = frame["data"]["seq"]
        elif kind == "error":
            # `unavailable` (node shutting down): a close follows, the resend happens then.
            self.errors.append(frame)
        self.changed.set()

    async def _send(self, frame: dict[str, Any]) -> None:
        ws = self.ws
        if ws is not None and not ws.closed:
            # A message lost with the connection is resent on the next one.
            with contextlib.suppress(ConnectionError):
                await ws.send_str(orjson.dumps(frame).decode())

    async def send_messages(self, prefix: str, count: int, window: int = 5) -> None:
        """Send ``count`` messages, at most ``window`` of them unanswered at a time."""
        for n in range(count):
            await self.until(lambda: len(self.outbox) < window, timeout=60)
            if self.finished:
                return
            cmid = f"{prefix}-{n}"
            self.outbox[cmid] = f"body of {cmid}"
            await self._send({**message_frame(self.cid, cmid), "ref": cmid})

    async def until(self, predicate: Callable[[], bool], timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not predicate() and not self.finished:
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out: {self!r}") from None

    async def finish(self) -> None:
        self.finished = True
        self.changed.set()
        if self.ws is not None:
            await self.ws.close()


@contextlib.asynccontextmanager
async def running_devices(
    users: list[User], cid: int, nodes: list[Server]
) -> AsyncIterator[list[Device]]:
    """One connected, joined device per user, device i starting on node i (round robin)."""
    async with aiohttp.ClientSession() as session:
        devices = [Device(session, user, cid, nodes, i) for i, user in enumerate(users)]
        tasks = [asyncio.create_task(device.run()) for device in devices]
        try:
            for device in devices:
                await device.until(lambda d=device: bool(d.resumed), timeout=20)
            yield devices
        finally:
            for device in devices:
                await device.finish()
            _, pending = await asyncio.wait(tasks, timeout=10)
            for task in pending:
                task.cancel()
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, Exception):
                    raise result


async def send_through(
    devices: list[Device], disrupt: Callable[[], Awaitable[None]], per_sender: int = 150
) -> None:
    """The first three devices send (20 each, then ``per_sender`` each); ``disrupt`` runs once
    each has 40 answers. Returns when every message is answered and every device has all."""
    senders = devices[:3]
    await asyncio.gather(*(d.send_messages(f"before{i}", 20) for i, d in enumerate(senders)))
    async with asyncio.TaskGroup() as group:
        for i, device in enumerate(senders):
            group.create_task(device.send_messages(f"during{i}", per_sender))
        for device in senders:
            await device.until(lambda d=device: len(d.acked) >= 40, timeout=20)
        await disrupt()
    for device in senders:
        await device.until(lambda d=device: not d.outbox, timeout=30)
    newest = max(seq for device in senders for seq in device.acked.values())
    for device in devices:
        await device.until(lambda d=device: d.last_seq >= newest, timeout=30)


async def assert_nothing_acknowledged_was_lost(devices: list[Device], db: Any) -> None:
    """Every acknowledged message is stored and reached every device once, in order."""
    acked = {cmid: seq for device in devices for cmid, seq in device.acked.items()}
    assert all(not device.outbox for device in devices), devices
    assert len(set(acked.values())) == len(acked), "two messages acknowledged with one seq"
    rows = await db.fetch("SELECT seq, client_msg_id FROM messages ORDER BY seq")
    assert {r["client_msg_id"]: r["seq"] for r in rows} == acked
    everything = list(range(1, len(acked) + 1))
    assert [r["seq"] for r in rows] == everything
    for device in devices:
        assert all(device.resumed), f"a join was not resumed: {device!r}"
        for seqs in device.connections:
            # In seq order without a duplicate or a gap on each connection ...
            assert seqs == sorted(set(seqs)), f"out of order or twice: {device!r}"
            assert not seqs or seqs[-1] - seqs[0] + 1 == len(seqs), f"a gap: {device!r}"
        # ... and, resuming with `since`, nothing twice and nothing missing across them.
        delivered = [seq for seqs in device.connections for seq in seqs]
        assert delivered == everything, f"{device!r} got {len(delivered)} of {len(everything)}"


async def test_redis_outage_loses_no_acknowledged_message(
    redis_process: RedisProcess | None, start_nodes, make_user, make_group, db
) -> None:
    if redis_process is None:
        pytest.skip("stopping Redis needs the tests' own redis-server (TRUSTMESS_TEST_REDIS_URL)")
    nodes = await start_nodes(3, broker_grace_s="1", replay_limit="100000")
    users = [await make_user() for _ in range(6)]
    cid = await make_group(*users)

    async def outage() -> None:
        # Stopped and started from this (the main) thread: PR_SET_PDEATHSIG ties the server to
        # the thread that forked it, and an executor thread exits at the end of the test.
        redis_process.stop()
        # After the grace period every node closes its sockets with 1001 ...
        for device in devices:
            await device.until(lambda d=device: bool(d.close_codes), timeout=20)
        # ... and reports itself unready while the bus is down.
        async with aiohttp.ClientSession() as session:
            for node in nodes:
                async with session.get(node.url + "/readyz") as resp:
                    body = await resp.json()
                    assert resp.status == 503, body
                    assert body["checks"]["broker"] == "redis unreachable", body
        redis_process.start()
        # Each node reconnects on its own backoff (up to 5 s); clients meanwhile resume on
        # whichever node accepts them first.
        for node in nodes:
            await wait_ready(node, timeout=20)

    async with running_devices(users, cid, nodes) as devices:
        await send_through(devices, outage)
    for device in devices:
        assert set(device.close_codes) == {1001}, device
    await assert_nothing_acknowledged_was_lost(devices, db)


async def test_a_redis_outage_shorter_than_the_grace_period_closes_nothing(
    redis_process: RedisProcess | None, start_nodes, make_user, make_group, db
) -> None:
    """Redis down for 80% of the grace period: every node reconnects within 250 ms of Redis
    coming back, no socket is closed, and the events held in the outboxes meanwhile reach the
    other node in order, so no client has to resume or backfill."""
    if redis_process is None:
        pytest.skip("stopping Redis needs the tests' own redis-server (TRUSTMESS_TEST_REDIS_URL)")
    grace_s = 5.0
    nodes = await start_nodes(2, broker_grace_s=str(grace_s))
    users = [await make_user() for _ in range(4)]
    cid = await make_group(*users)

    async def outage() -> None:
        started = asyncio.get_running_loop().time()
        redis_process.stop()
        for node in nodes:
            await wait_ready(node, timeout=20, status=503)
        # The outage itself: a deliberate 80% of the grace period, not a wait for a condition.
        await asyncio.sleep(started + 0.8 * grace_s - asyncio.get_running_loop().time())
        redis_process.start()
        for node in nodes:
            await wait_ready(node, timeout=20)

    async with running_devices(users, cid, nodes) as devices:
        await send_through(devices, outage)
    for device in devices:
        assert device.close_codes == [], device
        assert len(device.connections) == 1, f"reconnected: {device!r}"
    await assert_nothing_acknowledged_was_lost(devices, db)


async def test_changes_made_during_a_redis_outage_reach_sockets_that_stayed(
    redis_process: RedisProcess | None, start_nodes, make_user, make_group
) -> None:
    """Within the grace period sockets stay open; what changed meanwhile on another node
    (a member removed, an account disabled) must take effect on them once Redis is back."""
    if redis_process is None:
        pytest.skip("stopping Redis needs the tests' own redis-server (TRUSTMESS_TEST_REDIS_URL)")
    node_a, node_b = await start_nodes(2, broker_grace_s="300")
    admin = await make_user(is_admin=True)
    alice, bob, carol, dave = [await make_user() for _ in range(4)]
    cid = await make_group(alice, bob, carol, dave)
    async with aiohttp.ClientSession() as session:
        b, c, d = [await open_socket(session, node_b, user) for user in (bob, carol, dave)]
        for sock in (b, c, d):
            await join(sock, cid)
        redis_process.stop()
        for node in (node_a, node_b):
            await wait_ready(node, timeout=20, status=503)
        url = f"{node_a.url}/conversations/{cid}/members/{bob.id}"
        async with session.delete(url, headers=alice.headers) as r:
            assert r.status == 204, await r.text()
        url = f"{node_a.url}/admin/users/{carol.id}"
        async with session.patch(url, json={"is_active": False}, headers=admin.headers) as r:
            assert r.status == 200, await r.text()
        redis_process.start()
        for node in (node_a, node_b):
            await wait_ready(node, timeout=20)

        assert await b.recv_type("removed", timeout=20) == {
            "type": "removed",
            "conversation_id": cid,
        }
        assert await c.closed(timeout=20) == 4001
        url = f"{node_a.url}/conversations/{cid}/messages"
        body = {"client_msg_id": "after-outage", "body": "bob is gone"}
        async with session.post(url, json=body, headers=alice.headers) as r:
            assert r.status == 201, await r.text()
        assert (await d.recv_type("message", timeout=20))["client_msg_id"] == "after-outage"
        # Node B delivered it to Dave already; had it been queued for Bob too, it would come
        # before the answer to this ping.
        await b.request({"type": "ping"})
        assert not [f for f in b.backlog if f["type"] == "message"]


async def test_killed_node_loses_no_acknowledged_message(
    start_nodes, make_user, make_group, db
) -> None:
    nodes = await start_nodes(3, replay_limit="100000")
    users = [await make_user() for _ in range(6)]
    cid = await make_group(*users)
    victim = nodes[2]

    async def kill() -> None:
        nodes.remove(victim)  # clients reconnect to the survivors only
        await victim.kill()

    async with running_devices(users, cid, nodes) as devices:
        await send_through(devices, kill)
    # Devices 2 and 5 started on the victim: they moved; nobody else was disturbed.
    for index, device in enumerate(devices):
        if index % 3 == 2:
            assert len(device.connections) >= 2, device
        else:
            assert device.close_codes == [], f"a survivor's client was disconnected: {device!r}"
    await assert_nothing_acknowledged_was_lost(devices, db)


class RedisRelay:
    """A TCP relay between a node and Redis that a test can cut (connections closed, new ones
    refused) or black-hole (connections stay open and bytes vanish: a partition, no reset)."""

    def __init__(self, redis_url: str) -> None:
        parts = urlsplit(redis_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.path = parts.path
        self.mode = "pass"
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}{self.path}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    def cut(self) -> None:
        self.mode = "cut"
        self._close_all()

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def heal(self) -> None:
        # Black-holed connections lost bytes mid-stream: they are useless now.
        self._close_all()
        self.mode = "pass"

    def close(self) -> None:
        self._close_all()
        if self.server is not None:
            self.server.close()

    def _close_all(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "cut":
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(
            self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            w.close()
            self.writers.discard(w)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.mode == "pass":
                    writer.write(data)
                    await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def redis_relay(redis_url: str) -> AsyncIterator[RedisRelay]:
    relay = RedisRelay(redis_url)
    await relay.start()
    yield relay
    relay.close()


async def test_a_message_whose_publish_failed_still_reaches_the_other_node(
    redis_process: RedisProcess | None, redis_url: str, start_nodes, chat
) -> None:
    """Node A commits and acknowledges a message but its PUBLISH fails (once Redis takes
    PUBLISH away from A's user). No later message follows: B must still get it, once A can
    publish again, not only when a later seq would reveal the gap."""
    if redis_process is None:
        pytest.skip("creates a Redis ACL user: needs the tests' own redis-server")
    async with redis_user(redis_url) as (url_a, admin):
        [node_a] = await start_nodes(1, broker=url_a)
        [node_b] = await start_nodes(1)
        alice, bob, cid = chat
        async with aiohttp.ClientSession() as session:
            a = await joined_socket(session, node_a, alice, cid)
            b = await joined_socket(session, node_b, bob, cid)
            await admin.execute_command("ACL", "SETUSER", urlsplit(url_a).username, "-publish")
            assert (await a.request(message_frame(cid, "m1")))["data"]["seq"] == 1
            await publish_denied(admin, url_a)
            await admin.execute_command("ACL", "SETUSER", urlsplit(url_a).username, "+publish")
            event = await b.recv_type("message", timeout=10)
            assert (event["seq"], event["client_msg_id"]) == (1, "m1")


async def test_a_message_sent_while_its_node_is_cut_off_reaches_the_other_node(
    redis_relay: RedisRelay, start_nodes, chat
) -> None:
    """Node A alone loses Redis for a moment (B never notices, so B never catches up from
    PostgreSQL): what A committed meanwhile reaches B once A is back."""
    [node_a] = await start_nodes(1, broker=redis_relay.url, broker_grace_s="300")
    [node_b] = await start_nodes(1)
    alice, bob, cid = chat
    async with aiohttp.ClientSession() as session:
        a = await joined_socket(session, node_a, alice, cid)
        b = await joined_socket(session, node_b, bob, cid)
        redis_relay.cut()
        await wait_ready(node_a, timeout=20, status=503)
        assert (await a.request(message_frame(cid, "m1")))["data"]["seq"] == 1
        redis_relay.heal()
        await wait_ready(node_a, timeout=20)
        event = await b.recv_type("message", timeout=10)
        assert (event["seq"], event["client_msg_id"]) == (1, "m1")


async def test_a_silent_redis_link_is_noticed_and_replaced(
    redis_relay: RedisRelay, start_nodes
) -> None:
    """A partition without a reset: the node's sockets to Redis stay open and nothing comes
    back. The node must count the bus as lost (unready, then the grace-period close) within
    seconds, and reconnect once the link heals."""
    [node] = await start_nodes(1, broker=redis_relay.url, broker_grace_s="300")
    await wait_ready(node, timeout=20)
    redis_relay.blackhole()
    await wait_ready(node, timeout=15, status=503)
    redis_relay.heal()
    await wait_ready(node, timeout=20)


def test_channel_names_carry_the_redis_database() -> None:
    # Redis pub/sub ignores the database number: deployments on /1 and /2 must not mix.
    assert channel_prefix("redis://h:6379/1") != channel_prefix("redis://h:6379/2")
    assert channel_prefix("redis://h:6379") == channel_prefix("redis://h:6379/0") == "tm0:"


async def test_concurrent_edits_and_a_delete_from_two_nodes_converge(start_nodes, chat, db) -> None:
    """Edits of one message from two nodes at once, then edits racing a delete: every socket
    on either node sees one gapless stream of change entries, the same one, and applying it
    gives the stored state (the last edit's body, then the tombstone)."""
    alice, bob, cid = chat
    nodes = await start_nodes(2)
    edits = 15
    async with aiohttp.ClientSession() as session:
        writers = [await joined_socket(session, node, alice, cid) for node in nodes]
        watchers = [await joined_socket(session, node, bob, cid) for node in nodes]
        reply = await writers[0].request(message_frame(cid, "m1", "original"))
        assert reply["data"]["seq"] == 1

        def edit(index: int, n: int) -> dict[str, Any]:
            body = f"node{index}-edit{n}"
            return {"type": "edit", "conversation_id": cid, "target_seq": 1, "body": body}

        async def fire(index: int, frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
            """Send every frame at once, then collect their answers (in the order sent)."""
            sock = writers[index]
            refs = [f"w{index}-{n}-{random.random()}" for n in range(len(frames))]
            for ref, frame in zip(refs, frames, strict=True):
                await sock.send({**frame, "ref": ref})
            answers: dict[str, dict[str, Any]] = {}
            async with asyncio.timeout(20):
                while len(answers) < len(refs):
                    frame = await sock.recv()
                    if frame.get("ref") in refs:
                        answers[frame["ref"]] = frame
            return [answers[ref] for ref in refs]

        async def changes(sock: SocketClient, count: int) -> list[dict[str, Any]]:
            return [await sock.recv_type("change", timeout=20) for _ in range(count)]

        # Round 1: 2 x 15 concurrent edits.
        answers = await asyncio.gather(
            *(fire(i, [edit(i, n) for n in range(edits)]) for i in range(2))
        )
        assert all(a["type"] == "reply" for batch in answers for a in batch), answers
        streams = [await changes(sock, 2 * edits) for sock in watchers]
        expected = list(range(2, 2 + 2 * edits))
        for stream in streams:
            assert [event["seq"] for event in stream] == expected
        assert streams[0] == streams[1]
        stored = await db.fetchval("SELECT body FROM messages WHERE seq = 1")
        assert streams[0][-1]["body"] == stored

        # Round 2: edits from node 0 racing one delete from node 1.
        racing = fire(0, [edit(0, 100 + n) for n in range(edits)])
        deleting = fire(1, [{"type": "delete", "conversation_id": cid, "target_seq": 1}])
        edit_answers, [deleted] = await asyncio.gather(racing, deleting)
        assert deleted["type"] == "reply" and deleted["data"]["seq"] is not None
        applied = [a for a in edit_answers if a["type"] == "reply"]
        refused = [a for a in edit_answers if a["type"] == "error"]
        assert all(a["message"] == "message was deleted" for a in refused), refused
        # Every edit that was applied came before the delete in the stream.
        assert all(a["data"]["seq"] < deleted["data"]["seq"] for a in applied)
        count = len(applied) + 1
        streams = [await changes(sock, count) for sock in watchers]
        assert streams[0] == streams[1]
        assert [e["seq"] for e in streams[0]] == list(
            range(expected[-1] + 1, expected[-1] + 1 + count)
        )
        assert streams[0][-1]["kind"] == "delete"
    row = await db.fetchrow("SELECT body, deleted_at FROM messages WHERE seq = 1")
    assert row["body"] is None and row["deleted_at"] is not None


async def test_the_sequencer_fills_a_missing_change_entry_from_the_database(
    start_nodes, chat, db
) -> None:
    """A change committed but never published (its node died right after the commit): the
    next entry reveals the gap, and the node reads the change from PostgreSQL, encoded as the
    `change` event it would have been, before delivering what follows."""
    alice, bob, cid = chat
    [node] = await start_nodes(1, broker_gap_ms="50")
    async with aiohttp.ClientSession() as session:
        sender = await joined_socket(session, node, alice, cid)
        watcher = await joined_socket(session, node, bob, cid)
        assert (await sender.request(message_frame(cid, "m1", "first")))["data"]["seq"] == 1
        assert (await watcher.recv_type("message"))["seq"] == 1
        # What apply_changes commits for an edit, with nobody told.
        async with db.transaction():
            await db.execute("UPDATE conversations SET last_seq = 2 WHERE id = $1", cid)
            await db.execute(
                "INSERT INTO message_changes (conversation_id, seq, kind, target_seq, user_id,"
                " client_change_id) VALUES ($1, 2, 'edit', 1, $2, 'lost-1')",
                cid,
                alice.id,
            )
            await db.execute("UPDATE messages SET body = 'edited', edited_at = now() WHERE seq = 1")
        assert (await sender.request(message_frame(cid, "m2", "second")))["data"]["seq"] == 3
        filled = await watcher.recv_where(lambda f: f["type"] in ("message", "change"), 10)
        after = await watcher.recv_where(lambda f: f["type"] in ("message", "change"), 10)
    assert (filled["type"], filled["seq"], filled["kind"]) == ("change", 2, "edit")
    assert (filled["body"], filled["client_change_id"], filled["target_seq"]) == (
        "edited",
        "lost-1",
        1,
    )
    assert (after["type"], after["seq"]) == ("message", 3)


async def test_the_load_tester_resumes_through_a_killed_node_and_loses_nothing(
    start_nodes, database_url
) -> None:
    """bench/faults.py in small: under steady load, SIGKILL one of two nodes; the load tester's
    clients (--reconnect) move to the survivor, and its verification (every stored message
    read back) finds nothing lost, nothing delivered twice, no gap."""
    nodes = await start_nodes(
        2, auth_burst="1000", auth_rate_per_s="1000", bcrypt_rounds="4", replay_limit="100000"
    )
    config = LoadConfig(
        url=nodes[0].url,
        ws_urls=(nodes[0].url, nodes[1].url),
        prefix="faults",
        users=8,
        groups=2,
        group_size=4,
        rate=200.0,
        arrival="fixed",
        warmup=0.2,
        duration=4.0,
        reconnect=True,
    )
    run = asyncio.create_task(run_load(config))
    db = await asyncpg.connect(database_url)
    try:

        async def under_load() -> bool:
            return int(await db.fetchval("SELECT count(*) FROM messages")) >= 100

        await eventually(under_load, 30, "the load to start")
    finally:
        await db.close()
    await nodes[1].kill()
    result = await run
    data = result_json(result)
    assert result.verification.ok, result.verification.examples
    assert data["verification"]["checked"]["history_checked"]
    # The four sockets of node 2 (round-robin) lost their node and came back through node 1.
    assert data["close_codes"] == {"1006": 4}
    assert data["sockets"]["reconnects"]["reconnect_us"]["count"] == 4
    assert data["sockets"]["reconnects"]["not_resumed"] == 0
    # Deliveries between the sockets that stayed up, sent meanwhile, are reported apart.
    others = data["sockets"]["reconnects"]["others_delivery_us"]
    assert others.get("count", 0) <= data["totals"]["deliveries"]
    assert data["totals"]["replies"] == data["verification"]["checked"]["stored_rows"]
