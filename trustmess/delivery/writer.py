"""Group commit: one task appends queued messages in batches, then publishes them in seq order.

Every sender hands its message to the writer and is answered only after the batch holding it
committed: the socket path passes a callback (``submit_with``), called right after the batch's
events are published, so a sender's reply leaves in the same write as the batch's deliveries;
the HTTP path awaits a future (``submit``). One task sends batches to the database one after
another, each only once the previous one committed, and publishes each batch before the
next, so events for a conversation leave this process in seq order; the next batch is
already in the database while the previous one is being answered. A batch that fails on its
data is retried message by message, so one bad row cannot lose or mis-answer the others; one
that loses its connection is tried once more as a whole, then refused with a retryable error
(the client resends under the same client_msg_id). Rows a failed attempt stored come back from
the retry, or from the client's resend, as duplicates, and duplicates are published too
(receivers drop seqs they already have), so such a row reaches its receivers after all.

Changes (edits, deletions, reactions: ``submit_change_with``) share the queue and the batches:
a batch that holds any is one transaction that appends its messages first, then applies its
changes (store/changes.py), and is published in that order, so every entry of a conversation
leaves this process in seq order whatever its kind. A batch of messages only runs exactly as
before: one statement, no transaction around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from trustmess.errors import (
    ApiError,
    ErrorCode,
    conversation_blocked,
    conversation_not_found,
    invalid,
    not_found,
)
from trustmess.models import Change, ChangeResult, Message, SendResult
from trustmess.store.changes import ChangeOutcome, NewChange, append_then_apply
from trustmess.store.messages import AppendResult, NewMessage, append_messages
from trustmess.wire.validation import MAX_REACTIONS_PER_MESSAGE

log = logging.getLogger(__name__)

# The writer keeps its connection between batches while it has work; after this long with
# none, the connection goes back to the pool.
IDLE_RELEASE_S = 10.0
# The commit window waits only when, at the rate of the last period this long, at least one
# more message is expected to arrive within it.
RATE_PERIOD_S = 1.0

Publish = Callable[[Message], None]
PublishChange = Callable[[Change], None]
# Called once per submitted message: with its SendResult, or the ApiError that refused it.
Answer = Callable[[SendResult | ApiError], None]
ChangeAnswer = Callable[[ChangeResult | ApiError], None]


@dataclass(slots=True)
class _Pending:
    message: NewMessage | NewChange
    # None once answered: every sender is answered exactly once
    answer: Callable[[Any], None] | None


@dataclass(slots=True)
class _Batch:
    """Messages on their way to the database: one group per distinct key."""

    groups: list[list[_Pending]]  # messages first, then changes
    task: asyncio.Task[list[Any]]


class WriterClosed(Exception):
    """The writer is shutting down and takes no new messages."""


class MessageWriter:
    """Batches message inserts; ``batch_max`` rows per round trip, optional ``window_s`` wait."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        publish: Publish,
        *,
        publish_change: PublishChange | None = None,
        batch_max: int = 1024,
        window_s: float = 0.0,
        edit_window_s: float = 0.0,
        max_reactions: int = MAX_REACTIONS_PER_MESSAGE,
        idle_release_s: float = IDLE_RELEASE_S,
        rate_period_s: float = RATE_PERIOD_S,
    ) -> None:
        self._pool = pool
        # The connection batches are stored on, kept between batches: an acquire and release
        # per batch cost about 25 µs of the event loop's time, and at everyday rates every
        # message is a batch. A batch that fails gives it back (the pool replaces a broken one),
        # and so does a writer idle for ``idle_release_s`` (``_give_back``).
        self._conn: PoolConnectionProxy | None = None
        self._idle_release_s = idle_release_s
        self._idle: asyncio.TimerHandle | None = None
        self._releasing: set[asyncio.Task[None]] = set()
        self._publish = publish
        self._publish_change = publish_change
        self._edit_window_s = edit_window_s
        self._max_reactions = max_reactions
        self._batch_max = batch_max
        self._window_s = window_s
        # Messages taken since ``_rate_since``, and the rate of the last full period.
        self._rate = 0.0
        self._rate_count = 0
        self._rate_since = 0.0
        self._rate_period_s = rate_period_s
        self._window_waiter: asyncio.Future[None] | None = None  # close() ends a window early
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._closed_reason = "the message writer is shutting down"
        self.batches = 0
        self.persisted = 0
        self.changed = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="message-writer")
        self._task.add_done_callback(self._stopped)

    def submit_with(self, message: NewMessage, answer: Answer) -> None:
        """Queue ``message``; ``answer`` is called from the writer after commit (never raises
        into it: its exceptions are logged)."""
        if self._closed:
            raise WriterClosed(self._closed_reason)
        self._queue.put_nowait(_Pending(message, answer))

    def submit_change_with(self, change: NewChange, answer: ChangeAnswer) -> None:
        """Queue an edit, delete or reaction; ``answer`` is called after commit."""
        if self._closed:
            raise WriterClosed(self._closed_reason)
        self._queue.put_nowait(_Pending(change, answer))

    def submit_change(self, change: NewChange) -> asyncio.Future[ChangeResult]:
        """Queue ``change``; the future resolves after commit (or raises ApiError)."""
        future: asyncio.Future[ChangeResult] = asyncio.get_running_loop().create_future()
        self.submit_change_with(change, partial(_settle, future))
        return future

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
        _settle_once(self._window_waiter)
        if self._task is not None:
            # asyncio.wait, not await: a task that died meanwhile has been logged and has failed
            # its callers (``_stopped``); its exception must not break the shutdown that follows.
            await asyncio.wait([self._task])

    async def _run(self) -> None:
        try:
            await self._batches()
        finally:
            # However the batches ended (stopped, cancelled, a callback's BaseException), the
            # connection goes back before the pool is closed; no _store is running by now.
            idle, self._idle = self._idle, None
            if idle is not None:
                idle.cancel()
            self._give_back()
            if self._releasing:
                await asyncio.wait(self._releasing)

    async def _batches(self) -> None:
        # Two stages overlap: while batch N's answers are published, batch N+1 (everything
        # queued meanwhile) is already in the database. N+1 is sent only once N has committed,
        # so seqs follow submission order, and a failed batch is recovered (``_recover``)
        # before anything queued after it is stored.
        stopping = False
        done: _Batch | None = None
        inflight: _Batch | None = None
        try:
            while True:
                if inflight is None:
                    if stopping:
                        return
                    if self._queue.empty() and self._conn is not None:
                        self._idle = asyncio.get_running_loop().call_later(
                            self._idle_release_s, self._give_back
                        )
                    first = await self._queue.get()
                    if self._idle is not None:
                        self._idle.cancel()
                        self._idle = None
                    if first is None:
                        return
                    if self._window_s > 0 and self._window_pays():
                        await self._window()
                    batch, stopping = self._take(first)
                    inflight = self._launch(batch)
                done, inflight = inflight, None
                try:
                    results = await done.task
                except Exception as error:
                    await self._recover(done.groups, error)
                    continue
                if not stopping and not self._queue.empty():
                    first = self._queue.get_nowait()
                    if first is None:
                        stopping = True
                    else:
                        batch, stopping = self._take(first)
                        inflight = self._launch(batch)
                        await asyncio.sleep(0)  # let it reach the database before we answer
                self._answer_batch(done.groups, results)
        except BaseException:
            # Nothing above lets an Exception out; whatever does (cancellation, a callback's
            # BaseException) must not leave the batches in hand unanswered.
            self._closed = True
            stores = []
            for held in (done, inflight):
                if held is not None:
                    held.task.cancel()
                    stores.append(held.task)
                    for group in held.groups:
                        _answer_all(group, _writer_stopped())
            if stores:
                # A cancelled _store gives its connection back itself: wait for that, so
                # that _run's release cannot race it.
                await asyncio.wait(stores)
            raise

    def _give_back(self) -> None:
        """Return the kept connection to the pool (in the background). Called when the writer
        has had nothing to do for ``idle_release_s``: in the pool, the pool's idle limit and
        recycling apply to it as to any other; the next batch takes one afresh."""
        conn, self._conn = self._conn, None
        if conn is not None:
            task = asyncio.get_running_loop().create_task(self._pool.release(conn))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        """Done-callback: a writer task that ended other than by ``close`` refuses what is
        queued and every later submit, instead of leaving them waiting forever."""
        error = None if task.cancelled() else task.exception()
        if error is None and not task.cancelled():
            return
        log.error("message writer stopped", exc_info=error)
        self._closed = True
        self._closed_reason = "the message writer stopped after an error"
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                _call(item, _writer_stopped())

    async def _window(self) -> None:
        """Let more messages gather for the commit window (``close`` ends it at once)."""
        loop = asyncio.get_running_loop()
        waiter = self._window_waiter = loop.create_future()
        timer = loop.call_later(self._window_s, _settle_once, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._window_waiter = None

    def _window_pays(self) -> bool:
        """Is another message expected within the commit window? Only then does waiting for
        it save a commit; at a lower rate every message would wait for nothing."""
        now = asyncio.get_running_loop().time()
        elapsed = now - self._rate_since
        if elapsed >= self._rate_period_s:
            self._rate = self._rate_count / elapsed
            self._rate_count = 0
            self._rate_since = now
        return self._rate * self._window_s >= 1.0

    def _take(self, first: _Pending) -> tuple[list[_Pending], bool]:
        """``first`` and whatever else is queued (up to batch_max); True if told to stop."""
        batch = [first]
        while len(batch) < self._batch_max and not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                self._rate_count += len(batch)
                return batch, True
            batch.append(item)
        self._rate_count += len(batch)
        return batch, False

    def _launch(self, batch: list[_Pending]) -> _Batch:
        # The same key twice in one batch: the first is stored, the rest answer as duplicates.
        unique: dict[tuple[int, int, str], list[_Pending]] = {}
        changes: list[list[_Pending]] = []
        for pending in batch:
            m = pending.message
            if type(m) is NewMessage:
                key = (m.conversation_id, m.sender_id, m.client_msg_id)
                unique.setdefault(key, []).append(pending)
            else:
                # Changes are applied one by one, in order: a repeated client_change_id is found
                # by the statement itself.
                changes.append([pending])
        groups = list(unique.values())
        if changes:
            groups += changes
        rows = [group[0].message for group in groups]
        return _Batch(groups, asyncio.create_task(self._store(rows)))

    async def _store(self, rows: list[NewMessage | NewChange]) -> list[Any]:
        """Store ``rows`` (messages first, then changes); results in the same order."""
        conn = self._conn
        if conn is None:
            conn = self._conn = await self._pool.acquire()
        try:
            if type(rows[-1]) is NewMessage:  # messages only: the hot path
                results: list[Any] = await append_messages(conn, rows)  # type: ignore[arg-type]
            else:
                split = next(i for i, row in enumerate(rows) if type(row) is not NewMessage)
                messages: list[NewMessage] = rows[:split]  # type: ignore[assignment]
                changes: list[NewChange] = rows[split:]  # type: ignore[assignment]
                async with conn.transaction():
                    results = await append_then_apply(
                        conn, messages, changes, self._edit_window_s, self._max_reactions
                    )
        except BaseException:
            # Failed, or cancelled mid-statement: the pool finds out what state it is in.
            self._conn = None
            await self._pool.release(conn)
            raise
        if len(results) != len(rows):
            raise RuntimeError(f"{len(rows)} messages stored, {len(results)} results")
        return results

    async def _recover(self, groups: list[list[_Pending]], error: Exception) -> None:
        """A batch failed, perhaps after it committed: find out what became of its messages.

        Whatever a retry returns is published, duplicates included (see ``_answer``): they may
        be rows the failed attempt stored without anybody hearing of it.
        """
        if _lost_connection(error) or _transient(error):
            # The database (or the way to it) is gone, or the batch lost a race (a deadlock
            # with another node's batch or a read-marker flush): one more try of the whole
            # batch, which also looks up what a lost attempt stored, instead of one per row.
            log.warning("a batch of %d failed (%r); retrying it", len(groups), error)
            try:
                results = await self._store([group[0].message for group in groups])
            except Exception as again:
                if _lost_connection(again):
                    log.exception("storing a batch of %d failed again; refusing it", len(groups))
                    for group in groups:
                        _answer_all(group, _database_unavailable())
                    return
                error = again
            else:
                self._answer_batch(groups, results)
                return
        # A row the database refused: store the messages one by one, so it sinks only itself.
        log.warning("a batch of %d failed; retrying one by one", len(groups), exc_info=error)
        for index, group in enumerate(groups):
            try:
                [result] = await self._store([group[0].message])
            except Exception as again:
                if _lost_connection(again):
                    await self._recover(groups[index:], again)
                    return
                log.exception("storing a message failed")
                _answer_all(group, ApiError(500, ErrorCode.INTERNAL, "message not stored"))
                continue
            self._answer_batch([group], [result])

    def _answer_batch(self, groups: list[list[_Pending]], results: list[Any]) -> None:
        """A stored batch (of one, in a row-by-row retry): publish and answer each row."""
        self.batches += 1
        for group, result in zip(groups, results, strict=True):
            self._answer(group, result)

    def _answer(self, group: list[_Pending], result: AppendResult | ChangeOutcome) -> None:
        """Publish the stored row (new or duplicate), then answer its senders; never raises,
        so one row cannot stop the writer."""
        if not isinstance(result, AppendResult):
            self._answer_change(group[0], result)
            return
        first = group[0].message
        assert type(first) is NewMessage
        if result.status == "not_member":
            _answer_all(group, conversation_not_found())
            return
        if result.status == "blocked":
            _answer_all(group, conversation_blocked())
            return
        if result.status == "bad_reply_to":
            _answer_all(group, invalid("reply_to", "must be an existing seq of the conversation"))
            return
        try:
            if result.id is None or result.seq is None or result.created_at is None:
                raise ValueError(f"a {result.status!r} result without a stored row")
            message = Message(
                id=result.id,
                conversation_id=first.conversation_id,
                seq=result.seq,
                sender_id=first.sender_id,
                body=result.body,
                reply_to=result.reply_to,
                client_msg_id=first.client_msg_id,
                created_at=result.created_at,
                # Only a duplicate of a message deleted since has no body.
                deleted=result.body is None,
            )
        except Exception:
            log.exception(
                "answering message %r of conversation %d failed",
                first.client_msg_id,
                first.conversation_id,
            )
            _answer_all(group, ApiError(500, ErrorCode.INTERNAL, "internal error"))
            return
        if result.status == "new":
            self.persisted += 1
        # Duplicates are published too: one may be a row stored by an attempt whose answer
        # was lost with its connection, which nobody has seen yet. Receivers drop seqs they
        # already have, so for everybody else it costs a frame that goes nowhere.
        try:
            self._publish(message)
        except Exception:
            log.exception("publishing message %s failed", message.id)
        duplicate = result.status == "duplicate"
        for pending in group:
            _call(pending, SendResult(message, duplicate))
            duplicate = True

    def _answer_change(self, pending: _Pending, outcome: ChangeOutcome) -> None:
        """Publish a stored change (new or duplicate, as for messages), then answer."""
        request = pending.message
        assert type(request) is NewChange
        refusal = _CHANGE_REFUSALS.get(outcome.status)
        if refusal is not None:
            _call(pending, refusal(self._edit_window_s))
            return
        change = outcome.change
        if change is not None and self._publish_change is not None:
            try:
                self._publish_change(change)
            except Exception:
                log.exception(
                    "publishing change %d of conversation %d failed",
                    change.seq,
                    change.conversation_id,
                )
        if outcome.status == "new":
            self.changed += 1
        result = ChangeResult(
            conversation_id=request.conversation_id,
            target_seq=request.target_seq if change is None else change.target_seq,
            seq=outcome.existing_seq if change is None else change.seq,
            duplicate=outcome.status == "duplicate",
        )
        _call(pending, result)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g} h"


