"""trustmess.gateway.connection: the per-socket send queue, its limits, framing and ordering.

No socket: a fake transport stands in for the OS transport (direct writes, the default) and a
fake WebSocketResponse for aiohttp (the close handshake, and sending with compression on).
Written bytes are parsed back as RFC 6455 frames, so the tests see what a client would read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from aiohttp import WSMsgType

from trustmess.errors import CloseCode
from trustmess.gateway import connection as connection_module
from trustmess.gateway.connection import Connection, JoinState, WriteBatcher
from trustmess.gateway.ratelimit import TokenBucket

WAIT_S = 2.0
OVERFLOW = (CloseCode.TOO_SLOW, b"outbound queue overflow", False)
TEXT, PING, PONG = 0x1, 0x9, 0xA


class FakeTransport:
    """What Connection uses of asyncio.Transport: write, its buffer size, closing, abort, and
    its protocol (None once the transport has finished)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffered = 0  # what get_write_buffer_size() reports: unsent bytes
        self.closing = False
        self.fail: Exception | None = None
        self.written = asyncio.Event()
        self.aborted = asyncio.Event()

    def write(self, data: bytes) -> None:
        if self.fail is not None:
            raise self.fail
        self.writes.append(bytes(data))
        self.written.set()

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.closing = True
        self.aborted.set()

    def get_protocol(self) -> object:
        return object()


class FakeWebSocket:
    """What Connection uses of aiohttp's WebSocketResponse."""

    def __init__(self) -> None:
        self.closes: list[tuple[int, bytes, bool]] = []
        self.closed = asyncio.Event()
        self.frames: list[tuple[bytes, WSMsgType]] = []
        self.controls: list[tuple[str, bytes]] = []
        self.activity = asyncio.Event()

    async def close(self, *, code: int, message: bytes, drain: bool = True) -> bool:
        self.closes.append((code, message, drain))
        self.closed.set()
        return True

    async def send_frame(self, data: bytes, opcode: WSMsgType) -> None:
        self.frames.append((data, opcode))
        self.activity.set()

    async def ping(self, data: bytes = b"") -> None:
        self.controls.append(("ping", data))
        self.activity.set()

    async def pong(self, data: bytes = b"") -> None:
        self.controls.append(("pong", data))
        self.activity.set()


def direct(
    queue_frames: int = 1000, queue_bytes: int = 1 << 20, batcher: WriteBatcher | None = None
) -> tuple[Connection, FakeTransport, FakeWebSocket]:
    """A connection writing straight to a (fake) transport, as without compression."""
    transport, ws = FakeTransport(), FakeWebSocket()
    conn = Connection(
        ws,
        1,
        "s1",
        queue_frames=queue_frames,
        queue_bytes=queue_bytes,
        rate=TokenBucket(1.0, 1),
        transport=transport,
        batcher=batcher or WriteBatcher(),
    )
    return conn, transport, ws


def compressed(
    queue_frames: int = 1000, queue_bytes: int = 1 << 20
) -> tuple[Connection, FakeWebSocket]:
    """A connection whose writer task sends through aiohttp, as with compression."""
    ws = FakeWebSocket()
    conn = Connection(
        ws,
        1,
        "s1",
        queue_frames=queue_frames,
        queue_bytes=queue_bytes,
        rate=TokenBucket(1.0, 1),
    )
    return conn, ws


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """RFC 6455 server frames → (opcode, payload); checks FIN, no mask, minimal lengths."""
    frames = []
    at = 0
    while at < len(data):
        first, second = data[at], data[at + 1]
        at += 2
        assert first & 0xF0 == 0x80, "final frame, no extension bits"
        assert not second & 0x80, "server frames are not masked"
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(data[at : at + 2], "big")
            at += 2
            assert length >= 126, "not the shortest length encoding"
        elif length == 127:
            length = int.from_bytes(data[at : at + 8], "big")
            at += 8
            assert 1 << 16 <= length < 1 << 63
        assert at + length <= len(data), "truncated frame"
        frames.append((first & 0x0F, data[at : at + length]))
        at += length
    return frames


def sent(conn: Connection, transport: FakeTransport) -> list[bytes]:
    """Write what is queued (as the batcher's callback would) and read back the text frames."""
    conn.write_queued()
    frames = parse_frames(b"".join(transport.writes))
    transport.writes.clear()
    assert {opcode for opcode, _ in frames} <= {TEXT}
    return [payload for _, payload in frames]


