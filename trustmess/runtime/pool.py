"""The asyncpg connection pool."""

from __future__ import annotations

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
