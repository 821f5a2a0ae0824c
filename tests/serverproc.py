"""Run ``python -m trustmess`` as a child process, as an operator would, for process tests."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on http://([\d.]+):(\d+)")


class Server:
    """A started server: its process, base URL and everything it logged so far."""

    def __init__(self, process: asyncio.subprocess.Process, url: str, log: list[str]) -> None:
        self.process = process
        self.url = url
        self.log = log

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        async with asyncio.timeout(15):
            return await self.process.wait()

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def start_server(env: dict[str, str], *args: str) -> Server:
    """Start the server on port 0 with ``TRUSTMESS_*`` from ``env``; wait for its URL."""
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
