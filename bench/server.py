"""Start and stop the servers of a benchmark scenario, and the Redis the scale-out ones share.

A :class:`BenchServer` is one ``python -m trustmess serve`` process: embedded database in a fresh
data dir under /tmp (or ``TRUSTMESS_DATABASE_URL`` when given), port 0, and limits lifted so the
load tester measures the server rather than its rate limiters. A :class:`BenchCluster` is what a
scenario runs against: one server (maybe a ``--workers`` supervisor), or several nodes sharing
the first one's database and a Redis (:class:`BenchRedis`).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trustmess.cluster.supervisor import die_with_parent, free_port
from trustmess.loadtest.procinfo import child_pids

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on http://([\d.]+):(\d+)")
# A --workers supervisor's own line, once every worker listens (each worker's "[worker i] …
# listening on" line comes earlier and must not count).
WORKERS_LISTENING = re.compile(r"listening on http://([\d.]+):(\d+) \(\d+ workers\)")
POSTGRES_PID = re.compile(r"embedded PostgreSQL ready \(pid (\d+)\)")
REDIS_URL_ENV = "TRUSTMESS_BENCH_REDIS_URL"

# Cheap set-up and no per-socket command limit: the benchmark measures messaging, not bcrypt.
BENCH_ENV = {
    "TRUSTMESS_BCRYPT_ROUNDS": "4",
    "TRUSTMESS_AUTH_BURST": "1000000",
    "TRUSTMESS_AUTH_RATE_PER_S": "100000",
    "TRUSTMESS_BCRYPT_PER_ADDRESS": "100000",
    "TRUSTMESS_BCRYPT_QUEUE_MAX": "100000",
    "TRUSTMESS_WS_RATE_PER_S": "1000000",
    "TRUSTMESS_WS_BURST": "1000000",
}


class BenchServer:
    """A running server: ``url``, ``pid``, the postmaster's ``db_pid`` (embedded only)."""

    def __init__(
        self,
        extra_env: dict[str, str],
        database_url: str | None = None,
        args: Sequence[str] = (),
        ready: re.Pattern[str] = LISTENING,
    ) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="trustmess-bench-", dir="/tmp"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTMESS_")}
        self.env = {**BENCH_ENV, **extra_env, "TRUSTMESS_PORT": "0"}
        self.env["TRUSTMESS_DATA_DIR"] = str(self.data_dir)
        if database_url:
            self.env["TRUSTMESS_DATABASE_URL"] = database_url
            self.env.setdefault("TRUSTMESS_JWT_SECRET", secrets.token_urlsafe(48))
        self.log: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trustmess", "serve", *args],
            cwd=ROOT,
            env={**env, **self.env},
            stderr=subprocess.PIPE,
            text=True,
        )
        self.url, self.db_pid = self._wait_listening(ready)
        threading.Thread(target=self._drain, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def pids(self) -> list[int]:
        """This process and its ``--workers`` children, if any (the processes that serve)."""
        return [self.pid, *(pid for pid in child_pids(self.pid) if _is_worker(pid))]

    @property
    def dsn(self) -> str:
        return self.env.get("TRUSTMESS_DATABASE_URL") or (
            f"postgresql://postgres@/postgres?host={self.data_dir / 'pg'}"
        )

    def _wait_listening(self, ready: re.Pattern[str]) -> tuple[str, int | None]:
        assert self.process.stderr is not None
        db_pid = None
        for line in self.process.stderr:
            self.log.append(line)
            found = POSTGRES_PID.search(line)
            if found:
                db_pid = int(found.group(1))
            found = ready.search(line)
            if found:
                return f"http://{found.group(1)}:{found.group(2)}", db_pid
        raise RuntimeError("server exited before listening:\n" + "".join(self.log))

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    def stop(self) -> None:
        """SIGTERM (the server stops its workers and embedded database), then remove the data
        dir."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _is_worker(pid: int) -> bool:
    """Whether ``pid`` is a ``serve --worker`` child (and not, say, the embedded postmaster)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"trustmess" in argv and b"--worker" in argv


@dataclass(frozen=True)
class ServerSetup:
    """How a scenario's servers run: extra settings, ``--workers``, and how many nodes."""

    env: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    nodes: int = 1
    fresh_per_run: bool = False  # new servers for each run of a scenario (``--repeat``)

    @property
    def needs_broker(self) -> bool:
        return self.workers > 1 or self.nodes > 1


class BenchCluster:
    """The servers of one scenario. Node 1 runs the embedded database (unless
    ``database_url``) and migrates; further nodes use node 1's database with ``--no-migrate``.
    Every node gets the same JWT secret, and the Redis as broker when there is more than one
    process.
    """

    def __init__(
        self, setup: ServerSetup, database_url: str | None, redis: BenchRedis | None
    ) -> None:
        self.setup = setup
        self.broker_pid: int | None = None  # the Redis's, when it runs on this machine
        env = dict(setup.env)
        if setup.needs_broker:
            assert redis is not None, "a scale-out setup needs a Redis"
            env["TRUSTMESS_BROKER"] = redis.url
            self.broker_pid = redis.pid
        if setup.nodes > 1:
            env["TRUSTMESS_JWT_SECRET"] = secrets.token_urlsafe(48)
        first_args: list[str] = []
        ready = LISTENING
        if setup.workers > 1:
            first_args, ready = ["--workers", str(setup.workers)], WORKERS_LISTENING
        self.nodes: list[BenchServer] = []
        try:
            self.nodes.append(BenchServer(env, database_url, first_args, ready))
            for _ in range(setup.nodes - 1):
                self.nodes.append(BenchServer(env, self.nodes[0].dsn, ["--no-migrate"]))
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        """Node 1: set-up and verification go here."""
        return self.nodes[0].url

    @property
    def ws_urls(self) -> list[str]:
        """Every node's URL when there are several (the sockets are spread over them)."""
        return [node.url for node in self.nodes] if len(self.nodes) > 1 else []

    @property
    def pids(self) -> list[int]:
        """Every server process: each node, and the workers of a ``--workers`` supervisor."""
        return [pid for node in self.nodes for pid in node.pids]

    @property
    def db_pid(self) -> int | None:
        return self.nodes[0].db_pid

    @property
    def dsn(self) -> str:
        return self.nodes[0].dsn

    def pid_names(self, count: int) -> list[str]:
        """Placeholders for ``count`` :attr:`pids` in the commands shown in RESULTS.md."""
        if self.setup.workers > 1:
            return ["$SUPERVISOR_PID", *(f"$WORKER{i}_PID" for i in range(1, count))]
        if len(self.nodes) > 1:
            return [f"$NODE{i}_PID" for i in range(1, len(self.nodes) + 1)]
        return ["$SERVER_PID"]

    def url_names(self) -> dict[str, str]:
        """Placeholders for the node URLs in the commands shown in RESULTS.md."""
        if len(self.nodes) == 1:
            return {self.url: "$URL"}
        return {node.url: f"$NODE{i}_URL" for i, node in enumerate(self.nodes, 1)}

    def commands(self) -> list[str]:
        """How the servers were started (beyond the common settings), for RESULTS.md."""
        env = " ".join(f"{k}={v}" for k, v in sorted(self.setup.env.items()))
        if self.setup.needs_broker:
            env += " TRUSTMESS_BROKER=$REDIS_URL"
        if self.setup.nodes > 1:
            env += " TRUSTMESS_JWT_SECRET=$SECRET"
        serve = f"{env} python -m trustmess serve".strip()
        if self.setup.workers > 1:
            return [f"{serve} --workers {self.setup.workers}"]
        if self.setup.nodes == 1:
            return [serve]
        others = ", ".join(str(i) for i in range(2, self.setup.nodes + 1))
        return [
            f"{serve}  # node 1: embedded database, migrations",
            f"TRUSTMESS_DATABASE_URL=$NODE1_DATABASE_URL {serve} --no-migrate  # nodes {others}",
        ]

    def stop(self) -> None:
        """Stop the nodes, node 1 (which owns the embedded database) last."""
        for node in reversed(self.nodes):
            node.stop()


class RedisUnavailable(RuntimeError):
    """Neither ``TRUSTMESS_BENCH_REDIS_URL`` nor a ``redis-server`` binary: the message says
    which."""


class BenchRedis:
    """The Redis of the scale-out scenarios: ``TRUSTMESS_BENCH_REDIS_URL``, else a throwaway
    ``redis-server`` on a free loopback port that persists nothing (``pid`` is then its pid,
    for the load tester's ``--broker-pid``). ``own=True`` always starts one (a scenario that
    stops and restarts it must not do that to a shared Redis)."""

    def __init__(self, timeout: float = 10.0, own: bool = False) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None
        self._binary: str | None = None
        self._port = 0
        given = None if own else os.environ.get(REDIS_URL_ENV)
        if given:
            self.url = given
            return
        self._binary = shutil.which("redis-server")
        if self._binary is None:
            raise RedisUnavailable(f"no `redis-server` on PATH and {REDIS_URL_ENV} is not set")
        self.workdir = Path(tempfile.mkdtemp(prefix="trustmess-bench-redis-", dir="/tmp"))
        self._port = free_port("127.0.0.1")
        self.url = f"redis://127.0.0.1:{self._port}/0"
        self.start_server(timeout)

    def start_server(self, timeout: float = 10.0) -> None:
        """Start the ``redis-server`` (again, on the same port: an outage ends) and return once
        it answers PING. Nothing is persisted, so a restarted one starts empty."""
        assert self._binary is not None and self.workdir is not None, "not a Redis started here"
        assert self.process is None or self.process.poll() is not None, "already running"
        # Nothing persisted: a throwaway bus, not a store.
        command = [self._binary, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
        command += ["--port", str(self._port), "--dir", str(self.workdir)]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent(),  # no redis-server left behind by a killed run
        )
        deadline = time.monotonic() + timeout
        while not _answers_ping(self._port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RedisUnavailable(f"redis-server did not start on port {self._port}")
            time.sleep(0.005)

    def stop_server(self) -> None:
        """Stop the ``redis-server`` (SIGTERM, as a service manager does) and wait for it to
        exit; :meth:`start_server` brings it back on the same port."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def stop(self) -> None:
        self.stop_server()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
