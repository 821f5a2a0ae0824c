"""The bus's plain Redis connections: the pure-Python RESP reader (used without hiredis)
against hiredis's over every split of a stream, the subscriber's dispatch of pushes, and the
publisher's one future for a batch's replies."""

from __future__ import annotations

import asyncio

import hiredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustmess.cluster.redis_link import BusLinkError, ReplyError, RespReader, command
from trustmess.cluster.redis_publisher import BusPublisher
from trustmess.cluster.redis_subscriber import BusSubscriber


def bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def push(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(bulk(p) for p in parts)


STREAM = (
    b"+OK\r\n"
    + b"*3\r\n"
    + bulk(b"subscribe")
    + bulk(b"tm0:c:1")
    + b":1\r\n"  # the count: an integer
    + push(b"message", b"tm0:c:1", b'["n",1.0,5,null]\n{"type":"message"}')
    + push(b"message", b"tm0:u:2", b"with\r\nCRLF inside and \x00 bytes")
    + push(b"message", b"tm0:c:1", b"")
    + b"*2\r\n$4\r\npong\r\n$8\r\ntm-alive\r\n"
    + b"-ERR unknown command\r\n"
    + b"$-1\r\n*-1\r\n*0\r\n"
    + b"*2\r\n*1\r\n:7\r\n$1\r\nx\r\n"
)


def read_all(reader: object, chunks: list[bytes]) -> list[object]:
    replies: list[object] = []
    for chunk in chunks:
        reader.feed(chunk)  # type: ignore[attr-defined]
        while (reply := reader.gets()) is not False:  # type: ignore[attr-defined]
            replies.append(reply)
    return replies


def normal(replies: list[object]) -> list[object]:
    """Error replies compared by their text (the two readers use their own classes)."""
    return [("error", str(r)) if isinstance(r, Exception) else r for r in replies]


def test_the_python_reader_reads_what_hiredis_reads() -> None:
    expected = normal(read_all(hiredis.Reader(), [STREAM]))
    assert normal(read_all(RespReader(), [STREAM])) == expected
    assert expected[0] == b"OK" and expected[2][0] == b"message"  # type: ignore[index]
    assert isinstance(read_all(RespReader(), [b"-ERR x\r\n"])[0], ReplyError)


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_of_the_stream_gives_the_same_replies(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert normal(read_all(RespReader(), chunks)) == normal(read_all(hiredis.Reader(), [STREAM]))


def test_a_stream_that_is_not_resp_is_refused() -> None:
    reader = RespReader()
    reader.feed(b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(BusLinkError):
        reader.gets()


def test_command_is_an_array_of_bulk_strings() -> None:
    assert command("SUBSCRIBE", "tm0:c:1") == b"*2\r\n$9\r\nSUBSCRIBE\r\n$7\r\ntm0:c:1\r\n"
    assert read_all(hiredis.Reader(), [command("PING", b"\xff")]) == [[b"PING", b"\xff"]]


class FakeTransport(asyncio.Transport):
    """Only what the protocol calls: records writes and whether it was aborted."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True


async def test_pushes_are_dispatched_and_a_broken_stream_ends_the_link() -> None:
    messages: list[tuple[bytes, bytes]] = []
    confirmed: list[bytes] = []
    protocol = BusSubscriber(lambda c, d: messages.append((c, d)), confirmed.append)
    transport = FakeTransport()
    protocol.connection_made(transport)
    protocol.subscribe("tm0:c:1")
    assert transport.written == [command("SUBSCRIBE", "tm0:c:1")]

    wire = b"*3\r\n" + bulk(b"subscribe") + bulk(b"tm0:c:1") + b":1\r\n"
    wire += push(b"message", b"tm0:c:1", b"hello") + push(b"message", b"tm0:c:1", b"again")
    protocol.data_received(wire[:17])
    protocol.data_received(wire[17:])
    assert confirmed == [b"tm0:c:1"]
    assert messages == [(b"tm0:c:1", b"hello"), (b"tm0:c:1", b"again")]
    assert not protocol.lost.done()

    protocol.data_received(b"-ERR something broke\r\n")
    assert protocol.lost.done() and transport.aborted
    assert "something broke" in str(protocol.lost.result())


async def test_a_batch_of_publishes_is_one_write_answered_by_one_future() -> None:
    publisher = BusPublisher()
    transport = FakeTransport()
    publisher.connection_made(transport)
    batch = publisher.publish_many([("tm0:c:1", b"one"), ("tm0:u:2", b"tw\r\no")])
    sending = asyncio.ensure_future(batch)
    await asyncio.sleep(0)  # let it write
    assert read_all(hiredis.Reader(), transport.written) == [
        [b"PUBLISH", b"tm0:c:1", b"one"],
        [b"PUBLISH", b"tm0:u:2", b"tw\r\no"],
    ]
    assert len(transport.written) == 1
    publisher.data_received(b":1\r\n")
    assert not sending.done()
    publisher.data_received(b":0\r\n")
    await asyncio.wait_for(sending, 1)

    failing = asyncio.ensure_future(publisher.publish_many([("a", b"x"), ("b", b"y")]))
    await asyncio.sleep(0)
    publisher.data_received(b"-ERR out of memory\r\n:1\r\n")
    with pytest.raises(BusLinkError, match="out of memory"):
        await asyncio.wait_for(failing, 1)

    pending = asyncio.ensure_future(publisher.publish_many([("a", b"x")]))
    await asyncio.sleep(0)
    publisher.connection_lost(None)
    with pytest.raises(BusLinkError, match="lost"):
        await asyncio.wait_for(pending, 1)
