"""The load tester (``trustmess.loadtest``) against a real server on a loopback port.

A tiny closed-loop run must verify cleanly; the same run with one delivery dropped from the
checker's input must fail verification (so the checker is proven able to fail); and the command
line, spread over two processes, must exit 1 on that violation and write its JSON report.
``--ws-url`` must spread the sockets over two nodes (two apps sharing one database and Redis,
counted by each node itself), and CPU and RSS must be summed over several server pids. The
client's own frame splitter is checked against every way a TCP stream can be cut.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import resource
import subprocess
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from websockets.utils import accept_key

from tests.conftest import AppFactory
from trustmess.appkeys import METRICS
from trustmess.loadtest import LoadConfig, run_load
from trustmess.loadtest.procinfo import (
    cpu_sample,
    process_cpu_s,
    processes_cpu_s,
    processes_rss_bytes,
    rss_bytes,
    tree_cpu_s,
)
from trustmess.loadtest.report import result_json, summary_text
from trustmess.loadtest.runstate import NEVER, others_during_reconnects
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
    result = await run_load(_tiny(url, server_pids=(os.getpid(),)))
    assert result.verification.ok, result.verification.examples
    data = result_json(result)
    # One server process on one URL: no per-node or per-pid extras in the output.
    assert data["server"]["pid"] == os.getpid() and "pids" not in data["server"]
    assert data["server"]["cpu_s"] is not None
    assert "per_node" not in data["sockets"] and "broker" not in data
    summary = summary_text(data)
    assert "nodes" not in summary.splitlines()[0]
    assert "server     CPU" in summary
    assert data["setup"]["users_created"] == 4
    assert data["window"]["replies"] > 0
    # Every message reaches all 4 members' sockets, the sender's own included.
    assert data["totals"]["deliveries"] == 4 * data["totals"]["replies"]
    assert data["verification"]["checked"]["stored_rows"] == data["totals"]["replies"]
    assert data["latency_us"]["send_to_delivery"]["count"] > 0
    assert data["errors"] == {} and data["close_codes"] == {}
    assert "verify     OK" in summary


async def test_mixed_run_counts_change_entries_in_the_streams(make_client: AppFactory) -> None:
    """--mix: reactions, edits and deletes take seqs of the streams like messages; the checker
    must still find every stream gapless and complete (history read back included)."""
    url = await _server_url(make_client)
    result = await run_load(_tiny(url, mix=(0.5, 0.2, 0.15, 0.15), duration=1.5))
    assert result.verification.ok, result.verification.examples
    data = result_json(result)
    totals = data["totals"]
    assert totals["changes"] > 0 and totals["change_events"] == 4 * totals["changes"]
    assert data["verification"]["checked"]["stored_rows"] == totals["replies"]
    # The only refusals: reacts that raced the deletion of their message.
    assert data["errors"] == {}
    assert "change events/s delivered" in summary_text(data)


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


# Burns 0.2 s of CPU and holds 64 MiB, says so, then blocks until its stdin closes: while it
# waits, its CPU time and RSS stay put, so sums over it and a busy process can be checked.
CHILD = """
import sys, time
held = bytearray(64 << 20)
for i in range(0, len(held), 4096):
    held[i] = 1
while time.process_time() < 0.2:
    pass
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def idle_child() -> Iterator[subprocess.Popen[str]]:
    """A second process with a known floor of CPU time (0.2 s) and RSS (64 MiB)."""
    with subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:  # leaving closes its stdin (it exits) and waits for it
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"  # bounded by pytest's timeout
        yield child


