"""One socket's state: its joined conversations, its bounded outbound queue and its writer.

Everything sent to a client (replies, errors, events) goes through ``send``, which never
awaits. Without compression (the default) frames are written straight to the transport: all
frames queued for a connection during one event-loop iteration leave in a single write, with
no task switch per frame (the model of websockets' ``broadcast()``), and one callback (the
app's :class:`WriteBatcher`) writes every connection that has something queued. With
compression, one writer task per connection sends through aiohttp. Either way a client that
lets more than the queue limit pile up unsent is closed with 4009 instead of slowing anyone
else down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import WSMsgType

from trustmess.errors import CloseCode
from trustmess.gateway.ratelimit import TokenBucket
from trustmess.wire.wsframe import control_frame, text_frame

log = logging.getLogger(__name__)

ABORT_AFTER_S = 5.0
BURST_FRAMES = 64  # frames queued in one loop iteration before they are written at once


class Peer(Protocol):
    """The socket as a connection uses it: aiohttp's WebSocketResponse, which only the endpoint
    creates, upgrades and reads from. Most frames bypass it (written straight to the
    transport); it sends what aiohttp must frame itself (compressed frames) and the close."""

    @property
    def close_code(self) -> int | None: ...

    async def send_frame(
        self, message: bytes, opcode: WSMsgType, compress: int | None = None
    ) -> None: ...

    async def ping(self, message: bytes = b"") -> None: ...

    async def pong(self, message: bytes = b"") -> None: ...

    async def close(
        self, *, code: int = 1000, message: bytes = b"", drain: bool = True
    ) -> bool: ...


@dataclass(slots=True)
class JoinState:
    """Delivery position in one conversation.

    ``delivered`` is the highest seq sent; while a join's replay is being read, live events
    wait in ``pending`` so replay and live traffic meet without a gap or a duplicate.
    """

    delivered: int
    pending: list[tuple[int | None, bytes]] | None = field(default_factory=list)


class WriteBatcher:
    """Writes out, from a single callback per event-loop iteration, every connection that
    queued frames during it (a fan-out to 1,000 sockets schedules one callback, not 1,000)."""

    __slots__ = ("_dirty",)

    def __init__(self) -> None:
        self._dirty: list[Connection] = []

    def add(self, conn: Connection) -> None:
        self._dirty.append(conn)
        if len(self._dirty) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.write_queued()


class Connection:
    """An authenticated WebSocket as the gateway and the hub see it."""

    # Slots, and the events and writer task only when needed: 10,000 idle sockets should
    # cost little more than aiohttp's own state for them.
    __slots__ = (
        "__weakref__",
        "_batcher",
        "_buffered",
        "_burst",
        "_close_done",
        "_closed",
        "_closer",
        "_control",
        "_flush_scheduled",
        "_max_bytes",
        "_max_frames",
        "_queue",
        "_queued_bytes",
        "_wakeup",
        "_writer",
        "abuse_since",
        "busy",
        "closing",
        "expires_at",
        "heard",
        "joined",
        "last_rejected",
        "login_session_id",
        "rate",
        "rejection_answered",
        "sent_close_code",
        "session_id",
        "silent_sweeps",
        "transport",
        "user_id",
        "ws",
    )

    def __init__(
        self,
        ws: Peer,
        user_id: int,
        session_id: str,
        *,
        queue_frames: int,
        queue_bytes: int,
        rate: TokenBucket,
        transport: asyncio.Transport | None = None,
        batcher: WriteBatcher | None = None,
        login_session_id: str = "",
    ) -> None:
        self.ws = ws
        self.transport = transport
        # Direct writes need the transport and a batcher; otherwise a writer task sends.
        self._batcher = batcher if transport is not None else None
        self._flush_scheduled = False
        self.user_id = user_id
        # ``session_id`` names this connection (``hello``); ``login_session_id`` the session
        # (device, GET /auth/sessions) of its access token: ending that closes it with 4001.
        self.session_id = session_id
        self.login_session_id = login_session_id
        self.rate = rate
        self.joined: dict[int, JoinState] = {}
        self.expires_at = float("inf")  # of the access token (see expiry.py)
        self.abuse_since: float | None = None
        self.last_rejected = 0.0
        self.rejection_answered = float("-inf")  # when rate_limited was last sent
        self.closing = False
        # The code of the close frame this side sent (ws.close_code becomes the peer's answer).
        self.sent_close_code: int | None = None
        # Liveness, for the process-wide heartbeat (heartbeat.py). ``busy``: a command is
        # being awaited, so the reader loop is not taking the peer's pongs meanwhile.
        self.heard = True
        self.busy = False
        self.silent_sweeps = 0
        self._queue: list[bytes] = []
        self._queued_bytes = 0
        self._buffered = 0
        self._max_frames = queue_frames
        self._burst = max(1, min(BURST_FRAMES, queue_frames // 2))
        self._max_bytes = queue_bytes
        self._wakeup: asyncio.Event | None = None  # the writer task's, with compression
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._control: asyncio.Task[None] | None = None  # a ping or pong, with compression
        self._close_done = False
        self._closed: asyncio.Event | None = None  # made by the first wait_closed

    def __repr__(self) -> str:
        return f"<Connection user={self.user_id} session={self.session_id}>"

    # --- outbound -------------------------------------------------------------------------

    def send(self, payload: bytes) -> None:
        """Queue one encoded frame; overflow closes the connection with 4009."""
        if self.closing:
            return
        batcher = self._batcher
        if batcher is not None:
            payload = text_frame(payload)
            # _buffered: the transport's unsent bytes after our last write. It can only have
            # shrunk since, so it is re-read from the transport before a close, not per frame.
            over = self._queued_bytes + len(
                payload
            ) + self._buffered > self._max_bytes and self._over_bytes(len(payload))
        else:
            over = self._queued_bytes + len(payload) > self._max_bytes
        if over or len(self._queue) >= self._max_frames:
            self.close_soon(CloseCode.TOO_SLOW, "outbound queue overflow")
            return
        self._queue.append(payload)
        self._queued_bytes += len(payload)
        if batcher is None:
            if self._wakeup is not None:
                self._wakeup.set()
        elif len(self._queue) >= self._burst:
            # A burst (a big batch for one socket) leaves now; what the peer has not read yet
            # then counts in the transport's buffer, against the byte limit. (So in this mode
            # the queue never holds more than a burst: the byte limit is the one that bites.)
            self._write()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            batcher.add(self)

    def ping(self) -> None:
        """Send a WebSocket ping (the peer's pong sets ``heard``)."""
        self._send_control(0x9, b"")

    def pong(self, data: bytes) -> None:
        """Answer the peer's ping."""
        self._send_control(0xA, data[:125])

    def _send_control(self, opcode: int, data: bytes) -> None:
        if self.closing:
            return
        if self._batcher is None:
            # aiohttp frames (and never compresses) control frames itself. One at a time: a
            # peer flooding pings gets a pong for the latest only (RFC 6455 5.5.3 allows it),
            # not a task per ping.
            if self._control is not None and not self._control.done():
                return
            send = self.ws.ping if opcode == 0x9 else self.ws.pong
            self._control = asyncio.get_running_loop().create_task(send(data))
            self._control.add_done_callback(_ignore_failure)
            return
        frame = control_frame(opcode, data)
        # Control frames count against the byte limit too: a peer that floods pings and
        # never reads our pongs is as slow as one that never reads messages.
        if self._over_bytes(len(frame)):
            self.close_soon(CloseCode.TOO_SLOW, "outbound queue overflow")
            return
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._batcher.add(self)

    def _over_bytes(self, size: int) -> bool:
        """Would ``size`` more bytes exceed the byte limit, counting what the transport holds
        now (direct writes only)?"""
        if self.transport is not None:
            self._buffered = self.transport.get_write_buffer_size()
        return self._queued_bytes + size + self._buffered > self._max_bytes

    def drop(self, reason: str) -> None:
        """The peer is gone: abort the connection without a close handshake (1006)."""
        if self.closing:
            return
        log.debug("dropping %r: %s", self, reason)
        self.detach()
        if self.transport is not None:
            self.transport.abort()
        self._mark_closed()

    def write_queued(self) -> None:
        """The batcher's callback: write what was queued during this loop iteration."""
        self._flush_scheduled = False
        self._write()

    def _write(self) -> None:
        """Write every queued (already framed) frame to the transport in one call."""
        queue, transport = self._queue, self.transport
        if not queue:
            return
        try:
            if not (self.closing or transport is None or transport.is_closing()):
                transport.write(queue[0] if len(queue) == 1 else b"".join(queue))
                self._buffered = transport.get_write_buffer_size()
        except Exception:
            # Never into the caller: that may be a fan-out with other recipients to serve.
            log.exception("writing to %r failed", self)
        queue.clear()
        self._queued_bytes = 0

    def detach(self) -> None:
        """Send nothing more: the socket is closing, or finished (the peer closed, or it
        failed), and nothing may follow a close frame."""
        self.closing = True
        self._queue.clear()
        self._queued_bytes = 0

    def deliver(self, conversation_id: int, seq: int | None, payload: bytes) -> None:
        """A conversation event from the hub; message events are delivered once, in order."""
        state = self.joined.get(conversation_id)
        if state is None:
            return
        if state.pending is not None:
            state.pending.append((seq, payload))
            return
        if seq is not None:
            if seq <= state.delivered:
                return
            state.delivered = seq
        self.send(payload)

    def deliver_replayed(self, conversation_id: int, seq: int, payload: bytes) -> None:
        """A message read from the database during a join (sent ahead of ``pending``)."""
        state = self.joined.get(conversation_id)
        if state is not None and seq > state.delivered:
            state.delivered = seq
            self.send(payload)

    def deliver_user(self, payload: bytes) -> None:
        self.send(payload)

    def start_live(self, conversation_id: int) -> None:
        """End a join's replay: flush events that arrived meanwhile, skipping seen seqs."""
        state = self.joined.get(conversation_id)
        if state is None or state.pending is None:
            return
        pending, state.pending = state.pending, None
        for seq, payload in pending:
            self.deliver(conversation_id, seq, payload)

    def start_writer(self) -> None:
        if self._batcher is None:
            self._wakeup = asyncio.Event()
            if self._queue:
                self._wakeup.set()
            self._writer = asyncio.create_task(self._write_loop(self._wakeup))

    async def _write_loop(self, wakeup: asyncio.Event) -> None:
        ws = self.ws
        try:
            while True:
                await wakeup.wait()
                wakeup.clear()
                while self._queue:
                    batch, self._queue = self._queue, []
                    for payload in batch:
                        if self.closing:
                            return
                        await ws.send_frame(payload, WSMsgType.TEXT)
                        self._queued_bytes -= len(payload)  # sent: no longer counts for flush
        except (ConnectionError, RuntimeError):
            # The peer went away; the reader loop notices and cleans up.
            pass

    async def flush(self, within_s: float) -> None:
        """Give the writer up to ``within_s`` seconds to send what is queued (shutdown only)."""
        deadline = asyncio.get_running_loop().time() + within_s
        while self._unsent() > 0 and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    def _unsent(self) -> int:
        """Bytes not yet handed to the kernel: queued here (with compression, including the
        batch the writer task has taken but not sent yet), then in the transport."""
        direct = self._batcher is not None and self.transport is not None
        buffered = self.transport.get_write_buffer_size() if direct and self.transport else 0
        return self._queued_bytes + buffered

    # --- closing --------------------------------------------------------------------------

    def close_soon(self, code: int, reason: str) -> None:
        """Close from a synchronous context (hub fan-out, timers)."""
        if self.closing:
            return
        self.detach()
        self._closer = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def close(self, code: int, reason: str, *, flush_s: float = 0.0) -> None:
        if self.closing:
            if self._closer is not None:
                await asyncio.shield(self._closer)
            return
        if flush_s > 0:
            await self.flush(flush_s)
        self.closing = True
        await self._close(code, reason)

    async def wait_closed(self, within_s: float) -> None:
        """Wait for a close in progress to finish its handshake.

        The handler must not return before: aiohttp would close the transport while the peer
        still sends, and unread data makes the kernel reset the connection, so the peer never
        sees our close frame (1006 instead of, say, 1001).
        """
        if self._close_done:
            return
        if self._closed is None:
            self._closed = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), within_s)

    def _mark_closed(self) -> None:
        self._close_done = True
        if self._closed is not None:
            self._closed.set()

    async def _close(self, code: int, reason: str) -> None:
        try:
            await self._close_handshake(code, reason)
        finally:
            self._mark_closed()

    async def _close_handshake(self, code: int, reason: str) -> None:
        log.debug("closing %r with %d: %s", self, code, reason)
        self.sent_close_code = code
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
            # drain=False: a peer that stopped reading would block a draining close forever.
            await asyncio.wait_for(
                self.ws.close(code=code, message=reason.encode(), drain=False), 5.0
            )
        # A closed transport still flushes its buffer before it lets go; a peer that never
        # reads would keep this connection (and its handler) alive for ever. Cut it off.
        if self.transport is not None:
            asyncio.get_running_loop().call_later(ABORT_AFTER_S, _abort_unfinished, self.transport)

    async def stop_writer(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer


def _abort_unfinished(transport: asyncio.Transport) -> None:
    """The delayed abort of a closed socket. The transport may have finished meanwhile (the
    peer read the rest of its buffer): asyncio's then has no protocol and no loop left, and
    its ``abort`` would fail on that."""
    if transport.get_protocol() is None:
        return
    transport.abort()


def _ignore_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # a peer gone meanwhile: the reader loop notices
