"""A short-lived cache of users' active flag, so authenticated requests rarely hit the DB.

A disabled user is refused within ``ttl_s`` on every node, at once on the node that disabled
them (``forget`` is called there).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import asyncpg

from trustmess.store.batching import BatchedLookup
from trustmess.store.history import DbConnection


async def active_flags(conn: DbConnection, user_ids: Sequence[int]) -> list[bool]:
    """Whether each user exists and is not disabled, in one statement."""
    rows = await conn.fetch(
        "SELECT p.i FROM unnest($1::bigint[]) WITH ORDINALITY AS p(id, i) "
        "JOIN users u ON u.id = p.id WHERE u.is_active",
        list(user_ids),
    )
    flags = [False] * len(user_ids)
    for row in rows:
        flags[row["i"] - 1] = True
    return flags


class ActiveUsers:
    def __init__(self, pool: asyncpg.Pool, ttl_s: float = 5.0) -> None:
        # Logins arriving together (a node taking over another's sockets) share a statement.
        self._lookup = BatchedLookup(pool, active_flags)
        self._ttl_s = ttl_s
        self._cache: dict[int, tuple[bool, float]] = {}

    async def is_active(self, user_id: int) -> bool:
        """True when the user exists and is not disabled."""
        now = time.monotonic()
        hit = self._cache.get(user_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        result = await self._lookup.get(user_id)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[user_id] = (result, now + self._ttl_s)
        return result

    def forget(self, user_id: int) -> None:
        self._cache.pop(user_id, None)

    def clear(self) -> None:
        """Forget every cached flag (after missing other nodes' news: see events.resync)."""
        self._cache.clear()

    async def close(self) -> None:
        await self._lookup.close()