def test_server_cpu_and_rss_are_summed_over_several_pids(
    idle_child: subprocess.Popen[str],
) -> None:
    me, other = os.getpid(), idle_child.pid
    other_cpu, other_rss = process_cpu_s(other), rss_bytes(other)
    assert other_cpu is not None and other_cpu >= 0.19
    assert other_rss is not None and other_rss >= 64 << 20
    mine_before = process_cpu_s(me)
    both = processes_cpu_s([me, other])
    sampled = cpu_sample([me, other], None).server_s
    mine_after = process_cpu_s(me)
    assert mine_before is not None and mine_after is not None
    assert both is not None and sampled is not None
    # This process keeps running between the readings; the idle child does not.
    assert mine_before + other_cpu <= both <= sampled <= mine_after + other_cpu
    rss = processes_rss_bytes([me, other])
    my_rss = rss_bytes(me)
    assert rss is not None and my_rss is not None
    assert abs(rss - (my_rss + other_rss)) < 8 << 20
    assert processes_rss_bytes([]) is None
    idle_child.kill()
    idle_child.wait(10)
    # A sum missing a process would make a window's CPU difference meaningless.
    assert processes_cpu_s([me, other]) is None
    assert processes_rss_bytes([me, other]) is None


def test_a_tree_keeps_the_cpu_of_its_exited_children() -> None:
    """The database's CPU is its process tree's; backends and autovacuum workers come and
    go during a window, and one that exits must not take its CPU time out of the sum."""
    me = os.getpid()
    before = tree_cpu_s(me)
    reaped_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)  # exits and is waited for
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (reaped.ru_utime + reaped.ru_stime) - (
        reaped_before.ru_utime + reaped_before.ru_stime
    )
    after = tree_cpu_s(me)
    assert before is not None and after is not None and child_cpu >= 0.25
    assert after - before >= child_cpu - 0.05


async def test_ws_urls_spread_the_sockets_over_two_nodes(
    make_client: AppFactory, redis_url: str, idle_child: subprocess.Popen[str]
) -> None:
    # Two apps on one database, joined by Redis: a run spread over both still delivers
    # everything, and each node counts the sockets it accepted.
    nodes = [
        await make_client(ws_rate_per_s=100_000.0, ws_burst=100_000, broker=redis_url)
        for _ in range(2)
    ]
    url_a, url_b = (f"http://{n.server.host}:{n.server.port}" for n in nodes)
    pids = (os.getpid(), idle_child.pid)
    config = _tiny(url_a, users=6, group_size=3, groups=2, ws_urls=(url_a, url_b))
    result = await run_load(dataclasses.replace(config, server_pids=pids))
    assert result.verification.ok, result.verification.examples
    assert [n.app[METRICS].connections_opened for n in nodes] == [3, 3]
    data = result_json(result)
    assert data["sockets"]["per_node"] == {url_a: 3, url_b: 3}
    assert data["server"]["pid"] == os.getpid()
    assert data["server"]["pids"] == list(pids)
    assert data["server"]["cpu_s"] is not None
    # Summed: more than the child alone holds.
    assert data["server"]["rss_bytes"]["end"] > (rss_bytes(idle_child.pid) or 0) > 64 << 20
    summary = summary_text(data)
    assert "nodes 2" in summary.splitlines()[0]
    assert "6/6 connected (3 + 3)" in summary
    assert "server     2 processes: CPU" in summary


def test_other_traffic_during_reconnects_is_what_was_sent_between_first_close_and_last_rejoin() -> (
    None
):
    # Two processes' logs: (send time, µs, sender, receiver); users 7 and 8 were closed.
    first = array("q", [90, 1, 1, 2, 100, 2, 1, 2, 150, 3, 7, 2, 150, 4, 2, 1])
    second = array("q", [200, 5, 3, 8, 200, 6, 3, 4, 201, 7, 3, 4])
    found = others_during_reconnects([first, second], {7, 8}, 100, 200)
    assert sorted(found) == [2, 4, 6]
    assert list(others_during_reconnects([first], set(), NEVER, 0)) == []  # no storm


def test_ws_url_must_be_a_base_http_url() -> None:
    config = LoadConfig(url="http://127.0.0.1:1").resolved()
    assert config.socket_urls == ("http://127.0.0.1:1",)
    with pytest.raises(ValueError, match="--ws-url"):
        dataclasses.replace(config, ws_urls=("ws://127.0.0.1:1/ws",)).resolved()


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