# Why a change was refused, by its outcome's status (the edit window is passed in).
_CHANGE_REFUSALS: dict[str, Callable[[float], ApiError]] = {
    "not_member": lambda _: conversation_not_found(),
    "blocked": lambda _: conversation_blocked(),
    "no_message": lambda _: not_found("message not found"),
    "deleted": lambda _: not_found("message was deleted"),
    "not_sender": lambda _: ApiError(
        403, ErrorCode.FORBIDDEN, "only the sender can edit a message"
    ),
    "not_allowed": lambda _: ApiError(
        403,
        ErrorCode.FORBIDDEN,
        "only the sender, or the owner of a group, can delete a message",
    ),
    "window_closed": lambda window: ApiError(
        403, ErrorCode.FORBIDDEN, f"messages can be edited for {_hours(window)} after sending"
    ),
    "too_many_reactions": lambda _: ApiError(
        409,
        ErrorCode.CONFLICT,
        f"a message can have at most {MAX_REACTIONS_PER_MESSAGE} different reactions",
    ),
}


def _writer_stopped() -> ApiError:
    return ApiError(500, ErrorCode.INTERNAL, "message writer stopped")


def _database_unavailable() -> ApiError:
    """The database could not be reached, or the connection broke mid-statement: the message
    may or may not be stored, which is what ``internal`` tells a client (resending is safe);
    503 tells an HTTP client to retry."""
    return ApiError(
        503, ErrorCode.INTERNAL, "database unavailable; resend with the same client_msg_id"
    )


