"""Start and stop one ``python -m trustmess serve`` process for the benchmark.

Embedded database in a fresh data dir under /tmp (or ``TRUSTMESS_DATABASE_URL`` when given), port
0, and limits lifted so the load tester measures the server rather than its rate limiters.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on http://([\d.]+):(\d+)")
POSTGRES_PID = re.compile(r"embedded PostgreSQL ready \(pid (\d+)\)")

# Cheap set-up and no per-socket command limit: the benchmark measures messaging, not bcrypt.
BENCH_ENV = {
    "TRUSTMESS_BCRYPT_ROUNDS": "4",
    "TRUSTMESS_AUTH_BURST": "1000000",
    "TRUSTMESS_AUTH_RATE_PER_S": "100000",
    "TRUSTMESS_WS_RATE_PER_S": "1000000",
    "TRUSTMESS_WS_BURST": "1000000",
}


class BenchServer:
    """A running server: ``url``, ``pid``, the postmaster's ``db_pid`` (embedded only)."""

    def __init__(self, extra_env: dict[str, str], database_url: str | None = None) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="trustmess-bench-", dir="/tmp"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTMESS_")}
        self.env = {**BENCH_ENV, **extra_env, "TRUSTMESS_PORT": "0"}
        self.env["TRUSTMESS_DATA_DIR"] = str(self.data_dir)
        if database_url:
            self.env["TRUSTMESS_DATABASE_URL"] = database_url
            self.env["TRUSTMESS_JWT_SECRET"] = secrets.token_urlsafe(48)
        self.log: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trustmess", "serve"],
            cwd=ROOT,
            env={**env, **self.env},
            stderr=subprocess.PIPE,
            text=True,
        )
        self.url, self.db_pid = self._wait_listening()
        threading.Thread(target=self._drain, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def dsn(self) -> str:
        return self.env.get("TRUSTMESS_DATABASE_URL") or (
            f"postgresql://postgres@/postgres?host={self.data_dir / 'pg'}"
        )

    def _wait_listening(self) -> tuple[str, int | None]:
        assert self.process.stderr is not None
        db_pid = None
        for line in self.process.stderr:
            self.log.append(line)
            found = POSTGRES_PID.search(line)
            if found:
                db_pid = int(found.group(1))
            found = LISTENING.search(line)
            if found:
                return f"http://{found.group(1)}:{found.group(2)}", db_pid
        raise RuntimeError("server exited before listening:\n" + "".join(self.log))

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    def stop(self) -> None:
        """SIGTERM (the server stops its embedded database), then remove the data dir."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)
