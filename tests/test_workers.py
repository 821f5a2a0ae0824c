"""``python -m trustmess serve --workers N``: N server processes on one port, one supervisor.

Runs the real command on the embedded database (data dir under /tmp) with the test Redis as
broker, and checks what an operator relies on: the refusal without a broker, one port served
by N separate processes, a crashed worker restarted, a worker that cannot start failing the
whole server, and no process outliving the supervisor (SIGTERM: everything stops, the database
included; SIGKILL: the workers follow it).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from ipaddress import ip_network
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.conftest import JWT_SECRET, eventually
from tests.serverproc import (
    ROOT,
    WORKERS_LISTENING,
    Server,
    child_pids,
    embedded_data_dir,
    pid_alive,
    postgres_pids,
    start_server,
)
from trustmess.cluster.supervisor import (
    LINE_LIMIT,
    LISTENING_MARK,
    RESTARTS_PER_MINUTE,
    Supervisor,
    Worker,
    label_worker_line,
    settings_env,
)
from trustmess.settings import Settings

WORKER_LISTENING = re.compile(r"^\[worker (\d+)\] .* listening on http://")


def test_settings_survive_the_trip_through_the_environment() -> None:
    settings = Settings(
        database_url="postgresql://u:p@db:5432/chat",
        port=9000,
        data_dir=Path("/srv/tm"),
        jwt_secret="s" * 40,
        allowed_origins=("https://a.example", "https://b.example"),
        trusted_proxies=(ip_network("10.0.0.0/8"), ip_network("2001:db8::/32")),
        ws_compression=True,
        ws_rate_per_s=12.5,
        commit_window_ms=0.25,
        broker="redis://cache:6379/2",
        workers=4,
        log_format="json",
    )
    assert Settings.from_env(settings_env(settings)) == settings
    assert "TRUSTMESS_JWT_SECRET" in settings_env(settings)
    assert "TRUSTMESS_DATABASE_URL" not in settings_env(Settings())


def test_restart_backoff_doubles_and_caps_restarts_per_minute() -> None:
    worker = Worker(1)
    delays = []
    for _ in range(RESTARTS_PER_MINUTE + 1):
        delays.append(Supervisor.restart_delay(worker))
        worker.restarts.append(time.monotonic())
    assert delays[:3] == [0.5, 1.0, 2.0]
    # The sixth restart within a minute waits until the first one is a minute old.
    assert delays[-1] > 50


async def test_a_log_line_over_the_reader_limit_does_not_stop_the_forwarding(capfdbinary) -> None:
    """A worker's record is one line, tracebacks included; one longer than the pipe reader's
    limit must not end the forwarding (the worker would then block on a full stderr pipe)."""
    script = (
        "import sys; w = sys.stderr.write; "
        f"w('x' * {2 * LINE_LIMIT} + '\\n'); w('after {LISTENING_MARK.decode()}x\\n')"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stderr=asyncio.subprocess.PIPE, limit=LINE_LIMIT
    )
    worker = Worker(1, process=process)
    supervisor = Supervisor(Settings(), {})
    async with asyncio.timeout(30):
        await supervisor.forward_stderr(worker, process)
        assert await process.wait() == 0
    assert worker.listening.is_set()
    forwarded = capfdbinary.readouterr().err
    assert b"was cut here" in forwarded and b"[worker 1] after listening" in forwarded


def test_worker_lines_are_labelled_in_the_log_format() -> None:
    text = b"2025-01-01 00:00:00,000 INFO trustmess hello\n"
    assert label_worker_line(text, 2, 99, "text") == b"[worker 2] " + text

    line = b'{"ts":"2025-01-01T00:00:00.000Z","level":"INFO","logger":"t","msg":"hi","pid":99}\n'
    labelled = label_worker_line(line, 2, 99, "json")
    assert labelled.endswith(b"}\n") and labelled.count(b"\n") == 1
    assert orjson.loads(labelled) == {**orjson.loads(line), "worker": 2}

    # Not a JSON record (Python's own crash output): wrapped in one, still one line.
    wrapped = orjson.loads(label_worker_line(b'  File "x.py", line 1\n', 3, 77, "json"))
    assert wrapped["msg"] == '  File "x.py", line 1'
    assert (wrapped["level"], wrapped["pid"], wrapped["worker"]) == ("WARNING", 77, 3)
    assert {"ts", "logger"} <= wrapped.keys()
    assert label_worker_line(b"\n", 3, 77, "json") == b""


async def run_to_completion(env: dict[str, str], *args: str) -> tuple[int, str, bytes]:
    """Run ``python -m trustmess ARGS`` with only ``env``'s TRUSTMESS_* variables; return its
    exit code, stderr and stdout."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTMESS_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "trustmess",
        *args,
        cwd=ROOT,
        env={**full_env, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, err.decode(), out


async def test_several_workers_need_a_shared_broker(tmp_path: Path) -> None:
    data_dir = tmp_path / "never-created"
    for args, env in (
        (["--workers", "2", "--broker", "local"], {}),
        ([], {"TRUSTMESS_WORKERS": "3"}),
    ):
        code, err, out = await run_to_completion(
            {"TRUSTMESS_DATA_DIR": str(data_dir), **env}, "serve", *args
        )
        assert code == 2, err
        lines = err.splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("trustmess: TRUSTMESS_WORKERS: ")
        assert "TRUSTMESS_BROKER=redis://" in lines[0]
        assert out == b""
    # Refused before anything was started or written.
    assert not data_dir.exists()


async def test_a_worker_that_cannot_start_stops_the_server(
    database_url: str, redis_url: str
) -> None:
    # The port is taken by a socket without SO_REUSEPORT: no worker can bind it.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "TRUSTMESS_DATABASE_URL": database_url,
            "TRUSTMESS_JWT_SECRET": JWT_SECRET,
            "TRUSTMESS_BROKER": redis_url,
        }
        code, err, _ = await run_to_completion(env, "serve", "--workers", "2", "--port", str(port))
    assert code == 1, err
    assert re.search(r"worker \d exited with code 1 during start-up", err), err
    assert "workers)" not in err and "all workers stopped" in err


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with embedded_data_dir("trustmess-workers-") as path:
        yield path


