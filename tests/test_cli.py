"""The real command line: ``python -m trustmess`` on its embedded database, as an operator runs it.

Starts the server as a child process, talks HTTP to it, stops it with SIGTERM (and once with
SIGKILL) and checks that no PostgreSQL process outlives it and that data survives a restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.serverproc import ROOT, Server, embedded_data_dir, postgres_pids, start_server


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with embedded_data_dir("trustmess-cli-") as path:
        yield path


async def start(data_dir: Path) -> Server:
    return await start_server({"TRUSTMESS_DATA_DIR": str(data_dir)})


async def stop(server: Server, signum: int = signal.SIGTERM) -> int:
    return await server.stop(signum)


@pytest.fixture
async def running(data_dir: Path) -> AsyncIterator[Server]:
    server = await start(data_dir)
    yield server
    await server.kill()


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
    first = await start(data_dir)
    conn = await asyncpg.connect(socket_dsn(data_dir))
    await conn.execute(
        "INSERT INTO users (username, password_hash, display_name) VALUES ('keeper', 'x', 'K')"
    )
    await conn.close()
    assert await stop(first) == 0
    second = await start(data_dir)
    try:
        conn = await asyncpg.connect(socket_dsn(data_dir))
        assert await conn.fetchval("SELECT count(*) FROM users WHERE username = 'keeper'") == 1
        await conn.close()
    finally:
        assert await stop(second) == 0
    assert postgres_pids(data_dir) == []


async def test_restart_after_sigkill_still_stops_postgres(data_dir: Path) -> None:
    first = await start(data_dir)
    await stop(first, signal.SIGKILL)
    # SIGKILL gives no chance to clean up: the database outlives its owner ...
    assert postgres_pids(data_dir)
    second = await start(data_dir)
    # ... and the next run adopts it and stops it on exit.
    assert await stop(second) == 0, "".join(second.log)
    assert postgres_pids(data_dir) == []


async def run_cli(env: dict[str, str], *args: str, stdin: bytes = b"") -> tuple[int, str]:
    """``python -m trustmess ARGS`` to completion: its exit code and standard error."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTMESS_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "trustmess",
        *args,
        cwd=ROOT,
        env={**full_env, **env},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(stdin), 60)
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_a_second_server_on_the_same_data_dir_is_refused(
    running: Server, data_dir: Path
) -> None:
    code, err = await run_cli({"TRUSTMESS_DATA_DIR": str(data_dir), "TRUSTMESS_PORT": "0"})
    assert code == 4, err
    (line,) = err.splitlines()
    assert line.startswith(
        f"trustmess: another server is running on the data directory {data_dir.resolve()} "
        f"(pid {running.process.pid})"
    ), line
    # The first is unharmed, and still the only one.
    async with aiohttp.ClientSession() as session, session.get(running.url + "/readyz") as resp:
        assert resp.status == 200


async def test_createuser_beside_a_running_server_leaves_its_database_alone(
    running: Server, data_dir: Path
) -> None:
    code, err = await run_cli(
        {"TRUSTMESS_DATA_DIR": str(data_dir), "TRUSTMESS_BCRYPT_ROUNDS": "4"},
        "createuser",
        "carol",
        "--password-stdin",
        stdin=b"a long enough password\n",
    )
    assert code == 0, err
    assert "already running" in err and "left running (still used by pid" in err, err
    assert "embedded PostgreSQL stopped" not in err
    async with aiohttp.ClientSession() as session:
        login = {"username": "carol", "password": "a long enough password"}
        async with session.post(running.url + "/auth/login", json=login) as resp:
            assert resp.status == 200, await resp.text()
    assert postgres_pids(data_dir)


@pytest.mark.parametrize("command", ["serve", "migrate"])
async def test_an_unreachable_database_is_one_line_and_exit_3(command: str) -> None:
    code, err = await run_cli(
        {
            "TRUSTMESS_DATABASE_URL": "postgresql://someone:hunter2hunter2@127.0.0.1:1/chat",
            "TRUSTMESS_JWT_SECRET": "s" * 40,
        },
        command,
    )
    assert code == 3
    assert err.splitlines()[-1] == (
        "trustmess: cannot use the database at 127.0.0.1:1/chat: Connection refused"
    )
    assert "Traceback" not in err and "hunter2" not in err