async def until(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), WAIT_S)


async def until_true(condition: Callable[[], bool], event: asyncio.Event) -> None:
    """Wait (bounded) until ``condition`` holds, re-checking whenever ``event`` is set."""
    async with asyncio.timeout(WAIT_S):
        while not condition():
            event.clear()
            await event.wait()


# ---------------------------------------------------------------- framing


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x81\x00"),
        (1, b"\x81\x01"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (127, b"\x81\x7e\x00\x7f"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
        (100_000, b"\x81\x7f" + (100_000).to_bytes(8, "big")),
    ],
)
async def test_a_payload_is_written_as_one_text_frame(length: int, header: bytes) -> None:
    conn, transport, _ = direct()
    payload = bytes(range(256)) * (length // 256) + b"x" * (length % 256)
    conn.send(payload)
    conn.write_queued()
    assert transport.writes == [header + payload]
    assert parse_frames(transport.writes[0]) == [(TEXT, payload)]


async def test_one_payload_fanned_out_is_framed_right_for_every_recipient() -> None:
    batcher = WriteBatcher()
    (one, t1, _), (two, t2, _) = direct(batcher=batcher), direct(batcher=batcher)
    shared, other = b'{"type":"message","seq":1}', b'{"type":"message","seq":2}'
    for payload in (shared, other, shared):
        one.send(payload)
        two.send(payload)
    assert sent(one, t1) == sent(two, t2) == [shared, other, shared]


async def test_equal_lengths_do_not_share_a_frame() -> None:
    conn, transport, _ = direct()
    for number in range(3):
        conn.send(f"payload-{number}".encode())
    assert sent(conn, transport) == [b"payload-0", b"payload-1", b"payload-2"]


# ---------------------------------------------------------------- batching


async def test_frames_queued_in_one_loop_iteration_leave_in_one_write() -> None:
    conn, transport, _ = direct()
    for payload in (b"a", b"bb", b"ccc"):
        conn.send(payload)
    assert transport.writes == []  # not before the event loop turns
    await until(transport.written)
    assert len(transport.writes) == 1
    assert parse_frames(transport.writes[0]) == [(TEXT, b"a"), (TEXT, b"bb"), (TEXT, b"ccc")]


async def test_one_callback_writes_every_connection_with_something_queued() -> None:
    batcher = WriteBatcher()
    (one, t1, _), (two, t2, _) = direct(batcher=batcher), direct(batcher=batcher)
    one.send(b"to one")
    two.send(b"to two")
    await until(t1.written)
    # No await since: the second connection was written by the same callback.
    assert parse_frames(b"".join(t2.writes)) == [(TEXT, b"to two")]


async def test_a_burst_is_written_at_once() -> None:
    conn, transport, _ = direct(queue_frames=8)  # a burst is half the frame limit: 4
    for number in range(3):
        conn.send(b"%d" % number)
    assert transport.writes == []
    conn.send(b"3")
    assert len(transport.writes) == 1
    assert [payload for _, payload in parse_frames(transport.writes[0])] == [b"0", b"1", b"2", b"3"]


async def test_nothing_is_written_to_a_closing_transport() -> None:
    conn, transport, _ = direct()
    conn.send(b"late")
    transport.closing = True
    conn.write_queued()
    assert transport.writes == []


async def test_a_failing_write_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    conn, transport, _ = direct()
    conn.send(b"lost")
    transport.fail = OSError("broken pipe")
    with caplog.at_level(logging.ERROR, logger=connection_module.__name__):
        conn.write_queued()
    assert "writing to <Connection user=1 session=s1> failed" in caplog.text
    transport.fail = None
    conn.send(b"next")
    assert sent(conn, transport) == [b"next"]  # the failed frames are not sent again


# ---------------------------------------------------------------- queue limits


async def test_more_frames_than_the_limit_close_with_4009() -> None:
    conn, ws = compressed(queue_frames=3)
    for number in range(3):
        conn.send(b"%d" % number)
    assert not conn.closing
    conn.send(b"one too many")
    assert conn.closing
    await until(ws.closed)
    assert ws.closes == [OVERFLOW]


async def test_more_bytes_than_the_limit_close_with_4009() -> None:
    conn, ws = compressed(queue_bytes=10)
    conn.send(b"123456")
    conn.send(b"7890")  # exactly the limit
    assert not conn.closing
    conn.send(b"!")
    await until(ws.closed)
    assert ws.closes == [OVERFLOW]


async def test_direct_writes_count_the_framed_size() -> None:
    conn, _, ws = direct(queue_bytes=10)
    conn.send(b"12345678")  # 10 bytes with its header
    assert not conn.closing
    conn.send(b"")  # a 2-byte frame
    await until(ws.closed)
    assert ws.closes == [OVERFLOW]


async def test_bytes_the_peer_has_not_read_count_against_the_limit() -> None:
    conn, transport, ws = direct(queue_bytes=100)
    conn.send(b"x" * 10)
    transport.buffered = 90  # the write stays in the transport: the peer reads nothing
    conn.write_queued()
    conn.send(b"y" * 10)
    await until(ws.closed)
    assert ws.closes == [OVERFLOW]


async def test_bytes_the_peer_has_read_since_no_longer_count() -> None:
    conn, transport, _ = direct(queue_bytes=100)
    conn.send(b"x" * 10)
    transport.buffered = 90
    conn.write_queued()
    transport.buffered = 0  # the peer caught up
    conn.send(b"y" * 10)
    assert not conn.closing
    assert sent(conn, transport) == [b"x" * 10, b"y" * 10]


async def test_after_an_overflow_nothing_more_is_sent() -> None:
    conn, transport, ws = direct(queue_bytes=10)
    conn.send(b"queued")
    conn.send(b"overflowing")
    conn.send(b"after")
    conn.write_queued()
    await until(ws.closed)
    assert transport.writes == []


# ---------------------------------------------------------------- control frames


async def test_ping_and_pong_are_control_frames() -> None:
    conn, transport, _ = direct()
    conn.ping()
    conn.pong(b"abc")
    conn.pong(b"z" * 200)  # a control frame carries at most 125 bytes
    conn.write_queued()
    assert parse_frames(b"".join(transport.writes)) == [
        (PING, b""),
        (PONG, b"abc"),
        (PONG, b"z" * 125),
    ]


async def test_pongs_count_against_the_byte_limit() -> None:
    conn, _, ws = direct(queue_bytes=10)
    conn.pong(b"12345")  # 7 bytes
    assert not conn.closing
    conn.pong(b"12345")
    await until(ws.closed)
    assert ws.closes == [OVERFLOW]


async def test_with_compression_aiohttp_sends_the_control_frames() -> None:
    conn, ws = compressed()
    conn.pong(b"abc")
    await until(ws.activity)
    assert ws.controls == [("pong", b"abc")]


# ---------------------------------------------------------------- the writer task (compression)


async def test_the_writer_task_sends_text_frames_in_order() -> None:
    conn, ws = compressed()
    conn.send(b"before start")
    conn.start_writer()
    conn.send(b"after start")
    await until_true(lambda: len(ws.frames) == 2, ws.activity)
    assert ws.frames == [(b"before start", WSMsgType.TEXT), (b"after start", WSMsgType.TEXT)]
    await conn.stop_writer()


async def test_sent_frames_no_longer_count_against_the_limit() -> None:
    conn, ws = compressed(queue_bytes=10)
    conn.start_writer()
    conn.send(b"x" * 10)
    await until_true(lambda: len(ws.frames) == 1, ws.activity)
    conn.send(b"y" * 10)
    await until_true(lambda: len(ws.frames) == 2, ws.activity)
    assert not conn.closing
    await conn.stop_writer()


# ---------------------------------------------------------------- closing


async def test_close_soon_drops_the_queue_and_closes_without_draining() -> None:
    conn, transport, ws = direct()
    conn.send(b"never sent")
    conn.close_soon(CloseCode.GOING_AWAY, "shutting down")
    conn.close_soon(CloseCode.TOO_SLOW, "twice")
    conn.send(b"nor this")
    conn.write_queued()
    await conn.wait_closed(WAIT_S)
    assert ws.closes == [(CloseCode.GOING_AWAY, b"shutting down", False)]
    assert transport.writes == []


async def test_a_peer_that_never_reads_is_cut_off_after_the_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connection_module, "ABORT_AFTER_S", 0.0)
    conn, transport, ws = direct()
    conn.close_soon(CloseCode.TOO_SLOW, "outbound queue overflow")
    await until(transport.aborted)
    assert ws.closes == [OVERFLOW]


