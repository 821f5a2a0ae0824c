"""Group commit: one task appends queued messages in batches, then publishes them in seq order.

Every sender hands its message to the writer and is answered only after the batch holding it
committed: the socket path passes a callback (``submit_with``), called right after the batch's
events are published, so a sender's reply leaves in the same write as the batch's deliveries;
the HTTP path awaits a future (``submit``). One task sends batches to the database one after
another, each only once the previous one committed, and publishes each batch before the
next, so events for a conversation leave this process in seq order; the next batch is
already in the database while the previous one is being answered. A batch that fails is
retried message by message, so one bad row cannot lose or mis-answer the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import asyncpg

from trustmess.errors import ApiError, ErrorCode, invalid, not_found
from trustmess.models import Message, SendResult
from trustmess.store.messages import AppendResult, NewMessage, append_messages

log = logging.getLogger(__name__)

Publish = Callable[[Message], None]
# Called once per submitted message: with its SendResult, or the ApiError that refused it.
Answer = Callable[[SendResult | ApiError], None]


@dataclass(slots=True)
class _Pending:
    message: NewMessage
    answer: Answer


@dataclass(slots=True)
class _Batch:
    """Messages on their way to the database: one group per distinct key."""

    groups: list[list[_Pending]]
    task: asyncio.Task[list[AppendResult]]


class WriterClosed(Exception):
    """The writer is shutting down and takes no new messages."""


class MessageWriter:
    """Batches message inserts; ``batch_max`` rows per round trip, optional ``window_s`` wait."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        publish: Publish,
        *,
        batch_max: int = 1024,
        window_s: float = 0.0,
    ) -> None:
        self._pool = pool
        self._publish = publish
        self._batch_max = batch_max
        self._window_s = window_s
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0
        self.persisted = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="message-writer")

    def submit_with(self, message: NewMessage, answer: Answer) -> None:
        """Queue ``message``; ``answer`` is called from the writer after commit (never raises
        into it: its exceptions are logged)."""
        if self._closed:
            raise WriterClosed
        self._queue.put_nowait(_Pending(message, answer))

    def submit(self, message: NewMessage) -> asyncio.Future[SendResult]:
        """Queue ``message``; the future resolves after commit (or raises ApiError)."""
        future: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
        self.submit_with(message, partial(_settle, future))
        return future

    async def close(self) -> None:
        """Stop taking messages, commit and answer everything already queued, then stop."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        # Two stages overlap: while batch N's answers are published, batch N+1 (everything
        # queued meanwhile) is already in the database. N+1 is sent only once N has committed,
        # so seqs follow submission order, and a failed batch is retried row by row before
        # anything queued after it is stored.
        stopping = False
        inflight: _Batch | None = None
        while True:
            if inflight is None:
                first = None if stopping else await self._queue.get()
                if first is None:
                    return
                if self._window_s > 0:
                    await asyncio.sleep(self._window_s)
                batch, stopping = self._take(first)
                inflight = self._launch(batch)
            done, inflight = inflight, None
            try:
                results = await done.task
            except Exception:
                await self._retry(done.groups)
                continue
            if not stopping and not self._queue.empty():
                first = self._queue.get_nowait()
                if first is None:
                    stopping = True
                else:
                    batch, stopping = self._take(first)
                    inflight = self._launch(batch)
                    await asyncio.sleep(0)  # let it reach the database before we answer
            self.batches += 1
            for group, result in zip(done.groups, results, strict=True):
                self._answer(group, result)

    def _take(self, first: _Pending) -> tuple[list[_Pending], bool]:
        """``first`` and whatever else is queued (up to batch_max); True if told to stop."""
        batch = [first]
        while len(batch) < self._batch_max and not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _launch(self, batch: list[_Pending]) -> _Batch:
        # The same key twice in one batch: the first is stored, the rest answer as duplicates.
        unique: dict[tuple[int, int, str], list[_Pending]] = {}
        for pending in batch:
            m = pending.message
            unique.setdefault((m.conversation_id, m.sender_id, m.client_msg_id), []).append(pending)
        groups = list(unique.values())
        rows = [group[0].message for group in groups]
        return _Batch(groups, asyncio.create_task(self._store(rows)))

    async def _store(self, rows: list[NewMessage]) -> list[AppendResult]:
        async with self._pool.acquire() as conn:
            return await append_messages(conn, rows)

    async def _retry(self, groups: list[list[_Pending]]) -> None:
        """A batch failed: store its messages one by one, so one bad row sinks only itself."""
        if len(groups) == 1:
            log.exception("storing a message failed")
            _answer_all(groups[0], ApiError(500, ErrorCode.INTERNAL, "message not stored"))
            return
        log.warning("a batch of %d failed; retrying one by one", len(groups), exc_info=True)
        for group in groups:
            try:
                [result] = await self._store([group[0].message])
            except Exception:
                await self._retry([group])
                continue
            self.batches += 1
            self._answer(group, result)

    def _answer(self, group: list[_Pending], result: AppendResult) -> None:
        first = group[0].message
        if result.status == "not_member":
            _answer_all(group, not_found("conversation not found"))
            return
        if result.status == "bad_reply_to":
            _answer_all(group, invalid("reply_to", "must be an existing seq of the conversation"))
            return
        assert result.id is not None and result.seq is not None and result.created_at is not None
        message = Message(
            id=result.id,
            conversation_id=first.conversation_id,
            seq=result.seq,
            sender_id=first.sender_id,
            body=result.body,
            reply_to=result.reply_to,
            client_msg_id=first.client_msg_id,
            created_at=result.created_at,
        )
        if result.status == "new":
            self.persisted += 1
            try:
                self._publish(message)
            except Exception:
                log.exception("publishing message %s failed", message.id)
        duplicate = result.status == "duplicate"
        for pending in group:
            _call(pending.answer, SendResult(message, duplicate))
            duplicate = True


def _answer_all(group: list[_Pending], outcome: SendResult | ApiError) -> None:
    for pending in group:
        _call(pending.answer, outcome)


def _call(answer: Answer, outcome: SendResult | ApiError) -> None:
    try:
        answer(outcome)
    except Exception:
        log.exception("answering a sender failed")


def _settle(future: asyncio.Future[SendResult], outcome: SendResult | ApiError) -> None:
    if future.done():
        return
    if isinstance(outcome, ApiError):
        future.set_exception(outcome)
        # Nobody may be waiting any more (the client went away); don't warn about it.
        with contextlib.suppress(Exception):
            future.exception()
    else:
        future.set_result(outcome)
