"""A real Chromium for the web client's tests, and a real server for it to talk to.

Chromium is found through ``TRUSTMESS_CHROMIUM`` (a path), then ``/usr/bin/chromium`` (Debian's,
which ``.ci/run`` installs), then a browser Playwright installed itself. Without one the tests
fail, saying how to install it: the browser tests are the proof of the client's guarantees and
are never skipped.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import JWT_SECRET, TestDatabaseServer, _admin, with_database

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
# Screenshots of the main screens, kept after the run (CI keeps the folder as an artifact).
ARTIFACTS = Path(
    os.environ.get("TRUSTMESS_ARTIFACTS", Path(tempfile.gettempdir(), "trustmess-artifacts"))
)

INSTALL_HINT = (
    "no Chromium for the browser tests: install Debian's (`apt-get update && apt-get install -y "
    "chromium`, as .ci/run does), or set TRUSTMESS_CHROMIUM to a Chromium executable, or run "
    "`playwright install chromium` where downloads are allowed"
)


def chromium_executable(playwright_chromium_path: str) -> str:
    """The Chromium to launch; fails the test (never skips) when there is none."""
    named = os.environ.get("TRUSTMESS_CHROMIUM")
    if named and not (Path(named).is_file() and os.access(named, os.X_OK)):
        pytest.fail(f"TRUSTMESS_CHROMIUM={named} is not an executable file", pytrace=False)
    candidates = [
        os.environ.get("TRUSTMESS_CHROMIUM", ""),
        str(DEBIAN_CHROMIUM),
        playwright_chromium_path,
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(INSTALL_HINT, pytrace=False)


class WebServer:
    """``python -m trustmess serve`` on a fresh database, as a newcomer runs it."""

    def __init__(self, process: subprocess.Popen[str], url: str, log: list[str]) -> None:
        self.process = process
        self.url = url
        self.log = log

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()


def start_web_server(database_url: str, **settings: str) -> WebServer:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTMESS_")}
    env.update(
        {
            "TRUSTMESS_DATABASE_URL": database_url,
            "TRUSTMESS_JWT_SECRET": JWT_SECRET,
            "TRUSTMESS_PORT": "0",
            "TRUSTMESS_BCRYPT_ROUNDS": "4",
            "TRUSTMESS_AUTH_BURST": "1000",
            "TRUSTMESS_BCRYPT_PER_ADDRESS": "100",
            **{f"TRUSTMESS_{name.upper()}": value for name, value in settings.items()},
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "trustmess", "serve", "--no-migrate"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    log: list[str] = []
    url = None
    for line in process.stderr:
        log.append(line)
        match = LISTENING.search(line)
        if match:
            url = match.group(1)
            break
    if url is None:
        process.wait()
        raise AssertionError("the server exited early:\n" + "".join(log))
    stderr = process.stderr
    # Keep draining stderr so that the server never blocks on a full pipe.
    threading.Thread(target=lambda: log.extend(stderr), daemon=True).start()
    return WebServer(process, url, log)


def database_for(pg_server: TestDatabaseServer) -> Iterator[str]:
    """A fresh migrated database (a copy of the session's template), dropped afterwards."""
    name = f"tmweb_{uuid.uuid4().hex[:12]}"
    _admin_in_thread(
        pg_server.admin_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{pg_server.template}"'
    )
    try:
        yield with_database(pg_server.admin_dsn, name)
    finally:
        _admin_in_thread(pg_server.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin_in_thread(dsn: str, statement: str) -> None:
    # Playwright's sync API runs an event loop in this thread: asyncio.run needs another one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(_admin(dsn, statement))).result()
