"""Close codes reach the peer (#11): after its close frame the server reads and discards
what the peer still sends, so the kernel never answers in-flight data with a reset that
destroys the close frame (the peer would see 1006 instead of the code).

The peers here are blocking sockets in threads: they keep writing whatever the server's
event loop does, as a separate client process would."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import sys
import threading
import time

RUNS = 10


def _masked(opcode: int, payload: bytes) -> bytes:
    """One final client frame (masked, as RFC 6455 requires)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload[:4096]))
    if n > 4096:  # a fixed mask pattern repeats every 4 bytes: mask the rest the same way
        body += bytes(b ^ mask[i % 4] for i, b in enumerate(payload[4096:], 4096))
    return head + mask + body


class BlockingPeer:
    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("eof")
        return data

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self._recv()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def close_code(self) -> int | None:
        """Read frames until the close frame: its code, or None if the connection was reset
        or ended first."""
        try:
            while True:
                first, second = self._need(2)
                length = second & 0x7F
                if length == 126:
                    length = int.from_bytes(self._need(2), "big")
                elif length == 127:
                    length = int.from_bytes(self._need(8), "big")
                payload = self._need(length)
                if first & 0x0F == 0x8:
                    return int.from_bytes(payload[:2], "big")
        except (ConnectionError, OSError):
            return None

    def flood(self, frame: bytes, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.sock.sendall(frame)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


def _flood_until_closed(port: int, headers: dict[str, str], frame: bytes) -> int | None:
    peer = BlockingPeer(port, headers)
    stop = threading.Event()
    writer = threading.Thread(target=peer.flood, args=(frame, stop))
    writer.start()
    try:
        return peer.close_code()
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            peer.sock.shutdown(socket.SHUT_RDWR)
        writer.join(10)
        peer.close()


async def _client_process(mode: str, url: str, headers: dict[str, str]) -> int | None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.wsflood",
        mode,
        url,
        headers["Authorization"],
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    text = out.decode().strip()
    return int(text) if text.isdigit() else None


async def test_a_flooding_client_gets_4008_not_a_reset(make_user, make_client) -> None:
    client = await make_client(ws_rate_per_s=50, ws_burst=50, ws_abuse_s=0.3)
    user = await make_user()
    url = f"http://127.0.0.1:{client.port}/ws"
    codes = [await _client_process("flood", url, user.headers) for _ in range(RUNS)]
    assert codes == [4008] * RUNS


def _raw_flood_until_closed(port: int, headers: dict[str, str]) -> int | None:
    return _flood_until_closed(port, headers, _masked(0x1, b'{"type":"ping","ref":1}') * 50)


async def test_a_raw_flooding_client_reads_its_4008(make_user, make_client) -> None:
    client = await make_client(ws_rate_per_s=50, ws_burst=50, ws_abuse_s=0.3)
    user = await make_user()
    codes = []
    for _ in range(RUNS):
        codes.append(await asyncio.to_thread(_raw_flood_until_closed, client.port, user.headers))
    assert codes == [4008] * RUNS


async def test_an_aiohttp_client_over_the_frame_limit_gets_1009(make_user, make_client) -> None:
    client = await make_client()
    user = await make_user()
    url = f"http://127.0.0.1:{client.port}/ws"
    codes = [await _client_process("oversized", url, user.headers) for _ in range(RUNS)]
    assert codes == [1009] * RUNS


def _oversized(port: int, headers: dict[str, str]) -> int | None:
    """Send a frame over the limit, then (a busy client) read only a moment later."""
    peer = BlockingPeer(port, headers)
    with contextlib.suppress(OSError):
        peer.sock.sendall(_masked(0x1, b"x" * 1_000_000))
    time.sleep(0.3)
    try:
        return peer.close_code()
    finally:
        peer.close()


async def test_an_oversized_frame_gets_1009_not_a_reset(make_user, make_client) -> None:
    client = await make_client()
    user = await make_user()
    codes = []
    for _ in range(RUNS):
        codes.append(await asyncio.to_thread(_oversized, client.port, user.headers))
    assert codes == [1009] * RUNS
