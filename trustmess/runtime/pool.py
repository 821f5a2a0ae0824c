"""The asyncpg connection pool, and the check that the database can be reached at all."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

import asyncpg

from trustmess.settings import Settings


async def create_pool(settings: Settings, dsn: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=settings.pool_min,
        max_size=settings.pool_max,
        # Statements are short; a stuck one should fail the request rather than hang it.
        command_timeout=30,
    )
    assert pool is not None
    return pool


class DatabaseUnavailable(Exception):
    """The database cannot be reached or refuses us; the message says where and why."""


def describe_dsn(dsn: str) -> str:
    """Where ``dsn`` points, without the password: ``host:port/db``."""
    parts = urlsplit(dsn)
    host = parts.hostname or parse_qs(parts.query).get("host", ["localhost"])[0]
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path or '/'}"


async def check_database(dsn: str, timeout_s: float = 10.0) -> None:
    """Connect once and run ``SELECT 1``; DatabaseUnavailable with a one-line reason if not."""
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout_s)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()
    except TimeoutError:  # an OSError too: first
        raise DatabaseUnavailable(
            f"cannot use the database at {describe_dsn(dsn)}: no answer within {timeout_s:g} s"
        ) from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # "Connection refused" rather than asyncio's "[Errno 111] Connect call failed (…)".
        reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)
        raise DatabaseUnavailable(
            f"cannot use the database at {describe_dsn(dsn)}: {reason}"
        ) from None
