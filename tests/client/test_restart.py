"""A server restart under load, through the SDK: SIGTERM (or SIGKILL) the server while one
client sends 1,000 messages and another follows the conversation (and ``python -m
trustmess.client tail`` too), start it again on the same database and port. Every message is
stored once and reaches each follower once, in order; every ``send`` returns once, with the seq
the database holds."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator

import pytest

from tests.conftest import JWT_SECRET, TEST_PASSWORD, eventually
from tests.serverproc import Server, start_server
from trustmess.client import Client, Message, Reconnected, ReconnectPolicy, SentMessage
from trustmess.cluster.supervisor import free_port

COUNT = 1000
FAST = ReconnectPolicy(base_s=0.05, cap_s=0.5)

pytestmark = pytest.mark.slow


@pytest.fixture
async def server_env(database_url: str) -> dict[str, str]:
    return {
        "TRUSTMESS_DATABASE_URL": database_url,
        "TRUSTMESS_JWT_SECRET": JWT_SECRET,
        "TRUSTMESS_PORT": str(free_port("127.0.0.1")),
        "TRUSTMESS_WS_RATE_PER_S": "100000",
        "TRUSTMESS_WS_BURST": "100000",
        # A small replay window: the follower's resume after the restart also takes the HTTP
        # backfill path (resumed: false) when the sender got far ahead.
        "TRUSTMESS_REPLAY_LIMIT": "20",
        "TRUSTMESS_POOL_MIN": "1",
        "TRUSTMESS_POOL_MAX": "8",
    }


@pytest.fixture
async def servers() -> AsyncIterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        await server.kill()
        print("----- server log -----\n" + "".join(server.log[-100:]))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_restart_while_sending_and_following(
    signum, server_env, servers, make_user, make_group, db
) -> None:
    """SIGTERM: the server answers what it took and closes with 1001. SIGKILL: answers of
    committed messages are lost with the process, and the resends must not store them twice."""
    alice, bob = await make_user(), await make_user()
    cid = await make_group(alice, bob)
    servers.append(await start_server(server_env))
    url = servers[0].url
    sent: list[SentMessage] = []
    received: list[Message] = []
    tailed: list[int] = []
    reconnects: list[int | None] = []
    halfway = asyncio.Event()

    async with Client(url, reconnect=FAST) as sender, Client(url, reconnect=FAST) as follower:
        await sender.login(alice.username, TEST_PASSWORD)
        await follower.login(bob.username, TEST_PASSWORD)
        await follower.join(cid, since=0)
        tail = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trustmess.client", "--url", url, "--user", bob.username,
            "tail", str(cid), "--since", "0", "--json",
            env={**os.environ, "TRUSTMESS_PASSWORD": TEST_PASSWORD},
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert tail.stdout is not None
        stdout = tail.stdout

        async def follow() -> None:
            async for event in follower.events():
                if isinstance(event, Reconnected):
                    reconnects.append(event.close_code)
                    continue
                assert isinstance(event, Message), event
                received.append(event)
                if len(received) == COUNT:
                    return

        async def read_tail() -> None:
            while len(tailed) < COUNT:
                line = await stdout.readline()
                assert line, "tail exited"
                tailed.append(json.loads(line)["seq"])

        async def send_one(n: int) -> None:
            sent.append(await sender.send(cid, f"message {n}"))
            if len(sent) == COUNT // 3:
                halfway.set()

        try:
            following = asyncio.create_task(follow())
            tailing = asyncio.create_task(read_tail())
            # The tail is following once the first message reaches it.
            await send_one(0)
            await eventually(lambda: tailed, 20, "the tail to print the first message")
            sending = asyncio.create_task(
                asyncio.wait_for(asyncio.gather(*(send_one(n) for n in range(1, COUNT))), 90)
            )
            async with asyncio.timeout(30):
                await halfway.wait()
            code = await servers[0].stop(signum)
            assert code == (0 if signum == signal.SIGTERM else -signal.SIGKILL)
            assert not sending.done(), "the restart came too late to matter"
            servers.append(await start_server(server_env))
            assert servers[1].url == url
            await sending
            await asyncio.wait_for(asyncio.gather(following, tailing), 60)
        finally:
            tail.terminate()
            await tail.wait()

    rows = await db.fetch("SELECT id, seq, client_msg_id, body FROM messages ORDER BY seq")
    assert [r["seq"] for r in rows] == list(range(1, COUNT + 1))
    # Every send returned once, with the stored message's id and seq.
    assert len(sent) == COUNT
    stored = {r["client_msg_id"]: (r["id"], r["seq"]) for r in rows}
    assert {s.client_msg_id: (s.id, s.seq) for s in sent} == stored
    # Each follower got every message once, in order, whatever its socket did.
    assert [m.seq for m in received] == list(range(1, COUNT + 1))
    assert [m.body for m in received] == [r["body"] for r in rows]
    assert tailed == list(range(1, COUNT + 1))
    # They really were disconnected and came back.
    assert follower.live.connections >= 2 and sender.live.connections >= 2
    # The application was told (to refetch what is not replayed, such as conversation lists).
    assert reconnects == follower.live.close_codes
    if signum == signal.SIGTERM:
        assert 1001 in follower.live.close_codes
