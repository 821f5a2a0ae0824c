"""The asyncpg connection pool, and the check that the database can be reached at all."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

import asyncpg

from trustmess.settings import Settings


async def create_pool(settings: Settings, dsn: str) -> asyncpg.Pool:
    """The pool every request, command and flush shares."""
    return await _pool(dsn, settings.pool_min, settings.pool_max)


async def create_writer_pool(settings: Settings, dsn: str) -> asyncpg.Pool:
    """The message writer's own connections (it has one batch in the database at a time;
    the second is for a retry while the first is being replaced).

    Their sessions plan every statement once (``force_generic_plan``). At everyday rates each
    message is a batch of its own, and PostgreSQL's default re-plans the append statement for
    every batch, because its estimate of the generic plan (array sizes unknown) never beats
    the custom one: planning was about 0.35 ms of its 0.5 ms. The generic plan is no slower
    at 1,024 rows per batch either (bench/RESULTS.md, issue 20). Only the writer's
    connections: read queries keep plans made for their parameters.
    """
    return await _pool(dsn, 1, 2, {"plan_cache_mode": "force_generic_plan"})


async def _pool(
    dsn: str, min_size: int, max_size: int, server_settings: dict[str, str] | None = None
) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        # Statements are short; a stuck one should fail the request rather than hang it.
        command_timeout=30,
        reset=keep_session,
        server_settings=server_settings,
    )
    assert pool is not None
    return pool


async def keep_session(connection: asyncpg.Connection) -> None:
    """A released connection keeps its session: asyncpg's default reset sends
    ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on every release, a round
    trip per acquire, for session state this server never creates (no session-level SET,
    LISTEN, cursor or advisory lock; its advisory locks are transaction-scoped). asyncpg
    still rolls back a transaction left open before calling this."""


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
