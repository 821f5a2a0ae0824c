"""The real command line: ``python -m trustmess`` on its embedded database, as an operator runs it.

Starts the server as a child process, talks HTTP to it, stops it with SIGTERM (and once with
SIGKILL) and checks that no PostgreSQL process outlives it and that data survives a restart.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on http://([\d.]+):(\d+)")


def postgres_pids(data_dir: Path) -> list[int]:
    """PIDs of postgres processes serving ``data_dir`` (from /proc, no psutil needed)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "postgres" in cmdline and str(data_dir) in cmdline and "-D" in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under /tmp, not pytest's private tmp: the embedded server runs as another user.
    path = Path(tempfile.mkdtemp(prefix="trustmess-cli-", dir="/tmp"))
    yield path
    for pid in postgres_pids(path):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(path, ignore_errors=True)


class Server:
    def __init__(self, process: asyncio.subprocess.Process, url: str, log: list[str]) -> None:
        self.process = process
        self.url = url
        self.log = log


async def start_server(data_dir: Path) -> Server:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTMESS_")}
    env.update({"TRUSTMESS_DATA_DIR": str(data_dir), "TRUSTMESS_PORT": "0"})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trustmess", cwd=ROOT, env=env, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    log: list[str] = []
    async with asyncio.timeout(60):
        while True:
            line = (await process.stderr.readline()).decode()
            if not line:
                raise AssertionError("server exited early:\n" + "".join(log))
            log.append(line)
            match = LISTENING.search(line)
            if match:
                url = f"http://{match.group(1)}:{match.group(2)}"
                break
    # Keep draining the pipe so the server never blocks on a full stderr.
    asyncio.get_running_loop().create_task(_drain(process, log))
    return Server(process, url, log)


async def _drain(process: asyncio.subprocess.Process, log: list[str]) -> None:
    assert process.stderr is not None
    async for line in process.stderr:
        log.append(line.decode())


async def stop(server: Server, signum: int = signal.SIGTERM) -> int:
    server.process.send_signal(signum)
    async with asyncio.timeout(15):
        return await server.process.wait()


@pytest.fixture
async def running(data_dir: Path) -> AsyncIterator[Server]:
    server = await start_server(data_dir)
    yield server
    if server.process.returncode is None:
        server.process.kill()
        await server.process.wait()


def socket_dsn(data_dir: Path) -> str:
    return f"postgresql://postgres@/postgres?host={data_dir / 'pg'}"


async def test_serves_health_and_stops_cleanly_on_sigterm(running: Server, data_dir: Path) -> None:
    assert any(str(data_dir / "pg") in line for line in running.log), "data dir not printed"
    async with aiohttp.ClientSession() as session:
        async with session.get(running.url + "/healthz") as resp:
            assert resp.status == 200 and await resp.json() == {"status": "ok"}
        async with session.get(running.url + "/readyz") as resp:
            assert resp.status == 200
    assert postgres_pids(data_dir), "embedded PostgreSQL should be running"
    code = await stop(running)
    assert code == 0, "".join(running.log)
    assert postgres_pids(data_dir) == []


async def test_data_survives_restart(data_dir: Path) -> None:
    first = await start_server(data_dir)
    conn = await asyncpg.connect(socket_dsn(data_dir))
    await conn.execute(
        "INSERT INTO users (username, password_hash, display_name) VALUES ('keeper', 'x', 'K')"
    )
    await conn.close()
    assert await stop(first) == 0
    second = await start_server(data_dir)
    try:
        conn = await asyncpg.connect(socket_dsn(data_dir))
        assert await conn.fetchval("SELECT count(*) FROM users WHERE username = 'keeper'") == 1
        await conn.close()
    finally:
        assert await stop(second) == 0
    assert postgres_pids(data_dir) == []


async def test_restart_after_sigkill_still_stops_postgres(data_dir: Path) -> None:
    first = await start_server(data_dir)
    await stop(first, signal.SIGKILL)
    # SIGKILL gives no chance to clean up: the database outlives its owner ...
    assert postgres_pids(data_dir)
    second = await start_server(data_dir)
    # ... and the next run adopts it and stops it on exit.
    assert await stop(second) == 0, "".join(second.log)
    assert postgres_pids(data_dir) == []
