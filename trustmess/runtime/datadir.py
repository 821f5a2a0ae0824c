"""One server per data directory: an exclusive ``flock`` on ``DATA_DIR/server.lock``.

Two ``serve`` processes on one embedded database would each start a local event hub, so neither
would see the other's messages live. The second is refused instead. ``migrate`` and
``createuser`` take no lock: they are meant to run beside a server. The lock is the kernel's, so
a killed server leaves nothing stale behind; the file only says who held it last.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = "server.lock"


class DataDirInUse(Exception):
    """Another process serves from the data directory."""


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's server lock, or raise :class:`DataDirInUse` at once."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir.resolve() / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            raise DataDirInUse(
                f"another server is running on the data directory {path.parent} (pid {holder}); "
                "stop it first, or give this one its own TRUSTMESS_DATA_DIR "
                "(several processes on one database: serve --workers N with a Redis broker)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock
