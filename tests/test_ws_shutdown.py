"""SIGTERM with sockets busy sending: every socket is closed with 1001 and every message that
got a reply is in the database (no reply for an uncommitted message, nothing acked is lost)."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import orjson
from aiohttp import WSMsgType

from tests.conftest import JWT_SECRET
from tests.serverproc import start_server
from trustmess.appkeys import GATEWAY


async def test_sigterm_closes_1001_and_loses_no_acknowledged_message(
    database_url, make_user, make_group, db
) -> None:
    users = [await make_user() for _ in range(3)]
    cid = await make_group(*users)
    server = await start_server(
        {
            "TRUSTMESS_DATABASE_URL": database_url,
            "TRUSTMESS_JWT_SECRET": JWT_SECRET,
            "TRUSTMESS_WS_RATE_PER_S": "100000",
            "TRUSTMESS_WS_BURST": "100000",
        }
    )
    acked: set[int] = set()
    close_codes: list[int | None] = []
    busy = [asyncio.Event() for _ in users]
    quiet = asyncio.Event()
    try:
        async with aiohttp.ClientSession() as session:

            async def sender(index: int) -> None:
                ws = await session.ws_connect(server.url + "/ws", headers=users[index].headers)
                await ws.send_str(orjson.dumps({"type": "join", "conversation_id": cid}).decode())
                n = 0

                async def pump() -> None:
                    nonlocal n
                    while not ws.closed and not quiet.is_set():
                        n += 1
                        frame = {
                            "type": "message",
                            "ref": n,
                            "conversation_id": cid,
                            "client_msg_id": f"u{index}-{n}",
                            "body": f"message {n}",
                        }
                        try:
                            await ws.send_str(orjson.dumps(frame).decode())
                        except ConnectionError:
                            return
                        if n % 20 == 0:
                            await asyncio.sleep(0.005)

                task = asyncio.create_task(pump())
                async for msg in ws:
                    if msg.type != WSMsgType.TEXT:
                        break
                    frame = orjson.loads(msg.data)
                    if frame["type"] == "reply" and "id" in frame.get("data", {}):
                        acked.add(frame["data"]["id"])
                        busy[index].set()
                close_codes.append(ws.close_code)
                task.cancel()

            senders = [asyncio.create_task(sender(i)) for i in range(3)]
            # Every socket is connected and getting replies when the signal arrives.
            async with asyncio.timeout(20):
                await asyncio.gather(*(event.wait() for event in busy))
            # Stop pumping just before the signal: the last frames are still in flight when it
            # lands. (A client that keeps writing after the server closed its end makes the
            # kernel reset the connection, and the close frame can be lost with it: 1006.)
            quiet.set()
            assert await server.stop() == 0, "".join(server.log)
            async with asyncio.timeout(20):
                await asyncio.gather(*senders)
    finally:
        await server.kill()
    assert close_codes == [1001, 1001, 1001], "".join(server.log)
    stored = {row["id"] for row in await db.fetch("SELECT id FROM messages")}
    assert acked, "no message was acknowledged before shutdown"
    assert acked <= stored, f"{len(acked - stored)} acknowledged messages were lost"
    seqs = [row["seq"] for row in await db.fetch("SELECT seq FROM messages ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_a_graceful_close_with_compression_sends_everything_queued(
    make_client, make_user
) -> None:
    """With compression a writer task sends the queue; what it has taken but not sent yet
    must still count as unsent, or a shutdown's flush cuts it off."""
    client = await make_client(ws_compression=True, ws_queue_bytes=8 << 20)
    alice = await make_user()
    ws = await client.ws_connect("/ws", headers=alice.headers, compress=15)
    assert orjson.loads((await ws.receive(timeout=5)).data)["type"] == "hello"
    (conn,) = client.app[GATEWAY].user_connections(alice.id)
    # Big, incompressible frames: aiohttp compresses them in an executor, so each send yields.
    bodies = [os.urandom(24_000).hex() for _ in range(40)]
    for n, body in enumerate(bodies):
        conn.send(orjson.dumps({"type": "event", "n": n, "body": body}))
    closing = asyncio.create_task(conn.close(1001, "going away", flush_s=10))
    got = []
    async with asyncio.timeout(20):
        async for msg in ws:
            got.append(orjson.loads(msg.data)["n"])
    await closing
    assert got == list(range(40)) and ws.close_code == 1001