async def test_close_after_close_soon_waits_for_the_same_handshake() -> None:
    conn, _, ws = direct()
    conn.close_soon(CloseCode.TOKEN_EXPIRED, "access token expired")
    await conn.close(CloseCode.NORMAL, "bye")
    assert ws.closes == [(CloseCode.TOKEN_EXPIRED, b"access token expired", False)]


async def test_drop_aborts_without_a_close_frame() -> None:
    conn, transport, ws = direct()
    conn.send(b"never sent")
    conn.drop("no answer to ping")
    assert transport.aborted.is_set()
    assert conn.closing
    await asyncio.wait_for(conn.wait_closed(3600), WAIT_S)  # already closed: no wait
    conn.write_queued()
    assert transport.writes == []
    assert ws.closes == []


# ---------------------------------------------------------------- delivery order


def event(seq: int | None, conversation_id: int = 7) -> bytes:
    return b'{"c":%d,"seq":%s}' % (conversation_id, b"null" if seq is None else b"%d" % seq)


def live(delivered: int) -> JoinState:
    """A joined conversation past its replay."""
    return JoinState(delivered=delivered, pending=None)


async def test_events_of_a_conversation_not_joined_are_not_sent() -> None:
    conn, transport, _ = direct()
    conn.deliver(7, 1, event(1))
    conn.deliver(7, None, event(None))
    conn.deliver_replayed(7, 1, event(1))
    conn.start_live(7)
    assert sent(conn, transport) == []


