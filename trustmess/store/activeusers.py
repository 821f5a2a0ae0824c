"""A short-lived cache of users' active flag, so authenticated requests rarely hit the DB.

A disabled user is refused within ``ttl_s`` on every node, at once on the node that disabled
them (``forget`` is called there).
"""

from __future__ import annotations

import time

import asyncpg


class ActiveUsers:
    def __init__(self, pool: asyncpg.Pool, ttl_s: float = 5.0) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._cache: dict[int, tuple[bool, float]] = {}

    async def is_active(self, user_id: int) -> bool:
        """True when the user exists and is not disabled."""
        now = time.monotonic()
        hit = self._cache.get(user_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        active = await self._pool.fetchval("SELECT is_active FROM users WHERE id = $1", user_id)
        result = bool(active)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[user_id] = (result, now + self._ttl_s)
        return result

    def forget(self, user_id: int) -> None:
        self._cache.pop(user_id, None)

    def clear(self) -> None:
        """Forget every cached flag (after missing other nodes' news: see events.resync)."""
        self._cache.clear()
