"""One joined conversation's entries, handed to the application exactly once and in seq order.

Entries (messages and changes) come from the socket (live, or replayed after a ``join`` with
``since``) and from HTTP ``after`` pages when the socket could not replay everything
(``resumed: false``) or a seq was skipped. Whatever the source and however often an entry
arrives, it is emitted only when its seq is one above the last one emitted (protocol/README.md
§9 step 5); entries that arrive early wait, and a gap is filled over HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp

from trustmess.client.errors import ApiError, SessionExpired, TrustMessError
from trustmess.client.models import Entry, JoinResult, Json

log = logging.getLogger(__name__)

FILL_PAGE = 200
FILL_RETRY_MAX_S = 5.0

Emit = Callable[[Entry], None]
FetchAfter = Callable[[int, int], Awaitable[tuple[list[Entry], bool]]]


class ConversationStream:
    """Delivery state of one conversation: ``delivered`` is the highest seq emitted (None until
    the first join's answer says where a join without ``since`` starts)."""

    def __init__(
        self, conversation_id: int, since: int | None, emit: Emit, fetch_after: FetchAfter
    ) -> None:
        self.conversation_id = conversation_id
        self.delivered = since
        self._emit = emit
        self._fetch_after = fetch_after
        self._ahead: dict[int, Entry] = {}
        self._fill_to = 0
        self._filler: asyncio.Task[None] | None = None
        self._closed = False
        self._waiters: list[asyncio.Future[JoinResult]] = []

    def add(self, entry: Entry) -> None:
        """Take an entry from any source; emit what is now next in line."""
        seq = entry.seq
        if self._closed or (self.delivered is not None and seq <= self.delivered):
            return  # a duplicate (replay overlapping a page, a resent event)
        self._ahead.setdefault(seq, entry)
        self._drain()

    def _drain(self) -> None:
        if self.delivered is None:
            return
        while self.delivered + 1 in self._ahead:
            self.delivered += 1
            self._emit(self._ahead.pop(self.delivered))
        for seq in [s for s in self._ahead if s <= self.delivered]:
            del self._ahead[seq]
        if self._ahead:
            # A seq is missing below what arrived: the socket will not send it again.
            self._fill_to = max(self._fill_to, max(self._ahead))
            self._start_fill()

    def on_join_reply(self, data: Json) -> JoinResult:
        """The join's answer (handled before any frame after it is read)."""
        result = JoinResult(
            data["conversation_id"], data["last_seq"], data["read_seq"], bool(data["resumed"])
        )
        if self.delivered is None:
            self.delivered = result.last_seq  # a join without since: from now on
        elif result.last_seq < self.delivered:
            # The server's history is shorter than ours (restored from an older backup):
            # ours does not belong to it; go on from its newest seq.
            log.warning(
                "conversation %s: server's last seq %s is below ours %s",
                self.conversation_id,
                result.last_seq,
                self.delivered,
            )
            self.delivered = result.last_seq
        elif not result.resumed and result.last_seq > self.delivered:
            self._fill_to = max(self._fill_to, result.last_seq)
            self._start_fill()
        self._drain()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(result)
        return result

    def wait_joined(self) -> asyncio.Future[JoinResult]:
        """A future for the next join answer (or the error that ends the wait)."""
        waiter: asyncio.Future[JoinResult] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    def on_join_error(self, error: BaseException) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)

    def close(self) -> None:
        self._closed = True
        self._ahead.clear()
        if self._filler is not None:
            self._filler.cancel()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.cancel()

    def _start_fill(self) -> None:
        if self._filler is None or self._filler.done():
            self._filler = asyncio.get_running_loop().create_task(self._fill())

    async def _fill(self) -> None:
        """Page forward over HTTP from ``delivered`` until the gap is closed."""
        failures = 0
        while not self._closed and self.delivered is not None:
            if self.delivered >= self._fill_to and not self._ahead:
                return
            before = self.delivered
            try:
                items, has_more = await self._fetch_after(self.conversation_id, before)
            except SessionExpired:
                return
            except ApiError as exc:
                if exc.status == 404:
                    return  # no longer a member: a `removed` event follows
                failures += 1
            except (aiohttp.ClientError, OSError, TimeoutError, TrustMessError) as exc:
                log.debug("conversation %s: history fill failed: %s", self.conversation_id, exc)
                failures += 1
            else:
                for item in items:
                    self.add(item)
                if self.delivered == before and not has_more:
                    # Nothing beyond `delivered` is stored yet; what arrived early is from a
                    # newer entry still being published. Live events will bring the rest.
                    if self._ahead:
                        log.debug("conversation %s: gap not fillable yet", self.conversation_id)
                    return
                failures = 0
                continue
            await asyncio.sleep(min(FILL_RETRY_MAX_S, 0.25 * 2**failures))
