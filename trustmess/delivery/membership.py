"""The membership cache: ``(conversation, user) -> member?`` (and is the conversation
blocked?) for the hot path."""

from __future__ import annotations

import time

import asyncpg

from trustmess.store.batching import BatchedLookup
from trustmess.store.conversations import member_standings


class MembershipCache:
    """``(conversation, user) → member?`` for the hot path, dropped on every membership change.

    Entries also expire after ``ttl_s`` so a change made by another node is seen soon.
    """

    def __init__(self, pool: asyncpg.Pool, ttl_s: float = 30.0) -> None:
        # Misses asked for together (a node taking over another's sockets) share a statement.
        self._lookup = BatchedLookup(pool, member_standings)
        self._ttl_s = ttl_s
        # conversation -> user -> (member?, blocked?, expiry): a membership change drops one
        # inner dict.
        self._entries: dict[int, dict[int, tuple[bool, bool, float]]] = {}
        self._size = 0

    async def is_member(self, conversation_id: int, user_id: int) -> bool:
        member, _ = await self.standing(conversation_id, user_id)
        return member

    async def standing(self, conversation_id: int, user_id: int) -> tuple[bool, bool]:
        """(member?, blocked?): blocked is a direct conversation with a block either way
        (store/blocks.py), dropped from the cache like a membership change."""
        now = time.monotonic()
        users = self._entries.get(conversation_id)
        hit = None if users is None else users.get(user_id)
        if hit is not None and hit[2] > now:
            return hit[0], hit[1]
        member, blocked = await self._lookup.get((conversation_id, user_id))
        if self._size > 200_000:
            self.clear()
        users = self._entries.setdefault(conversation_id, {})
        self._size += user_id not in users
        users[user_id] = (member, blocked, now + self._ttl_s)
        return member, blocked

    def forget_conversation(self, conversation_id: int) -> None:
        self._size -= len(self._entries.pop(conversation_id, ()))

    def clear(self) -> None:
        self._entries.clear()
        self._size = 0

    async def close(self) -> None:
        await self._lookup.close()
