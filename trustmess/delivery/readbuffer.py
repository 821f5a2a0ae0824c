"""Coalesced read markers: ``ack`` answers from memory and the database is updated in batches.

The in-memory marker is authoritative for ``read`` events on this node and never moves
backwards; it is loaded from the database on first use and kept current by this node's
sends. Dirty markers (acks) are flushed every ``flush_s`` in one statement (``GREATEST`` in
SQL, so a late flush can never move a marker back). The markers senders' own messages move
join them every ``SENT_FLUSH_S``: at saturation nearly every message moves one, and writing
them every ``flush_s`` cost about 10% more server and database time per message
(bench/RESULTS.md). An ack's reply may therefore precede its write by up to ``flush_s``, a
send's marker by up to ``SENT_FLUSH_S``; on shutdown everything pending is flushed before the
pool closes. A crash loses at most the last ``flush_s`` of acks and ``SENT_FLUSH_S`` of
senders' moves (never a message): what they covered shows as unread again until the user's
next ack.

Read-your-writes on this node: an HTTP view that shows a user's markers first calls
``flush_user``, which writes that user's pending markers at once (and costs nothing when there
are none); ``current`` gives the socket's ``join`` the marker without a write.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from trustmess.delivery.membership import MembershipCache
from trustmess.errors import conversation_not_found, invalid
from trustmess.store.conversations import conversation_state
from trustmess.store.readmarkers import advance_read_markers

log = logging.getLogger(__name__)

MAX_ENTRIES = 500_000
SENT_FLUSH_S = 1.0  # at least; never sooner than ``flush_s``


class ReadMarkerBuffer:
    def __init__(self, pool: asyncpg.Pool, membership: MembershipCache, flush_s: float) -> None:
        self._pool = pool
        self._membership = membership
        self._flush_s = flush_s
        self._sent_flush_s = max(flush_s, SENT_FLUSH_S)
        # conversation -> user -> read seq: a membership change drops one inner dict.
        self._read: dict[int, dict[int, int]] = {}
        self._size = 0
        self._last_seq: dict[int, int] = {}
        self._dirty: dict[tuple[int, int], int] = {}
        self._in_flight: dict[tuple[int, int], int] = {}  # the batch being written
        # Senders' markers, user -> conversation -> seq, moved into ``_dirty`` every
        # ``_sent_flush_s`` (by user: ``flush_user`` takes one user's at once).
        self._sent: dict[int, dict[int, int]] = {}
        self._sent_handle: asyncio.TimerHandle | None = None
        # Users with markers in ``_dirty``, and in the batch being written.
        self._dirty_users: set[int] = set()
        self._flushing_users: set[int] = set()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._closed = False
        self.flushes = 0

    async def advance(self, conversation_id: int, user_id: int, seq: int) -> tuple[int, bool]:
        """Move the marker to ``seq``; returns (read_seq, moved). Raises not_found/invalid."""
        if not await self._membership.is_member(conversation_id, user_id):
            raise conversation_not_found()
        users = self._read.get(conversation_id)
        if users is None or user_id not in users or seq > self._last_seq.get(conversation_id, 0):
            users = await self._load(conversation_id, user_id)
        last_seq = self._last_seq.get(conversation_id, 0)
        if seq > last_seq:
            raise invalid("seq", f"is beyond the last message ({last_seq})")
        current = users[user_id]
        if seq <= current:
            return current, False
        users[user_id] = seq
        self._mark_dirty((conversation_id, user_id), seq)
        return seq, True

    def current(self, conversation_id: int, user_id: int) -> int:
        """The marker this node holds for the user (0 if none): at least what it last acked
        or sent, written or not."""
        key = (conversation_id, user_id)
        return max(
            self._read.get(conversation_id, {}).get(user_id, 0),
            self._dirty.get(key, 0),
            self._in_flight.get(key, 0),
            self._sent.get(user_id, {}).get(conversation_id, 0),
        )

    async def flush_user(self, user_id: int) -> None:
        """Write the user's pending markers now: a read right after an ack then sees it.

        Waits for a flush already carrying them, else starts the next one early (it writes
        every pending marker in its one statement). Bounded: if the database fails, the
        read goes on and fails or shows the stored markers.
        """
        for conversation_id, seq in self._sent.pop(user_id, {}).items():
            self._mark_dirty((conversation_id, user_id), seq)
        for _ in range(3):
            task = self._flushing
            if task is not None and (
                user_id in self._flushing_users or user_id in self._dirty_users
            ):
                await asyncio.shield(task)
            elif user_id in self._dirty_users:
                if self._flush_handle is not None:
                    self._flush_handle.cancel()
                    self._flush_handle = None
                self._start_flush()
            else:
                return

    async def _load(self, conversation_id: int, user_id: int) -> dict[int, int]:
        # What this node holds now: a flush may write it and forget it during the read below,
        # which may then have started before that write committed.
        held = self.current(conversation_id, user_id)
        async with self._pool.acquire() as db:
            state = await conversation_state(db, conversation_id, user_id)
        if state is None:
            raise conversation_not_found()
        last_seq, read_seq = state
        if self._size > MAX_ENTRIES:
            self.forget_all()
        self.note_last_seq(conversation_id, last_seq)
        users = self._read.setdefault(conversation_id, {})
        self._size += user_id not in users
        # Another ack (or a send, not written yet) may have moved it: keep the larger.
        users[user_id] = max(read_seq, held, self.current(conversation_id, user_id))
        return users

    def note_last_seq(self, conversation_id: int, seq: int) -> None:
        if seq > self._last_seq.get(conversation_id, 0):
            self._last_seq[conversation_id] = seq

    def note_read(self, conversation_id: int, user_id: int, seq: int) -> None:
        """A marker moved elsewhere and is written already (the HTTP read endpoint)."""
        users = self._read.get(conversation_id)
        if users is not None and seq > users.get(user_id, seq):
            users[user_id] = seq

    def note_sent(self, conversation_id: int, user_id: int, seq: int) -> None:
        """The user sent ``seq``: their marker moves to it, written with the next flush.

        The append statement used to move it in the same transaction, a locking UPDATE per
        batch; here it costs a dict entry, and the flush writes every sender's marker of the
        interval in its one statement. No ``read`` event: a sender has read their own message.
        """
        # A marker not loaded here is not loaded for it (another node may have stored a
        # larger one); ``current`` and ``_load`` count the pending value until it is written.
        self.note_read(conversation_id, user_id, seq)
        sent = self._sent.setdefault(user_id, {})
        if seq > sent.get(conversation_id, 0):
            sent[conversation_id] = seq
            if self._sent_handle is None and not self._closed:
                loop = asyncio.get_running_loop()
                self._sent_handle = loop.call_later(self._sent_flush_s, self._flush_sent)

    def _flush_sent(self) -> None:
        """Senders' markers go with the next flush."""
        self._sent_handle = None
        sent, self._sent = self._sent, {}
        for user_id, conversations in sent.items():
            for conversation_id, seq in conversations.items():
                self._mark_dirty((conversation_id, user_id), seq)

    def _mark_dirty(self, key: tuple[int, int], seq: int) -> None:
        if seq > self._dirty.get(key, 0):
            self._dirty[key] = seq
            self._dirty_users.add(key[1])
            self._schedule_flush()

    def forget_conversation(self, conversation_id: int) -> None:
        """Membership changed: reload markers from the database on next use."""
        users = self._read.pop(conversation_id, None)
        if users is None:
            return
        self._size -= len(users)
        # Unflushed markers stay: forgetting them could make a marker move back.
        kept = {
            u: seq
            for u, seq in users.items()
            if (conversation_id, u) in self._dirty
            or (conversation_id, u) in self._in_flight
            or conversation_id in self._sent.get(u, ())
        }
        if kept:
            self._read[conversation_id] = kept
            self._size += len(kept)

    def forget_all(self) -> None:
        """Reload every marker from the database on next use (unflushed ones excepted)."""
        for conversation_id in list(self._read):
            self.forget_conversation(conversation_id)

    def _schedule_flush(self) -> None:
        if self._flush_handle is None and self._flushing is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self._flush_s, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_handle = None
        self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        batch, self._dirty = self._dirty, {}
        self._in_flight = batch
        self._flushing_users, self._dirty_users = self._dirty_users, set()
        try:
            if batch:
                async with self._pool.acquire() as db:
                    await advance_read_markers(db, [(c, u, s) for (c, u), s in batch.items()])
                self.flushes += 1
        except Exception:
            log.exception("flushing %d read markers failed; will retry", len(batch))
            for key, seq in batch.items():
                self._dirty[key] = max(seq, self._dirty.get(key, 0))
            self._dirty_users |= self._flushing_users
        finally:
            self._flushing = None
            self._flushing_users = set()
            self._in_flight = {}
            if self._dirty:
                self._schedule_flush()

    async def close(self) -> None:
        """Flush everything pending (shutdown); nothing is scheduled after it."""
        self._closed = True
        if self._sent_handle is not None:
            self._sent_handle.cancel()
        self._flush_sent()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._flushing is not None:
            await self._flushing
        if self._dirty:
            await self._flush()
        if self._dirty:
            log.warning("%d read markers not written at shutdown", len(self._dirty))