@pytest.fixture
async def cluster(data_dir: Path, redis_url: str) -> AsyncIterator[Server]:
    """``serve --workers 2`` on the embedded database, up once all workers listen."""
    server = await start_server(
        {"TRUSTMESS_DATA_DIR": str(data_dir), "TRUSTMESS_BROKER": redis_url},
        "serve",
        "--workers",
        "2",
        ready=WORKERS_LISTENING,
    )
    children = child_pids(server.process.pid)
    yield server
    await server.kill()
    for pid in children + child_pids(server.process.pid):
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def worker_lines(server: Server) -> list[str]:
    return [line for line in server.log if WORKER_LISTENING.search(line)]


async def assert_serves(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(10):
            # A new connection each time: the kernel spreads them over the workers.
            async with session.get(server.url + "/healthz", headers={"Connection": "close"}) as r:
                assert r.status == 200 and await r.json() == {"status": "ok"}
        async with session.get(server.url + "/readyz") as resp:
            body = await resp.json()
            assert resp.status == 200, body
            assert body["checks"]["broker"] == "redis connected"


async def test_workers_share_the_port_and_stop_on_sigterm(cluster: Server, data_dir: Path) -> None:
    # The supervisor announced the port only after both workers listened on it.
    announced = [line for line in cluster.log if WORKERS_LISTENING.search(line)]
    assert len(announced) == 1 and announced[0].rstrip().endswith("(2 workers)")
    before = cluster.log[: cluster.log.index(announced[0])]
    numbers = sorted(m[1] for m in map(WORKER_LISTENING.search, before) if m is not None)
    assert numbers == ["1", "2"]
    port = cluster.url.rsplit(":", 1)[1]
    assert all(f":{port}" in line for line in worker_lines(cluster))
    children = child_pids(cluster.process.pid)
    assert len(children) == 2, children
    assert postgres_pids(data_dir), "the supervisor starts the embedded database once"
    await assert_serves(cluster)

    assert await cluster.stop(signal.SIGTERM) == 0, "".join(cluster.log)
    assert not any(pid_alive(pid) for pid in children)
    assert postgres_pids(data_dir) == []
    assert sum("shutting down" in line for line in cluster.log) == 2


async def test_a_killed_worker_is_restarted(cluster: Server) -> None:
    victim, survivor = child_pids(cluster.process.pid)
    os.kill(victim, signal.SIGKILL)
    await cluster.wait_for_log(re.compile(r"worker \d \(pid \d+\) exited with code -9; restarting"))
    # Its replacement listens on the same port: three worker "listening" lines in all.
    await cluster.wait_for_log(WORKER_LISTENING, count=3)
    children = child_pids(cluster.process.pid)
    assert len(children) == 2 and victim not in children and survivor in children
    await assert_serves(cluster)
    assert await cluster.stop(signal.SIGINT) == 0, "".join(cluster.log)
    assert not any(pid_alive(pid) for pid in children)


async def test_workers_die_with_a_killed_supervisor(cluster: Server) -> None:
    children = child_pids(cluster.process.pid)
    assert len(children) == 2
    await cluster.stop(signal.SIGKILL)
    # PR_SET_PDEATHSIG sends each worker SIGTERM: they shut down on their own.
    await eventually(lambda: not any(pid_alive(pid) for pid in children), 15, "workers to exit")


async def test_workers_log_json_like_the_supervisor(data_dir: Path, redis_url: str) -> None:
    server = await start_server(
        {
            "TRUSTMESS_DATA_DIR": str(data_dir),
            "TRUSTMESS_BROKER": redis_url,
            "TRUSTMESS_LOG_FORMAT": "json",
        },
        "serve",
        "--workers",
        "2",
        ready=WORKERS_LISTENING,
    )
    children = child_pids(server.process.pid)
    try:
        assert await server.stop(signal.SIGTERM) == 0, "".join(server.log)
        await server.wait_for_log(re.compile(r'"msg":"embedded PostgreSQL stopped"'))
    finally:
        await server.kill()
        for pid in children:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    records = [orjson.loads(line) for line in server.log]
    assert all(isinstance(r, dict) and {"ts", "level", "msg", "pid"} <= r.keys() for r in records)
    by_worker = {
        r["worker"]: r["pid"]
        for r in records
        if "worker" in r and r["msg"].startswith("listening on http://")
    }
    assert sorted(by_worker) == [1, 2] and sorted(by_worker.values()) == sorted(children)
    own = [r for r in records if "worker" not in r]
    assert all(r["pid"] == server.process.pid for r in own)
    assert any(r["msg"].endswith("(2 workers)") for r in own)
