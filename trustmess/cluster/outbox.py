"""The Redis broker's outbox: bus messages waiting to be published, in publication order.

While the bus is down, or a publish fails, every event but typing (stale by then) waits here
and goes out on reconnect. It is bounded: past the bound the oldest events go (a later seq
still makes receivers fill the gap from PostgreSQL). Control operations have a queue of their
own, so no amount of other traffic pushes them out. No I/O here.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import NamedTuple

log = logging.getLogger(__name__)

OUTBOX_EVENTS = 100_000
OUTBOX_BYTES = 64 << 20  # message events can be large (a full frame each)
CONTROL_OUTBOX_EVENTS = 10_000


class Outgoing(NamedTuple):
    """One bus message: its place in publication order, channel, bytes, and kind."""

    order: int
    channel: str
    data: bytes
    volatile: bool  # typing: not worth sending late
    control: bool


class Outbox:
    def __init__(
        self,
        events: int = OUTBOX_EVENTS,
        control_events: int = CONTROL_OUTBOX_EVENTS,
        max_bytes: int = OUTBOX_BYTES,
    ) -> None:
        self._events: deque[Outgoing] = deque()
        self._bytes = 0
        self._max_events = events
        self._max_bytes = max_bytes
        self._control: deque[Outgoing] = deque()
        self._max_control = control_events
        self._order = 0
        self.dropped = 0
        self.overflowed = 0  # events pushed out since the last report (see take_overflow)

    def __len__(self) -> int:
        return len(self._events) + len(self._control)

    def add(self, channel: str, data: bytes, *, volatile: bool, control: bool) -> None:
        """Append; past the bound the oldest events go."""
        self._order += 1
        item = Outgoing(self._order, channel, data, volatile, control)
        if control:
            self._control.append(item)
            while len(self._control) > self._max_control:
                lost = self._control.popleft()
                self.dropped += 1
                log.error("bus control outbox full: dropped %s", lost.data.partition(b"\n")[2])
            return
        self._events.append(item)
        self._bytes += len(data)
        self._trim()

    def _trim(self) -> None:
        while len(self._events) > self._max_events or self._bytes > self._max_bytes:
            self._bytes -= len(self._events.popleft().data)
            self.dropped += 1
            if not self.overflowed:
                log.warning("bus outbox full: dropping its oldest events")
            self.overflowed += 1

    def take(self, limit: int) -> list[Outgoing]:
        """The oldest events of both queues, in the order they were published."""
        batch: list[Outgoing] = []
        events, control = self._events, self._control
        while len(batch) < limit and (events or control):
            if control and (not events or control[0].order < events[0].order):
                batch.append(control.popleft())
            else:
                item = events.popleft()
                self._bytes -= len(item.data)
                batch.append(item)
        return batch

    def put_back(self, batch: list[Outgoing]) -> None:
        """A batch that failed goes back in front, in order, except typing (stale by then).

        Sending it again is harmless even if part of it went out: receivers drop message
        events they delivered, and the other events are idempotent.
        """
        for item in reversed(batch):
            if item.control:
                self._control.appendleft(item)
            elif item.volatile:
                self.dropped += 1
            else:
                self._events.appendleft(item)
                self._bytes += len(item.data)
        self._trim()

    def take_overflow(self) -> int:
        """Events dropped for overflow since the last call."""
        count, self.overflowed = self.overflowed, 0
        return count
