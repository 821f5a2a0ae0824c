"""Connections a client opens and then starves: request heads and bodies sent drop by drop,
idle keep-alive connections, and sockets that never authenticate. Real TCP sockets throughout
(sockets bound to 127.0.0.x are distinct client addresses)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest

from tests.conftest import SocketClient
from tests.openapi_contract import shared_contract


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sends until it closes; fails if it has not closed in time."""
    received = b""
    async with asyncio.timeout(seconds):
        while chunk := await reader.read(4096):
            received += chunk
    return received


async def drip(writer: asyncio.StreamWriter, data: bytes, every_s: float) -> None:
    """Send ``data`` one byte at a time until it is all out or the server hangs up."""
    try:
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every_s)
    except ConnectionError:
        pass


async def test_a_request_head_sent_drop_by_drop_is_cut_off(make_client) -> None:
    client = await make_client(http_read_timeout_s=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
    started = time.monotonic()
    dripping = asyncio.create_task(drip(writer, head, 0.05))
    try:
        assert await closed_within(reader, 5) == b""  # closed, no request was ever complete
    finally:
        dripping.cancel()
        writer.close()
    assert time.monotonic() - started < 3


async def test_an_idle_connection_is_closed(make_client) -> None:
    client = await make_client(http_read_timeout_s=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    answered = await closed_within(reader, 5)  # one answer, then closed when idle
    writer.close()
    assert answered.startswith(b"HTTP/1.1 200")


async def test_a_request_body_sent_drop_by_drop_is_408(make_client) -> None:
    client = await make_client(http_read_timeout_s=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    body = orjson.dumps({"username": "someone", "password": "x" * 100})
    writer.write(
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    dripping = asyncio.create_task(drip(writer, body, 0.05))
    try:
        answer = await closed_within(reader, 5)
    finally:
        dripping.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    head, body = answer.split(b"\r\n\r\n", 1)
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    assert headers["Connection"] == "close"
    shared_contract().check("POST", "/auth/login", 408, headers, body)
    assert orjson.loads(body)["error"]["code"] == "request_timeout"


async def unauthenticated_socket(client, address: str) -> tuple[aiohttp.ClientSession, object]:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))
    try:
        return session, await session.ws_connect(client.make_url("/ws"))
    except BaseException:
        await session.close()
        raise


async def test_unauthenticated_sockets_are_capped_per_address(make_client, make_user) -> None:
    client = await make_client(ws_unauthenticated_per_address=3, ws_auth_timeout_s=30)
    opened = [await unauthenticated_socket(client, "127.0.0.2") for _ in range(3)]
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await unauthenticated_socket(client, "127.0.0.2")
        assert refused.value.status == 429
        assert int(refused.value.headers["Retry-After"]) >= 1
        shared_contract().check("GET", "/ws", 429, {}, None)
        # Another address is not affected; neither is a socket with header authentication.
        opened.append(await unauthenticated_socket(client, "127.0.0.3"))
        user = await make_user()
        with_header = await client.ws_connect("/ws", headers=user.headers)
        await with_header.close()
        # Authenticating frees the address's slot.
        sock = SocketClient(opened[0][1])
        await sock.send({"type": "auth", "token": user.token})
        assert (await sock.recv())["type"] == "hello"
        opened.append(await unauthenticated_socket(client, "127.0.0.2"))
    finally:
        for session, ws in opened:
            await ws.close()
            await session.close()