def _transient(error: BaseException) -> bool:
    """A failure of this attempt only (PostgreSQL chose it to break a deadlock)."""
    return isinstance(error, asyncpg.DeadlockDetectedError | asyncpg.SerializationError)


def _lost_connection(error: BaseException) -> bool:
    """A failure of the connection rather than of the data: the batch as a whole failed."""
    if isinstance(error, asyncpg.InterfaceError):
        # Except asyncpg's DataError (also a ValueError): a value the driver cannot encode.
        return not isinstance(error, ValueError)
    return isinstance(
        error,
        asyncpg.PostgresConnectionError  # includes ConnectionDoesNotExistError
        | asyncpg.AdminShutdownError  # the server is shutting down or restarting
        | asyncpg.CrashShutdownError
        | asyncpg.CannotConnectNowError
        | OSError
        | TimeoutError,  # command_timeout, or a connect that timed out
    )


def _answer_all(group: list[_Pending], outcome: SendResult | ChangeResult | ApiError) -> None:
    for pending in group:
        _call(pending, outcome)


def _call(pending: _Pending, outcome: SendResult | ChangeResult | ApiError) -> None:
    answer, pending.answer = pending.answer, None
    if answer is None:
        return
    try:
        answer(outcome)
    except Exception:
        log.exception("answering a sender failed")


def _settle(future: asyncio.Future[Any], outcome: SendResult | ChangeResult | ApiError) -> None:
    if future.done():
        return
    if isinstance(outcome, ApiError):
        future.set_exception(outcome)
        # Nobody may be waiting any more (the client went away); don't warn about it.
        with contextlib.suppress(Exception):
            future.exception()
    else:
        future.set_result(outcome)


def _settle_once(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
