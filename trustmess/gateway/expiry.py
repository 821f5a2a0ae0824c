"""Token expiry: connections are closed with 4002 when their access token expires.

One timer for the whole process, armed for the earliest expiry, instead of one timer handle
per socket. Entries hold weak references, so a closed connection is not kept alive; an entry
made stale by a re-auth (the connection's ``expires_at`` moved on) is skipped, and the heap
is compacted when dead and stale entries outnumber the live ones, so re-auth spam or socket
churn with long-lived tokens cannot grow it without bound.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
import weakref

from trustmess.errors import CloseCode
from trustmess.gateway.connection import Connection

COMPACT_MIN = 1024  # entries below which the heap is never compacted


class TokenExpiry:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, weakref.ref[Connection]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._compact_at = COMPACT_MIN

    def __len__(self) -> int:
        return len(self._heap)

    def watch(self, conn: Connection, expires_at: float) -> None:
        """Close ``conn`` at ``expires_at`` (UNIX time) unless watched again with a later one."""
        if conn.expires_at == expires_at:
            return  # a re-auth with the same token: its entry is already there
        conn.expires_at = expires_at
        heapq.heappush(self._heap, (expires_at, next(self._order), weakref.ref(conn)))
        if len(self._heap) > self._compact_at:
            self._compact()
            self._arm()
        elif self._heap[0][0] == expires_at:
            self._arm()

    def _compact(self) -> None:
        """Keep only the entries that can still close a connection."""
        live = []
        for entry in self._heap:
            conn = entry[2]()
            if conn is not None and not conn.closing and conn.expires_at == entry[0]:
                live.append(entry)
        heapq.heapify(live)
        self._heap = live
        self._compact_at = max(COMPACT_MIN, 2 * len(live))

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._heap:
            return
        delay = max(0.0, self._heap[0][0] - time.time())
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = time.time()
        while self._heap and self._heap[0][0] <= now:
            expires_at, _, ref = heapq.heappop(self._heap)
            conn = ref()
            if conn is not None and conn.expires_at == expires_at:
                conn.close_soon(CloseCode.TOKEN_EXPIRED, "access token expired")
        if self._heap:
            self._arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
