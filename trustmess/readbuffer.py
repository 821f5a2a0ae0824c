"""Coalesced read markers: ``ack`` answers from memory and the database is updated in batches.

The in-memory marker is authoritative for ``read`` events on this node and never moves
backwards; it is loaded from the database on first use and kept current by this node's
sends. Dirty markers are flushed every ``flush_s`` in one statement (``GREATEST`` in SQL, so a
late flush can never move a marker back). An ack's reply may therefore precede its write by up
to ``flush_s``; on shutdown everything pending is flushed before the pool closes.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from trustmess.errors import invalid, not_found
from trustmess.gateway import MembershipCache
from trustmess.store.conversations import conversation_state
from trustmess.store.readmarkers import advance_read_markers

log = logging.getLogger(__name__)

MAX_ENTRIES = 500_000


class ReadMarkerBuffer:
    def __init__(self, pool: asyncpg.Pool, membership: MembershipCache, flush_s: float) -> None:
        self._pool = pool
        self._membership = membership
        self._flush_s = flush_s
        self._read: dict[tuple[int, int], int] = {}
        self._last_seq: dict[int, int] = {}
        self._dirty: dict[tuple[int, int], int] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self.flushes = 0

    async def advance(self, conversation_id: int, user_id: int, seq: int) -> tuple[int, bool]:
        """Move the marker to ``seq``; returns (read_seq, moved). Raises not_found/invalid."""
        if not await self._membership.is_member(conversation_id, user_id):
            raise not_found("conversation not found")
        key = (conversation_id, user_id)
        if key not in self._read or seq > self._last_seq.get(conversation_id, 0):
            await self._load(conversation_id, user_id)
        last_seq = self._last_seq.get(conversation_id, 0)
        if seq > last_seq:
            raise invalid("seq", f"is beyond the last message ({last_seq})")
        current = self._read[key]
        if seq <= current:
            return current, False
        self._read[key] = seq
        self._dirty[key] = max(seq, self._dirty.get(key, 0))
        self._schedule_flush()
        return seq, True

    async def _load(self, conversation_id: int, user_id: int) -> None:
        async with self._pool.acquire() as db:
            state = await conversation_state(db, conversation_id, user_id)
        if state is None:
            raise not_found("conversation not found")
        last_seq, read_seq = state
        if len(self._read) > MAX_ENTRIES:
            self._read = {k: v for k, v in self._read.items() if k in self._dirty}
        self.note_last_seq(conversation_id, last_seq)
        key = (conversation_id, user_id)
        # Another ack may have moved it while we waited: keep the larger.
        self._read[key] = max(self._read.get(key, 0), read_seq)

    def note_last_seq(self, conversation_id: int, seq: int) -> None:
        if seq > self._last_seq.get(conversation_id, 0):
            self._last_seq[conversation_id] = seq

    def note_read(self, conversation_id: int, user_id: int, seq: int) -> None:
        """A marker moved elsewhere (a send moves the sender's; the HTTP read endpoint)."""
        key = (conversation_id, user_id)
        if key in self._read and seq > self._read[key]:
            self._read[key] = seq

    def forget_conversation(self, conversation_id: int) -> None:
        """Membership changed: reload markers from the database on next use."""
        for key in [k for k in self._read if k[0] == conversation_id and k not in self._dirty]:
            del self._read[key]

    def _schedule_flush(self) -> None:
        if self._flush_handle is None and self._flushing is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self._flush_s, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_handle = None
        self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        batch, self._dirty = self._dirty, {}
        try:
            if batch:
                async with self._pool.acquire() as db:
                    await advance_read_markers(db, [(c, u, s) for (c, u), s in batch.items()])
                self.flushes += 1
        except Exception:
            log.exception("flushing %d read markers failed; will retry", len(batch))
            for key, seq in batch.items():
                self._dirty[key] = max(seq, self._dirty.get(key, 0))
        finally:
            self._flushing = None
            if self._dirty:
                self._schedule_flush()

    async def close(self) -> None:
        """Flush everything pending (shutdown)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._flushing is not None:
            await self._flushing
        if self._dirty:
            await self._flush()
