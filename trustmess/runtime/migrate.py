"""Run the Alembic migrations programmatically (``python -m trustmess migrate``, ``serve``).

Alembic's env.py drives its own event loop, so from async code call these in a thread.

The migrations live at the top of the repository (``alembic.ini`` beside ``migrations/``); an
installed wheel carries the same two under ``trustmess/_alembic/`` (see setup.py).

Every run (``serve`` on several machines at once, ``migrate``, ``alembic upgrade``) holds a
PostgreSQL advisory lock while it migrates, so concurrent runs against one database go one
after the other: the later ones find the schema at head and do nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import logging
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

log = logging.getLogger("trustmess")

# A fixed 64-bit key, the same on every machine and release: the first 8 bytes of
# sha256("trustmess.migrate") as a signed bigint.
MIGRATION_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"trustmess.migrate").digest()[:8], "big", signed=True
)


@contextlib.contextmanager
def migration_lock(connection: Connection) -> Iterator[None]:
    """Hold the migration advisory lock on ``connection`` (Alembic's own, in env.py).

    Session-level rather than transaction-level: it must survive a migration's
    ``autocommit_block()`` (``CREATE INDEX CONCURRENTLY``, say), which commits mid-upgrade.
    Each lock statement is committed at once, so Alembic then begins its own transaction.
    """
    key = {"key": MIGRATION_LOCK_KEY}
    if not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar():
        log.info("another process is migrating this database: waiting for it to finish")
        connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
    connection.commit()
    try:
        yield
    finally:
        # Closing the connection would release it too; unlock in case it is ever pooled.
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)
        connection.commit()


class MigrationsNotFound(RuntimeError):
    """Neither the installed package nor a checkout around it has the migrations."""


def alembic_dir() -> Path:
    """The directory holding ``alembic.ini`` and ``migrations/``.

    Inside the package when installed from a wheel; else the checkout the package was imported
    from (an editable install, the tests), whose top has them.
    """
    package = importlib.resources.files("trustmess")
    if not isinstance(package, Path):
        raise MigrationsNotFound(f"trustmess is not installed as files on disk ({package})")
    candidates = (package / "_alembic", package.resolve().parent)
    for candidate in candidates:
        if (candidate / "alembic.ini").is_file() and (candidate / "migrations").is_dir():
            return candidate
    raise MigrationsNotFound(
        "alembic.ini and migrations/ not found in " + " or ".join(map(str, candidates))
    )


def alembic_config(dsn: str) -> Config:
    """An Alembic config pointing at this project's migrations and the given database.

    ``alembic.ini`` names ``%(here)s/migrations``: the ``migrations/`` beside it.
    """
    config = Config(str(alembic_dir() / "alembic.ini"))
    config.attributes["dsn"] = dsn
    return config


def upgrade(dsn: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(dsn), revision)


def downgrade(dsn: str, revision: str) -> None:
    command.downgrade(alembic_config(dsn), revision)


def check(dsn: str) -> None:
    """Raise if the Core tables in ``schema.py`` and the migrations disagree."""
    command.check(alembic_config(dsn))
