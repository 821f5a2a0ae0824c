"""``serve --workers N``: one supervisor process and N server processes sharing one port.

The parent does the once-only work in ``__main__`` (embedded database, migrations, JWT
secret); :func:`supervise` then fixes the port (a free one for port 0) and starts N children
as ``python -m trustmess serve --no-migrate --worker`` with the resolved settings in their
environment. Each child is a full node that binds the same port with ``SO_REUSEPORT`` (the
kernel spreads connections across them) and talks to the others through the broker, which
therefore cannot be ``local``.

The parent forwards each child's stderr line by line (prefixed ``[worker i]``, or with a
``"worker": i`` field in ``TRUSTMESS_LOG_FORMAT=json``), announces
``listening on … (N workers)`` once every child listens, restarts a child that dies (with
backoff, at most :data:`RESTARTS_PER_MINUTE` a minute per worker), and on SIGINT/SIGTERM passes
the signal on and waits for the children. On Linux each child also gets ``PR_SET_PDEATHSIG``
so it is sent SIGTERM if the parent dies without a word (SIGKILL, OOM killer); on other
systems children of a SIGKILLed parent keep running until stopped by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import orjson

from trustmess.logs import JsonFormatter
from trustmess.settings import Settings, SettingsError, env_name

log = logging.getLogger("trustmess")

STARTUP_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 20.0
RESTARTS_PER_MINUTE = 5
LISTENING_MARK = b"listening on http://"
# A record is one line (tracebacks included); asyncio.StreamReader refuses longer lines.
LINE_LIMIT = 1 << 20
PR_SET_PDEATHSIG = 1


def check_workers(settings: Settings) -> None:
    """Refuse several workers on the in-process hub: each would see only its own sockets."""
    if settings.workers > 1 and settings.broker == "local":
        raise SettingsError(
            f"TRUSTMESS_WORKERS: {settings.workers} workers need a shared broker "
            "(TRUSTMESS_BROKER=redis://host:port/db); with 'local' a message would reach only "
            "the sockets of the process that stored it"
        )


def settings_env(settings: Settings) -> dict[str, str]:
    """``TRUSTMESS_*`` variables that make ``Settings.from_env`` rebuild ``settings``."""
    env = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if value is None:
            continue
        if isinstance(value, bool):
            raw = "true" if value else "false"
        elif isinstance(value, tuple):
            raw = ",".join(map(str, value))
        elif isinstance(value, float):
            raw = repr(value)
        else:
            raw = str(value)
        env[env_name(f.name)] = raw
    return env


def free_port(host: str) -> int:
    """A port nobody listens on right now (the children bind it moments later)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.bind(address)
        port: int = probe.getsockname()[1]
    return port


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when the parent dies.

    Linux ties the signal to the *thread* that forked: spawn from a thread that lives as long
    as the parent (here, the event loop's main thread).
    """
    if not sys.platform.startswith("linux"):
        return None
    # Resolved before fork: loading a library in the forked child could deadlock.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def label_worker_line(line: bytes, number: int, pid: int, log_format: str) -> bytes:
    """A line worker ``number`` wrote to stderr, marked for the supervisor's own stderr.

    Text: prefixed with ``[worker i] ``. JSON: the worker's record gains ``"worker": i``; a
    line that is not a JSON object (Python's last words before logging was set up, say) is
    wrapped in a record of its own, so the stream stays one JSON object per line.
    """
    if log_format != "json":
        return f"[worker {number}] ".encode() + line
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        text = line.decode(errors="replace").rstrip("\r\n")
        if not text:
            return b""
        raw = logging.makeLogRecord(
            {
                "name": log.name,
                "levelname": "WARNING",
                "levelno": logging.WARNING,
                "msg": text,
                "process": pid,
            }
        )
        record = JsonFormatter().fields(raw)
    record["worker"] = number
    return orjson.dumps(record, default=str) + b"\n"


@dataclass(slots=True, eq=False)
class Worker:
    """One child slot; its process is replaced when it dies."""

    number: int
    process: asyncio.subprocess.Process | None = None
    listening: asyncio.Event = field(default_factory=asyncio.Event)
    restarts: deque[float] = field(default_factory=deque)
    reader: asyncio.Task[None] | None = None


class Supervisor:
    """Starts, watches, restarts and stops the children."""

    def __init__(self, settings: Settings, env: dict[str, str]) -> None:
        self.settings = settings
        self.env = env
        self.workers = [Worker(n) for n in range(1, settings.workers + 1)]
        self.stop = asyncio.Event()
        self.started = False
        self.failed = False
        self.signal = signal.SIGTERM
        self.preexec = die_with_parent()

    def request_stop(self, signum: int) -> None:
        if self.stop.is_set():
            log.info("already stopping (%s)", signal.Signals(signum).name)
            return
        log.info("%s: stopping %d workers", signal.Signals(signum).name, len(self.workers))
        self.signal = signal.Signals(signum)
        self.stop.set()

    async def run(self) -> int:
        """Serve until a stop signal or a failed start-up; 0 when every child stopped cleanly."""
        watchers = []
        try:
            for worker in self.workers:
                await self.spawn(worker)
            watchers = [asyncio.create_task(self.watch(w)) for w in self.workers]
            await self.wait_listening()
            await self.stop.wait()
        finally:
            self.stop.set()
            clean = await self.shutdown(watchers)
        return 0 if clean and not self.failed else 1

    async def wait_listening(self) -> None:
        async def every_worker_listens() -> None:
            for worker in self.workers:
                await worker.listening.wait()

        async def stop_requested() -> None:
            await self.stop.wait()

        all_listening = asyncio.create_task(every_worker_listens())
        stopped = asyncio.create_task(stop_requested())
        done, _ = await asyncio.wait(
            {all_listening, stopped},
            timeout=STARTUP_TIMEOUT_S,
            return_when=asyncio.FIRST_COMPLETED,
        )
        all_listening.cancel()
        stopped.cancel()
        if all_listening in done and not self.stop.is_set():
            self.started = True
            host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
            log.info(
                "listening on http://%s:%d (%d workers)",
                host,
                self.settings.port,
                len(self.workers),
            )
        elif not self.stop.is_set():
            log.error("workers did not listen within %.0f s: stopping", STARTUP_TIMEOUT_S)
            self.failed = True
            self.stop.set()

    async def spawn(self, worker: Worker) -> None:
        worker.listening.clear()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "trustmess",
            "serve",
            "--no-migrate",
            "--worker",
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            limit=LINE_LIMIT,
            # Own process group: a terminal's Ctrl-C reaches only the parent, which forwards it
            # once (a second SIGINT in the middle of a child's shutdown would cut it short).
            process_group=0,
            preexec_fn=self.preexec,
        )
        worker.process = process
        worker.reader = asyncio.create_task(self.forward_stderr(worker, process))
        log.debug("worker %d started (pid %d)", worker.number, process.pid)
        if self.stop.is_set():  # a restart raced with shutdown
            process.send_signal(self.signal)

    async def forward_stderr(self, worker: Worker, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        out = sys.stderr.buffer
        while True:
            try:
                line = await process.stderr.readline()
            except ValueError:  # a line over LINE_LIMIT: asyncio dropped its head
                line = b"(a log line over %d bytes was cut here)\n" % LINE_LIMIT
            if not line:
                break
            labelled = label_worker_line(line, worker.number, process.pid, self.settings.log_format)
            # Keep reading even if our own stderr is gone: a child must never block on it.
            with contextlib.suppress(OSError, ValueError):
                out.write(labelled)
                out.flush()
            if LISTENING_MARK in line:
                worker.listening.set()

    async def watch(self, worker: Worker) -> None:
        """Restart the worker's process whenever it exits while the server should run."""
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            if worker.reader is not None:
                await worker.reader
            if self.stop.is_set():
                return
            if not self.started:
                log.error("worker %d exited with code %d during start-up", worker.number, code)
                self.failed = True
                self.stop.set()
                return
            delay = self.restart_delay(worker)
            log.warning(
                "worker %d (pid %d) exited with code %d; restarting in %.1f s",
                worker.number,
                worker.process.pid,
                code,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), delay)
            if self.stop.is_set():
                return
            worker.restarts.append(time.monotonic())
            await self.spawn(worker)

    @staticmethod
    def restart_delay(worker: Worker) -> float:
        """Backoff doubling with each restart in the last minute; at most 5 restarts a minute."""
        now = time.monotonic()
        while worker.restarts and now - worker.restarts[0] >= 60:
            worker.restarts.popleft()
        delay = min(30.0, 0.5 * 2.0 ** len(worker.restarts))
        if len(worker.restarts) >= RESTARTS_PER_MINUTE:
            delay = max(delay, worker.restarts[0] + 60 - now)
        return delay

    async def shutdown(self, watchers: list[asyncio.Task[None]]) -> bool:
        """Forward the stop signal and wait for every child (SIGKILL after the timeout);
        True when each exited with code 0."""
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(self.signal)
        try:
            async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
                # A watcher returns once its worker's process has exited (a replacement spawned
                # during the stop was signalled by spawn).
                await asyncio.gather(*watchers, return_exceptions=True)
                for worker in self.workers:
                    if worker.process is not None:
                        await worker.process.wait()
        except TimeoutError:
            for worker in self.workers:
                if worker.process is not None and worker.process.returncode is None:
                    log.error("worker %d did not stop in time: killing it", worker.number)
                    worker.process.kill()
                    await worker.process.wait()
        for worker in self.workers:
            if worker.reader is not None:
                await worker.reader
        log.info("all workers stopped")
        return all(w.process is not None and w.process.returncode == 0 for w in self.workers)


def supervise(settings: Settings) -> int:
    """Run ``settings.workers`` server processes until SIGINT/SIGTERM; return the exit code.

    ``settings`` must be resolved: database URL, JWT secret, migrations already applied.
    """
    check_workers(settings)
    if settings.port == 0:
        settings = settings.replace(port=free_port(settings.host))
        log.info("port 0: picked free port %d for all workers", settings.port)
    env = {**os.environ, **settings_env(settings)}
    return asyncio.run(_supervise(settings, env))


async def _supervise(settings: Settings, env: dict[str, str]) -> int:
    supervisor = Supervisor(settings, env)
    loop = asyncio.get_running_loop()
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        loop.add_signal_handler(signum, supervisor.request_stop, signum)
    try:
        return await supervisor.run()
    finally:
        for signum, handler in previous.items():
            loop.remove_signal_handler(signum)
            # Keep SIGTERM unwinding __main__'s `with` so the embedded database still stops.
            if handler is not None:
                signal.signal(signum, handler)
