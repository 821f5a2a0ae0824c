"""Heartbeat: one timer for every socket of the process, instead of aiohttp's per-socket one.

aiohttp's own heartbeat schedules a callback for every chunk a socket receives (to push its
ping timer back) and keeps timers per socket. Here the reader loop only sets ``conn.heard``;
every ``interval_s`` (half the configured heartbeat) one sweep looks at all connections: a
connection silent for two sweeps gets a ping, and one still silent a sweep after its ping is
dropped (its peer is gone, so no close handshake is attempted). A connection whose reader
is awaiting a command (``busy``) is not silent: its pongs are waiting to be read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from trustmess.gateway.connection import Connection

log = logging.getLogger(__name__)

PING_AFTER = 2  # silent sweeps before a ping
DROP_AFTER = 3  # silent sweeps before the connection is dropped


class Heartbeat:
    def __init__(self, connections: Iterable[Connection], heartbeat_s: float) -> None:
        self._connections = connections
        self.interval_s = heartbeat_s / 2
        self._task: asyncio.Task[None] | None = None
        self.pings = 0
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.sweep()
            except Exception:
                log.exception("heartbeat sweep failed")

    def sweep(self) -> None:
        for conn in list(self._connections):
            if conn.heard or conn.busy:
                conn.heard = False
                conn.silent_sweeps = 0
                continue
            conn.silent_sweeps += 1
            if conn.silent_sweeps == PING_AFTER:
                self.pings += 1
                conn.ping()
            elif conn.silent_sweeps >= DROP_AFTER and not conn.closing:
                self.dropped += 1
                conn.drop("no answer to ping")
