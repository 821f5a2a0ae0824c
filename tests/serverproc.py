"""Run ``python -m trustmess`` as a child process, as an operator would, for process tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on http://([\d.]+):(\d+)")
# The --workers supervisor's own line, logged once every worker listens.
WORKERS_LISTENING = re.compile(r"listening on http://([\d.]+):(\d+) \((\d+) workers\)")


class Server:
    """A started server: its process, base URL and everything it logged so far."""

    def __init__(self, process: asyncio.subprocess.Process, url: str, log: list[str]) -> None:
        self.process = process
        self.url = url
        self.log = log
        self.new_line = asyncio.Event()
        self.eof = False

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        async with asyncio.timeout(15):
            return await self.process.wait()

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def wait_for_log(
        self, pattern: re.Pattern[str], count: int = 1, timeout: float = 30.0
    ) -> list[str]:
        """Wait until at least ``count`` logged lines match ``pattern``; return them."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = [line for line in self.log if pattern.search(line)]
                    if len(found) >= count or self.eof:
                        break
                    self.new_line.clear()
                    await self.new_line.wait()
        except TimeoutError:
            pass
        if len(found) < count:
            raise AssertionError(f"{count} x {pattern.pattern!r} not in:\n" + "".join(self.log))
        return found


async def start_server(
    env: dict[str, str], *args: str, ready: re.Pattern[str] = LISTENING
) -> Server:
    """Start the server on port 0 with ``TRUSTMESS_*`` from ``env``; wait for its URL (the
    first line matching ``ready``)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTMESS_")}
    full_env.update({"TRUSTMESS_PORT": "0", **env})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trustmess", *args, cwd=ROOT, env=full_env, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    log: list[str] = []
    async with asyncio.timeout(60):
        while True:
            line = (await process.stderr.readline()).decode()
            if not line:
                raise AssertionError("server exited early:\n" + "".join(log))
            log.append(line)
            match = ready.search(line)
            if match:
                url = f"http://{match.group(1)}:{match.group(2)}"
                break
    server = Server(process, url, log)
    # Keep draining the pipe so the server never blocks on a full stderr.
    asyncio.get_running_loop().create_task(_drain(server))
    return server


async def _drain(server: Server) -> None:
    stderr = server.process.stderr
    assert stderr is not None
    async for line in stderr:
        server.log.append(line.decode())
        server.new_line.set()
    server.eof = True
    server.new_line.set()


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    return raw[raw.rindex(")") + 2 :].split()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    fields = _proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def child_pids(pid: int, command: str = "trustmess") -> list[int]:
    """Live direct children of ``pid`` whose command line mentions ``command`` (from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _proc_stat(int(entry.name))
        if fields is None or fields[0] == "Z" or int(fields[1]) != pid:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if command in cmdline:
            children.append(int(entry.name))
    return sorted(children)


def postgres_pids(data_dir: Path) -> list[int]:
    """PIDs of postgres processes serving a data dir under ``data_dir``."""
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


@contextlib.contextmanager
def embedded_data_dir(prefix: str) -> Iterator[Path]:
    """A fresh TRUSTMESS_DATA_DIR; afterwards its embedded PostgreSQL is killed and it is removed.

    Under /tmp, not pytest's private tmp: the embedded server runs as another user.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        for pid in postgres_pids(path):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(path, ignore_errors=True)
