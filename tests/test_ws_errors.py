"""Bad input on the socket: every bad frame kind gets its error and the socket keeps working;
oversized frames close with 1009; rate limits answer ``rate_limited`` then close 4008; a slow
consumer is closed with 4009 without delaying anyone else."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket

import orjson
import pytest

from tests.conftest import SocketClient, eventually, message_frame
from trustmess.appkeys import GATEWAY, METRICS, WRITER
from trustmess.store.messages import NewMessage

BAD_FRAMES = [
    ("not json", "bad_frame", None),
    ("[1, 2]", "bad_frame", None),
    ('"text"', "bad_frame", None),
    ("{}", "bad_frame", None),
    ('{"type": 5}', "bad_frame", None),
    ('{"type": "teleport"}', "unknown_type", None),
    ('{"type": "join"}', "invalid", "conversation_id"),
    ('{"type": "join", "conversation_id": "1"}', "invalid", "conversation_id"),
    ('{"type": "join", "conversation_id": true}', "invalid", "conversation_id"),
    ('{"type": "join", "conversation_id": 1, "since": -1}', "invalid", "since"),
    ('{"type": "join", "conversation_id": 1, "extra": 1}', "invalid", "extra"),
    ('{"type": "ping", "ref": {"a": 1}}', "invalid", "ref"),
    ('{"type": "ping", "ref": "' + "r" * 65 + '"}', "invalid", "ref"),
    (
        '{"type": "message", "conversation_id": 1, "client_msg_id": "a b", "body": "x"}',
        "invalid",
        "client_msg_id",
    ),
    (
        '{"type": "message", "conversation_id": 1, "client_msg_id": "ok", "body": "   "}',
        "invalid",
        "body",
    ),
    (
        '{"type": "message", "conversation_id": 1, "client_msg_id": "ok", "body": "'
        + "x" * 4001
        + '"}',
        "too_large",
        "body",
    ),
    (
        '{"type": "message", "conversation_id": 1, "client_msg_id": "ok", "body": "x", '
        '"reply_to": 0}',
        "invalid",
        "reply_to",
    ),
    ('{"type": "ack", "conversation_id": 1, "seq": 1.5}', "invalid", "seq"),
    ('{"type": "typing", "conversation_id": 1, "state": "maybe"}', "invalid", "state"),
]


@pytest.mark.parametrize(("raw", "code", "field"), BAD_FRAMES, ids=[c for _, c, _ in BAD_FRAMES])
async def test_bad_frame_answered_and_socket_survives(make_user, connect, raw, code, field) -> None:
    alice = await make_user()
    sock = await connect(alice)
    await sock.ws.send_str(raw)
    error = await sock.recv()
    assert error["type"] == "error" and error["code"] == code, error
    assert error.get("field") == field
    assert "Traceback" not in error["message"]
    assert (await sock.request({"type": "ping"}))["type"] == "reply"


async def test_error_carries_ref_when_readable(make_user, connect) -> None:
    sock = await connect(await make_user())
    await sock.send({"type": "join", "ref": 7})
    error = await sock.recv()
    assert error["ref"] == 7 and error["code"] == "invalid"
    await sock.send({"type": "nope", "ref": "x"})
    assert (await sock.recv())["ref"] == "x"


async def test_binary_frame_is_bad_frame(make_user, connect) -> None:
    sock = await connect(await make_user())
    await sock.ws.send_bytes(b'{"type": "ping"}')
    assert (await sock.recv())["code"] == "bad_frame"
    assert (await sock.request({"type": "ping"}))["type"] == "reply"


async def test_bad_frames_do_not_affect_other_sockets(connect, chat) -> None:
    alice, bob, cid = chat
    a, b = await connect(alice), await connect(bob)
    await b.request({"type": "join", "conversation_id": cid})
    for raw, _, _ in BAD_FRAMES:
        await a.ws.send_str(raw)
    await a.request(message_frame(cid, "ok", "fine"))
    assert (await b.recv_type("message"))["body"] == "fine"


async def test_frame_at_limit_accepted_over_limit_closes_1009(make_user, connect) -> None:
    sock = await connect(await make_user())
    at_limit = '{"type": "ping", "ref": "a", "pad": "' + "x" * 65536 + '"}'
    at_limit = at_limit[: 65536 - 2] + '"}'
    assert len(at_limit) == 65536
    await sock.ws.send_str(at_limit)
    # Exactly max_frame_bytes is still a frame we read (and reject for its unknown field).
    assert (await sock.recv())["code"] in ("invalid", "bad_frame")
    await sock.ws.send_str("x" * 65537)
    assert await sock.closed() == 1009


async def test_rate_limit_then_close_on_sustained_abuse(make_user, make_client, connect) -> None:
    client = await make_client(ws_rate_per_s=5, ws_burst=5, ws_abuse_s=0.5)
    sock = await connect(await make_user(), test_client=client)
    for n in range(10):
        await sock.send({"type": "ping", "ref": n})
    answers = [await sock.recv() for _ in range(6)]
    assert [a.get("ref") for a in answers[:5]] == list(range(5))
    assert all(a["type"] == "reply" for a in answers[:5])
    # Refused before parsing: one rate_limited error, without a ref, for the five refused.
    assert answers[5]["type"] == "error" and answers[5]["code"] == "rate_limited"
    assert "ref" not in answers[5]
    assert client.app[METRICS].errors["rate_limited"] == 5

    async def hammer() -> None:
        while True:
            await sock.send({"type": "ping"})
            await asyncio.sleep(0.01)

    task = asyncio.create_task(hammer())
    try:
        assert await sock.closed(timeout=5) == 4008
    finally:
        task.cancel()


async def test_rate_limit_recovers(make_user, make_client, connect) -> None:
    client = await make_client(ws_rate_per_s=20, ws_burst=2)
    sock = await connect(await make_user(), test_client=client)
    for _ in range(4):
        await sock.send({"type": "ping", "ref": "burst"})
    answers = [(await sock.recv())["type"] for _ in range(3)]
    assert answers == ["reply", "reply", "error"]
    async with asyncio.timeout(5):
        while True:
            await sock.send({"type": "ping", "ref": "again"})
            # A refused ping may get no answer (one rate_limited per 0.5 s): try again.
            with contextlib.suppress(TimeoutError):
                frame = await sock.recv_where(lambda f: f.get("ref") == "again", 0.2)
                if frame["type"] == "reply":
                    break


async def test_slow_consumer_closed_4009_without_delaying_others(
    make_user, make_group, make_client, connect
) -> None:
    client = await make_client(
        ws_queue_frames=100, ws_queue_bytes=512 * 1024, ws_rate_per_s=1e5, ws_burst=100_000
    )
    alice, bob, slow = await make_user(), await make_user(), await make_user()
    cid = await make_group(alice, bob, slow)
    lazy = await RawSocket.open(client.host, client.port, slow.headers)
    lazy.send_text(orjson.dumps({"type": "join", "conversation_id": cid}))
    a, b = await connect(alice, test_client=client), await connect(bob, test_client=client)
    await b.request({"type": "join", "conversation_id": cid})
    body = "y" * 3900
    gateway = client.app[GATEWAY]
    sent = 0
    async with asyncio.timeout(60):
        while not all(c.closing for c in gateway.user_connections(slow.id)):
            for _ in range(20):
                sent += 1
                await a.send(message_frame(cid, f"m{sent}", body))
            # Bob keeps up and gets every message, in order, while the lazy socket lags.
            for seq in range(sent - 19, sent + 1):
                assert (await b.recv_type("message", timeout=5))["seq"] == seq
            assert sent < 3000, [
                (len(c._queue), c.ws._writer.transport.get_write_buffer_size(), c.closing)
                for c in gateway.user_connections(slow.id)
            ]
    assert await lazy.close_code() == 4009
    # The server lets go of it entirely (handler finished, connection unregistered).
    await eventually(lambda: not gateway.user_connections(slow.id), 10, "the slow one to go")


class RawSocket:
    """A WebSocket client that reads nothing until asked, with a tiny receive buffer: the
    slowest possible consumer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int, headers: dict[str, str]) -> RawSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send_text(self, payload: bytes) -> None:
        self.writer.write(masked_frame(0x1, payload))

    def send_pings(self, count: int, payload: bytes) -> None:
        self.writer.write(masked_frame(0x9, payload) * count)

    async def close_code(self) -> int:
        """Read frames until the close frame; return its code."""
        async with asyncio.timeout(30):
            while True:
                first, second = await self.reader.readexactly(2)
                length = second & 0x7F
                if length == 126:
                    length = int.from_bytes(await self.reader.readexactly(2), "big")
                elif length == 127:
                    length = int.from_bytes(await self.reader.readexactly(8), "big")
                payload = await self.reader.readexactly(length)
                if first & 0x0F == 0x8:
                    self.writer.close()
                    return int.from_bytes(payload[:2], "big")


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One final client-to-server frame of under 126 bytes."""
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


async def test_a_ping_flood_from_a_peer_that_does_not_read_is_closed_4009(
    make_user, make_client
) -> None:
    """Pongs count against the outbound byte limit like any frame: a peer that sends pings
    and never reads the answers cannot make the server buffer without bound."""
    client = await make_client(ws_queue_bytes=64 * 1024)
    alice, bob = await make_user(), await make_user()
    flooder = await RawSocket.open(client.host, client.port, alice.headers)
    gateway = client.app[GATEWAY]
    flooder.send_pings(40_000, b"p" * 125)  # 5 MB of pongs to answer
    assert await flooder.close_code() == 4009
    await eventually(lambda: not gateway.user_connections(alice.id), 10, "the flooder to go")
    # Everyone else is served as before.
    other = await client.ws_connect("/ws", headers=bob.headers)
    assert (await SocketClient(other).recv())["type"] == "hello"
    await other.close()


async def test_client_that_stops_answering_pings_is_dropped(make_user, make_client) -> None:
    client = await make_client(ws_heartbeat_s=0.3)
    alice = await make_user()
    silent = await RawSocket.open(client.host, client.port, alice.headers)
    gateway = client.app[GATEWAY]
    assert gateway.user_connections(alice.id)
    # RawSocket never answers the server's pings: the connection ends within a few beats.
    async with asyncio.timeout(5):
        while await silent.reader.read(4096):
            pass
    await eventually(lambda: not gateway.user_connections(alice.id), 5, "the silent one to go")
    silent.writer.close()


async def test_compression_is_negotiated_only_when_enabled(make_user, make_client) -> None:
    alice = await make_user()
    plain = await make_client()
    ws = await plain.ws_connect("/ws", headers=alice.headers, compress=15)
    assert ws.compress == 0
    await ws.close()
    deflating = await make_client(ws_compression=True)
    ws = await deflating.ws_connect("/ws", headers=alice.headers, compress=15)
    assert ws.compress == 15
    sock = SocketClient(ws)
    assert (await sock.recv())["type"] == "hello"
    assert (await sock.request({"type": "ping"}))["type"] == "reply"


async def test_a_burst_bigger_than_the_frame_limit_is_not_a_slow_consumer(
    make_client, connect, chat
) -> None:
    """One group commit can hand a socket more frames at once than ws_queue_frames; a peer
    that reads them is not slow. (Frames are written out in slices; the byte limit, counted
    in the transport's buffer, is what catches a peer that does not read.)"""
    client = await make_client(ws_queue_frames=50)
    alice, bob, cid = chat
    b = await connect(bob, test_client=client)
    await b.request({"type": "join", "conversation_id": cid})
    writer = client.app[WRITER]
    sends = [
        writer.submit(NewMessage(cid, alice.id, f"m{n}", f"body {n}", None)) for n in range(300)
    ]
    await asyncio.gather(*sends)
    assert writer.batches < 10, "the messages did not arrive in a few big batches"
    seqs = [(await b.recv_type("message"))["seq"] for _ in range(300)]
    assert seqs == list(range(1, 301))
