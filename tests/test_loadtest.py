"""The load tester (``trustmess.loadtest``) against a real server on a loopback port.

A tiny closed-loop run must verify cleanly; the same run with one delivery dropped from the
checker's input must fail verification (so the checker is proven able to fail); and the command
line, spread over two processes, must exit 1 on that violation and write its JSON report. The
client's own frame splitter is checked against every way a TCP stream can be cut.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from websockets.utils import accept_key

from tests.conftest import AppFactory
from trustmess.loadtest import LoadConfig, run_load
from trustmess.loadtest.report import result_json, summary_text
from trustmess.loadtest.wsconn import FrameSocket

ROOT = Path(__file__).resolve().parent.parent


async def _server_url(make_client: AppFactory) -> str:
    client: TestClient[web.Request, web.Application] = await make_client(
        ws_rate_per_s=100_000.0, ws_burst=100_000
    )
    return f"http://{client.server.host}:{client.server.port}"


def _tiny(url: str, **changes: object) -> LoadConfig:
    config = LoadConfig(
        url=url, users=4, groups=1, group_size=4, duration=0.8, warmup=0.2, window=2, procs=1
    )
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


async def test_tiny_run_delivers_everything_exactly_once(make_client: AppFactory) -> None:
    url = await _server_url(make_client)
    result = await run_load(_tiny(url))
    assert result.verification.ok, result.verification.examples
    data = result_json(result)
    assert data["setup"]["users_created"] == 4
    assert data["window"]["replies"] > 0
    # Every message reaches all 4 members' sockets, the sender's own included.
    assert data["totals"]["deliveries"] == 4 * data["totals"]["replies"]
    assert data["verification"]["checked"]["stored_rows"] == data["totals"]["replies"]
    assert data["latency_us"]["send_to_delivery"]["count"] > 0
    assert data["errors"] == {} and data["close_codes"] == {}
    assert "verify     OK" in summary_text(data)


async def test_injected_loss_fails_verification(make_client: AppFactory) -> None:
    url = await _server_url(make_client)
    await run_load(_tiny(url, duration=0.3, warmup=0.0))
    # Same prefix: the users are reused; open loop, typing, acks and first-frame auth this time.
    config = _tiny(
        url, rate=300.0, typing_ratio=0.3, ack_every=2, first_frame_auth=True, inject_loss=True
    )
    result = await run_load(config)
    data = result_json(result)
    assert data["setup"]["users_created"] == 0
    assert data["totals"]["typing_sent"] > 0 and data["totals"]["acks_sent"] > 0
    assert not result.verification.ok
    assert result.verification.violations["out of order"] == 1
    assert result.verification.violations["missing deliveries"] == 1
    assert "VIOLATION out of order" in summary_text(data)


@pytest.mark.slow
async def test_cli_over_two_processes_exits_1_on_a_violation(
    make_client: AppFactory, tmp_path: Path
) -> None:
    url = await _server_url(make_client)
    out = tmp_path / "result.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "trustmess.loadtest",
        *("--url", url, "--prefix", "cli", "--users", "4", "--groups", "2"),
        *("--group-size", "2", "--procs", "2", "--duration", "0.5", "--warmup", "0.2"),
        *("--window", "2", "--inject-loss", "--json", str(out)),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        stdout, stderr = await process.communicate()
    assert process.returncode == 1, (stdout + stderr).decode()
    data = json.loads(out.read_text())
    assert data["tester"]["procs"] == 2
    assert data["verification"]["violations"]["out of order"] == 1
    assert data["totals"]["replies"] > 0
    assert b"VIOLATION" in stdout


class _Transport:
    """Just enough of a transport for FrameSocket: collects what it writes."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def writelines(self, chunks: list[bytes]) -> None:
        self.written.extend(chunks)

    def is_closing(self) -> bool:
        return False


def _server_frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return bytes([0x80 | opcode, size]) + payload
    if size < 1 << 16:
        return bytes([0x80 | opcode, 126]) + size.to_bytes(2, "big") + payload
    return bytes([0x80 | opcode, 127]) + size.to_bytes(8, "big") + payload


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 100_000])
async def test_frame_socket_splits_frames_across_any_chunking(chunk: int) -> None:
    got: list[bytes] = []
    sock = FrameSocket("ws://127.0.0.1:1/ws", {}, lambda data: got.append(bytes(data)))
    transport = _Transport()
    sock.connection_made(transport)  # type: ignore[arg-type]
    accept = accept_key(sock.protocol.key)
    response = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ).encode()
    payloads = [b'{"type":"hello"}', b"x" * 300, b"y" * 70_000, b'{"n":1}']
    stream = response + _server_frame(0x1, payloads[0]) + _server_frame(0x9, b"hb")
    stream += b"".join(_server_frame(0x1, p) for p in payloads[1:])
    for start in range(0, len(stream), chunk):
        sock.data_received(stream[start : start + chunk])
    assert sock.opened.done() and sock.open
    assert got == payloads
    # The ping was answered by websockets' protocol object (a masked pong frame).
    assert any(frame[0] == 0x8A for frame in transport.written[1:])