async def test_live_messages_are_sent_once_and_never_backwards() -> None:
    conn, transport, _ = direct()
    conn.joined[7] = live(delivered=5)
    for seq in (5, 6, 6, 4, 8, 7, 9):
        conn.deliver(7, seq, event(seq))
    assert sent(conn, transport) == [event(6), event(8), event(9)]
    assert conn.joined[7].delivered == 9


async def test_events_without_seq_are_always_sent() -> None:
    conn, transport, _ = direct()
    conn.joined[7] = live(delivered=5)
    conn.deliver(7, None, event(None))
    conn.deliver(7, None, event(None))
    assert sent(conn, transport) == [event(None), event(None)]


async def test_conversations_keep_their_own_positions() -> None:
    conn, transport, _ = direct()
    conn.joined[7] = live(delivered=3)
    conn.joined[8] = live(delivered=0)
    conn.deliver(7, 3, event(3, 7))
    conn.deliver(8, 3, event(3, 8))
    conn.deliver(7, 4, event(4, 7))
    assert sent(conn, transport) == [event(3, 8), event(4, 7)]


async def test_replay_and_live_events_meet_without_gap_or_duplicate() -> None:
    conn, transport, _ = direct()
    conn.joined[7] = JoinState(delivered=2)  # join with since=2: replay in progress
    # Live events committed meanwhile wait for the replay.
    for seq in (4, None, 5):
        conn.deliver(7, seq, event(seq))
    assert sent(conn, transport) == []
    # The replay read from the database overlaps them (it was read after subscribing).
    for seq in (3, 4):
        conn.deliver_replayed(7, seq, event(seq))
    conn.start_live(7)
    conn.deliver(7, 5, event(5))
    conn.deliver(7, 6, event(6))
    assert sent(conn, transport) == [event(3), event(4), event(None), event(5), event(6)]


async def test_replayed_messages_already_delivered_are_skipped() -> None:
    conn, transport, _ = direct()
    conn.joined[7] = JoinState(delivered=4)
    for seq in (3, 4, 5, 5):
        conn.deliver_replayed(7, seq, event(seq))
    assert sent(conn, transport) == [event(5)]


async def test_start_live_happens_once() -> None:
    conn, transport, _ = direct()
    conn.joined[7] = JoinState(delivered=0)
    conn.deliver(7, 1, event(1))
    conn.start_live(7)
    conn.start_live(7)
    conn.start_live(8)  # not joined
    assert sent(conn, transport) == [event(1)]


async def test_events_for_the_user_are_sent_as_they_come() -> None:
    conn, transport, _ = direct()
    conn.joined[7] = JoinState(delivered=0)  # a pending join does not hold them back
    conn.deliver_user(b'{"type":"removed"}')
    assert sent(conn, transport) == [b'{"type":"removed"}']
