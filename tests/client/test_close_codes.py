"""The SDK acts on each close code as protocol/README.md §7 says, provoked for real: 4006 (the
user's socket limit), 4008 (the command rate abused), 4009 (a client that stopped reading),
and a resume that the socket cannot replay (HTTP backfill)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

import pytest

from tests.client.inbox import Inbox
from tests.conftest import TEST_PASSWORD, eventually
from trustmess.appkeys import GATEWAY
from trustmess.client import Client, ClientStopped, Message, ReconnectPolicy

FAST = ReconnectPolicy(base_s=0.05, cap_s=0.5, rate_limited_pause_s=0.5)


def url_of(server: Any) -> str:
    return f"http://{server.host}:{server.port}"


async def test_4006_replaced_stops_without_fighting_back(make_client, make_user) -> None:
    server = await make_client(ws_max_per_user=1)
    alice = await make_user()
    async with Client(url_of(server), reconnect=FAST) as old, Client(url_of(server)) as new:
        await old.login(alice.username, TEST_PASSWORD)
        await new.login(alice.username, TEST_PASSWORD)
        await old.connect()
        inbox = Inbox(old)
        await new.connect()
        await eventually(lambda: inbox.error is not None, 10, "the old client to stop")
        assert isinstance(inbox.error, ClientStopped) and inbox.error.close_code == 4006
        assert not old.live.running and old.live.connections == 1
        # The newer connection keeps its place: nobody reconnected to take it back.
        assert new.live.connected.is_set() and new.live.close_codes == []
        with pytest.raises(ClientStopped):
            await old.send(1, "after the stop")
        with pytest.raises(ClientStopped):
            await old.join(1)
        # On the user's action the old one comes back (and replaces the other in turn).
        await old.connect()
        await eventually(lambda: new.live.close_codes == [4006], 10, "the other to be replaced")


async def test_4008_backs_off_and_every_send_completes(make_client, make_user, make_group) -> None:
    server = await make_client(
        ws_rate_per_s=5, ws_burst=5, ws_abuse_s=0.3, send_rate_per_s=1000, send_burst=1000
    )
    alice, bob = await make_user(), await make_user()
    cid = await make_group(alice, bob)
    async with Client(url_of(server), reconnect=FAST) as a:
        await a.login(alice.username, TEST_PASSWORD)
        await a.connect()
        # More at once than the connection's burst: refused, resent, closed with 4008 ...
        sent = await asyncio.wait_for(
            asyncio.gather(*(a.send(cid, f"m{n}") for n in range(15))), 60
        )
        # ... and yet each stored once, each send answered once.
        assert sorted(s.seq for s in sent) == list(range(1, 16))
        assert 4008 in a.live.close_codes, a.live.close_codes
        assert a.live.connected.is_set()


@pytest.mark.slow
async def test_4009_a_stalled_tail_resumes_without_loss(make_client, make_user, make_group) -> None:
    """``tail`` frozen (SIGSTOP) while messages pour in: the server closes it with 4009; once
    it runs again it reconnects, resumes, and prints every message once, in order."""
    server = await make_client(
        ws_queue_frames=100, ws_queue_bytes=64 * 1024, ws_rate_per_s=1e5, ws_burst=100_000
    )
    alice, bob = await make_user(), await make_user()
    cid = await make_group(alice, bob)
    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trustmess.client", "--url", url_of(server), "--user",
        bob.username, "-v", "tail", str(cid), "--since", "0", "--json",
        env={**os.environ, "TRUSTMESS_PASSWORD": TEST_PASSWORD},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert tail.stdout is not None and tail.stderr is not None
    gateway = server.app[GATEWAY]
    try:
        await eventually(lambda: gateway.user_connections(bob.id), 20, "tail to connect")
        async with Client(url_of(server)) as a:
            await a.login(alice.username, TEST_PASSWORD)
            first = await a.send(cid, "before the stall")
            line = json.loads(await asyncio.wait_for(tail.stdout.readline(), 10))
            assert line["seq"] == first.seq
            tail.send_signal(signal.SIGSTOP)
            body = "y" * 3900
            sent = 1
            async with asyncio.timeout(60):
                while not all(c.closing for c in gateway.user_connections(bob.id)):
                    await asyncio.gather(
                        *(a.send(cid, f"{n} {body}") for n in range(sent, sent + 50))
                    )
                    sent += 50
                    assert sent < 5000
            tail.send_signal(signal.SIGCONT)
            seqs = [first.seq]
            async with asyncio.timeout(60):
                while len(seqs) < sent:
                    line = await tail.stdout.readline()
                    assert line, (await tail.stderr.read()).decode()  # exited early
                    seqs.append(json.loads(line)["seq"])
            assert seqs == list(range(1, sent + 1))
    finally:
        if tail.returncode is None:
            tail.send_signal(signal.SIGCONT)
            tail.terminate()
        await tail.wait()
    log = (await tail.stderr.read()).decode()
    assert "socket closed with 4009" in log, log


async def test_a_resume_beyond_the_replay_limit_is_filled_over_http(
    make_client, make_user, make_group
) -> None:
    server = await make_client(replay_limit=5)
    alice, bob = await make_user(), await make_user()
    cid = await make_group(alice, bob)
    async with Client(url_of(server)) as a, Client(url_of(server)) as b:
        await a.login(alice.username, TEST_PASSWORD)
        await b.login(bob.username, TEST_PASSWORD)
        for n in range(30):
            await a.send(cid, f"early {n}")
        inbox = Inbox(b)
        later = asyncio.gather(*(a.send(cid, f"late {n}") for n in range(30)))
        joined = await b.join(cid, since=0)
        await later
        assert not joined.resumed  # 30+ missing, 5 replayable: the SDK pages over HTTP
        await inbox.next(Message, lambda m: m.seq == 60)
        assert [m.seq for m in inbox.of(Message)] == list(range(1, 61))


async def test_cli_send(make_client, make_user, make_group, db) -> None:
    server = await make_client()
    alice, bob = await make_user(), await make_user()
    cid = await make_group(alice, bob)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trustmess.client", "--url", url_of(server), "--user",
        alice.username, "--password-env", "ALICE_PW", "send", str(cid), "Hello from the CLI",
        env={**os.environ, "ALICE_PW": TEST_PASSWORD},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    row = await db.fetchrow("SELECT id, seq, body FROM messages")
    assert out.decode().strip() == f"sent #{row['seq']} (message {row['id']})"
    assert row["body"] == "Hello from the CLI"
    # Without a password it says what to do instead of hanging on a prompt.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trustmess.client", "--url", url_of(server), "--user",
        alice.username, "--password-env", "NOT_SET_ANYWHERE", "send", str(cid), "x",
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1 and b"set NOT_SET_ANYWHERE" in err
