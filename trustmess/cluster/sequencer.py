"""Per-conversation ordering of message events arriving from several nodes.

Two nodes can commit seq 41 and 42 of one conversation and publish them in either order. A
node hands every message event of a conversation it has local subscribers for to
``Sequencer.offer``; events leave in seq order with no gap. An early event is held; if the
missing seq does not arrive within ``gap_timeout_s`` it is read from PostgreSQL (the source of
truth), so a lost bus message only costs latency, never a gap.

The wait follows the bus: while messages take longer than ``gap_timeout_s`` to cross it (a
saturated node reads its socket late), a gap is almost always a message still on its way,
and reading it from the database too would only add load where there is none to spare (a
worker spent 12% of its event loop on such reads under scenario 6, issue 20). ``note_lag``
stretches the wait to ``LAG_FACTOR`` times the lag the bus shows, up to ``MAX_GAP_WAIT_S``.
A message that is really lost (its publisher died between commit and publish) is then read
a little later; a bus outage has its own catch-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Deliver = Callable[[int, int, bytes], None]
# (conversation_id, after_seq, through_seq) → [(seq, payload)] ascending
FetchRange = Callable[[int, int, int], Awaitable[list[tuple[int, bytes]]]]

LAG_FACTOR = 3.0
MAX_GAP_WAIT_S = 2.0


@dataclass(slots=True)
class _Stream:
    next_seq: int | None = None  # None until a join told us where the conversation stands
    held: dict[int, bytes] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None
    filling: asyncio.Task[None] | None = None
    # The furthest seq asked for while a fill was running: fetched once that fill is done.
    fill_again_through: int = 0


class Sequencer:
    def __init__(self, deliver: Deliver, fetch: FetchRange, gap_timeout_s: float) -> None:
        self._deliver = deliver
        self._fetch = fetch
        self._gap_timeout_s = gap_timeout_s
        self._gap_wait_s = gap_timeout_s
        self._streams: dict[int, _Stream] = {}
        self.gaps_filled = 0

    def note_lag(self, lag_s: float) -> None:
        """The bus's latest publish-to-receive delay: gaps wait for the slowest of it."""
        self._gap_wait_s = max(self._gap_timeout_s, min(MAX_GAP_WAIT_S, LAG_FACTOR * lag_s))

    def start(self, conversation_id: int) -> None:
        """This node now has subscribers for the conversation: track its order."""
        self._streams.setdefault(conversation_id, _Stream())

    def stop(self, conversation_id: int) -> None:
        stream = self._streams.pop(conversation_id, None)
        if stream is not None:
            if stream.timer is not None:
                stream.timer.cancel()
            if stream.filling is not None:
                stream.filling.cancel()

    def position(self, conversation_id: int, last_seq: int) -> None:
        """A join read ``last_seq`` from the database (after subscribing).

        The first one fixes where delivery starts; later ones may reveal messages that were
        committed but never arrived here (a bus outage): those are fetched.
        """
        stream = self._streams.get(conversation_id)
        if stream is None:
            return
        if stream.next_seq is None:
            stream.next_seq = last_seq + 1
            for seq in [s for s in stream.held if s < stream.next_seq]:
                del stream.held[seq]
            self._drain(conversation_id, stream)
        elif last_seq >= stream.next_seq:
            self._fill_now(conversation_id, stream, last_seq)

    def catch_up(self, conversation_id: int) -> None:
        """Fetch everything committed after what was delivered (after a bus outage)."""
        stream = self._streams.get(conversation_id)
        if stream is not None and stream.next_seq is not None:
            self._fill_now(conversation_id, stream, 2**62)

    def offer(self, conversation_id: int, seq: int, payload: bytes) -> None:
        stream = self._streams.get(conversation_id)
        if stream is None:
            return
        if stream.next_seq is not None and seq < stream.next_seq:
            return  # already delivered (a duplicate from the bus, or filled from the database)
        stream.held[seq] = payload
        if stream.next_seq is not None:
            self._drain(conversation_id, stream)

    def _drain(self, conversation_id: int, stream: _Stream) -> None:
        assert stream.next_seq is not None
        while stream.next_seq in stream.held:
            payload = stream.held.pop(stream.next_seq)
            self._deliver(conversation_id, stream.next_seq, payload)
            stream.next_seq += 1
        if not stream.held:
            if stream.timer is not None:
                stream.timer.cancel()
                stream.timer = None
        elif stream.timer is None and stream.filling is None:
            loop = asyncio.get_running_loop()
            stream.timer = loop.call_later(self._gap_wait_s, self._on_gap, conversation_id)

    def _on_gap(self, conversation_id: int) -> None:
        stream = self._streams.get(conversation_id)
        if stream is None or not stream.held:
            return
        stream.timer = None
        self._fill_now(conversation_id, stream, min(stream.held) - 1)

    def _fill_now(self, conversation_id: int, stream: _Stream, through: int) -> None:
        if stream.filling is None:
            stream.filling = asyncio.get_running_loop().create_task(
                self._fill(conversation_id, stream, through)
            )
        else:
            # Not dropped: a catch-up or a join may reach past the running fill's range.
            stream.fill_again_through = max(stream.fill_again_through, through)

    async def _fill(self, conversation_id: int, stream: _Stream, through: int) -> None:
        try:
            assert stream.next_seq is not None
            rows = await self._fetch(conversation_id, stream.next_seq - 1, through)
            self.gaps_filled += 1
            for seq, payload in rows:
                if seq >= stream.next_seq:
                    stream.held.setdefault(seq, payload)
        except Exception:
            log.exception("reading missing messages of conversation %d failed", conversation_id)
        finally:
            stream.filling = None
        if self._streams.get(conversation_id) is stream:
            self._drain(conversation_id, stream)
            again, stream.fill_again_through = stream.fill_again_through, 0
            if stream.next_seq is not None and again >= stream.next_seq:
                self._fill_now(conversation_id, stream, again)
