"""Tokens through the SDK: a session outlives its access tokens (HTTP refresh and socket
re-auth before expiry), concurrent needs share one refresh, and no retry of the SDK ever
presents a spent refresh token (the server would revoke the whole session)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.client.inbox import Inbox
from tests.conftest import TEST_PASSWORD, eventually
from trustmess.client import Client, Message, SessionExpired


async def revoked_tokens(db: Any, user_id: int) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NOT NULL",
        user_id,
    )
    return count


@pytest.mark.slow
async def test_a_session_outlives_its_access_tokens(make_client, make_user, make_group, db) -> None:
    server = await make_client(access_token_ttl_s=10)
    alice, bob = await make_user(), await make_user()
    cid = await make_group(alice, bob)
    async with Client(f"http://{server.host}:{server.port}") as a:
        await a.login(alice.username, TEST_PASSWORD)
        first_expiry = a.http.tokens.expires_at
        await a.join(cid)
        inbox = Inbox(a)
        # The old token's expiry is the event under test: wait for that moment to pass.
        await asyncio.sleep(first_expiry - time.monotonic() + 1.0)
        # The socket was given a fresh token in time: never closed with 4002, still live.
        assert a.live.connections == 1 and a.live.close_codes == []
        assert a.http.tokens.refreshes >= 1
        sent = await a.send(cid, "still here")
        assert (await inbox.next(Message)).id == sent.id
        assert [c.id async for c in a.conversations()] == [cid]  # HTTP with the new token
    assert await revoked_tokens(db, alice.id) == 0


async def test_concurrent_needs_share_one_refresh(client, make_user, db) -> None:
    alice = await make_user()
    async with Client(f"http://{client.host}:{client.port}") as a:
        await a.login(alice.username, TEST_PASSWORD)
        stale = await a.http.tokens.access_token()
        # Ten callers find the same token stale at once (as after a 401 token_expired).
        fresh = await asyncio.gather(*(a.http.tokens.refresh(stale=stale) for _ in range(10)))
        assert len(set(fresh)) == 1 and fresh[0] != stale
        assert a.http.tokens.refreshes == 1
        # The session is alive: a second rotation works and the family was never revoked.
        await a.http.tokens.refresh()
        assert (await a.me()).id == alice.id
    assert await revoked_tokens(db, alice.id) == 0


class AnswerEater:
    """A TCP proxy to the server that forwards everything but, once armed, drops the answer
    to the first ``POST /auth/refresh``: the request reaches the server, its answer is lost."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.armed = False
        self.eaten = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        first = await reader.read(65536)
        eat = self.armed and first.startswith(b"POST /auth/refresh")
        up_writer.write(first)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
            except ConnectionError:
                pass
            finally:
                dst.close()

        if eat:
            self.armed = False
            self.eaten += 1
            await up_reader.read(65536)  # the server answered (the token is spent) ...
            writer.transport.abort()  # ... and the client never hears of it
            up_writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def eater(client: Any) -> AsyncIterator[AnswerEater]:
    proxy = AnswerEater(client.host, client.port)
    yield proxy
    await proxy.close()


async def test_a_lost_refresh_answer_is_not_retried_with_the_spent_token(
    eater, make_user, db
) -> None:
    alice = await make_user()
    async with Client(await eater.start()) as a:
        await a.login(alice.username, TEST_PASSWORD)
        eater.armed = True
        with pytest.raises(SessionExpired):
            await a.http.tokens.refresh()
        assert eater.eaten == 1
        # The SDK never presented the spent token again: the server revoked nothing ...
        assert await revoked_tokens(db, alice.id) == 0
        # ... and from now on asks for a login instead of guessing.
        with pytest.raises(SessionExpired):
            await a.me()
        await a.login(alice.username, TEST_PASSWORD)
        assert (await a.me()).id == alice.id
    assert await revoked_tokens(db, alice.id) == 0


async def test_a_refused_token_is_refreshed_before_the_next_connect(client, make_user, db) -> None:
    """An upgrade answered 401 (the token was refused): the SDK does not come back with the same
    token; it rotates the pair once and connects with the new one."""
    alice = await make_user()
    async with Client(f"http://{client.host}:{client.port}") as a:
        await a.login(alice.username, TEST_PASSWORD)
        tokens = a.http.tokens
        # As if the access token had been revoked server-side: a well-formed but bad token.
        tokens._pair = dataclasses.replace(tokens._pair, access_token="x.y.z")
        await asyncio.wait_for(a.connect(), 10)
        assert tokens.refreshes == 1 and a.live.connections == 1
        assert (await a.me()).id == alice.id
    assert await revoked_tokens(db, alice.id) == 0


async def test_a_session_ended_elsewhere_stops_the_client_with_session_expired(
    client, make_user
) -> None:
    """4001 when the session ends (here: signed out everywhere): the SDK tries one refresh,
    which the server refuses, and ends the event stream with SessionExpired, no loop."""
    alice = await make_user()
    async with (
        Client(f"http://{client.host}:{client.port}") as a,
        Client(f"http://{client.host}:{client.port}") as other_device,
    ):
        await a.login(alice.username, TEST_PASSWORD)
        await other_device.login(alice.username, TEST_PASSWORD)
        await a.connect()
        inbox = Inbox(a)
        await other_device.http.call("POST", "/auth/logout-all")
        await eventually(lambda: inbox.error is not None, 10, "the client to stop")
        assert isinstance(inbox.error, SessionExpired), inbox.error
        assert a.live.close_codes == [4001] and not a.live.running
        with pytest.raises(SessionExpired):
            await a.send(1, "after the end")
