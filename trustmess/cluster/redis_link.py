"""Plain Redis connections for the bus's hot paths: RESP in and out of an asyncio protocol.

redis-py spends, per pub/sub message, a coroutine round trip, a health check, a timeout context
and a dict, and per published message its command packing and pipeline bookkeeping; under
``--workers 2`` at saturation the two were a third of a worker's event loop (py-spy, issue 20).
:class:`RespLink` is the part the bus's subscriber and publisher share: it connects as the
URL says (redis-py reads the URL, its ``ssl_*`` options included, and builds the TLS context,
so these connections are made exactly as the broker's other one), authenticates, and parses
every complete reply of a chunk in ``data_received`` (hiredis's parser when it is installed,
the ``fast`` extra; else :class:`RespReader`), synchronously.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from redis.asyncio.connection import SSLConnection, parse_url

_HiredisReader: Any
try:
    from hiredis import Reader as _HiredisReader
except ImportError:  # pragma: no cover - the fast extra is installed in CI
    _HiredisReader = None

Link = TypeVar("Link", bound="RespLink")


class BusLinkError(ConnectionError):
    """A bus connection failed, was refused, or broke the protocol."""


class ReplyError(Exception):
    """An error reply (``-ERR ...``) from Redis."""


_NOTHING = object()


class RespReader:
    """An incremental parser of RESP2 replies (the pure-Python stand-in for hiredis's)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    def gets(self) -> Any:
        """The next complete reply, or False when the buffer holds none yet."""
        start = self._pos
        value = self._parse()
        if value is _NOTHING:
            self._pos = start
            return False
        return value

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n", self._pos)
        if end < 0:
            return None
        line = bytes(self._buffer[self._pos : end])
        self._pos = end + 2
        return line

    def _parse(self) -> Any:
        line = self._line()
        if line is None:
            return _NOTHING
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return ReplyError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            if len(self._buffer) < self._pos + size + 2:
                return _NOTHING
            value = bytes(self._buffer[self._pos : self._pos + size])
            self._pos += size + 2
            return value
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None
            items = []
            for _ in range(count):
                item = self._parse()
                if item is _NOTHING:
                    return _NOTHING
                items.append(item)
            return items
        raise BusLinkError(f"not a RESP reply: {line[:40]!r}")


def _reader() -> Any:
    if _HiredisReader is not None:
        return _HiredisReader()
    return RespReader()


def command(*words: bytes | str) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(words)]
    for word in words:
        data = word.encode() if isinstance(word, str) else word
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RespLink(asyncio.Protocol):
    """A Redis connection whose replies are parsed as they arrive.

    A reply that is not a push is the answer to the oldest request still waiting
    (``request``: the futures resolve in order, several replies to one future when asked).
    Subclasses take pushes in ``_push``. ``heard`` is the loop time anything last arrived;
    ``lost`` resolves (with the reason) when the connection is gone.
    """

    def __init__(self) -> None:
        self._reader = _reader()
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.heard = loop.time()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        # (replies still to come, the future they resolve, the first error among them)
        self._waiting: deque[list[Any]] = deque()

    @classmethod
    async def open(cls: type[Link], url: str, timeout_s: float, *args: Any) -> Link:
        """Connect (TLS for ``rediss://``) and authenticate as the URL says; ``args`` go to
        the protocol's constructor."""
        options = parse_url(url)
        options.pop("connection_class", None)
        context = None
        if urlsplit(url).scheme == "rediss":
            context = SSLConnection(**options).ssl_context.get()
        loop = asyncio.get_running_loop()
        made: list[Link] = []

        def protocol_factory() -> Link:
            made.append(cls(*args))
            return made[-1]

        try:
            async with asyncio.timeout(timeout_s):
                _, link = await loop.create_connection(
                    protocol_factory,
                    options.get("host", "localhost"),
                    options.get("port", 6379),
                    ssl=context,
                )
                if options.get("password") is not None:
                    user = options.get("username")
                    await link.request(
                        command("AUTH", *([user] if user else []), options["password"])
                    )
        except BaseException as exc:
            for unfinished in made:  # refused, timed out or cancelled: no transport left open
                unfinished.close()
            if isinstance(exc, TimeoutError):
                raise BusLinkError(f"no answer from redis within {timeout_s:g} s") from None
            if isinstance(exc, OSError):
                raise BusLinkError(str(exc)) from None
            raise
        return link

    def request(self, commands: bytes, replies: int = 1) -> asyncio.Future[None]:
        """Send ``commands`` (one or more, already in RESP); the future resolves when their
        ``replies`` have come, or fails with the first error reply among them."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._write(commands)
        self._waiting.append([replies, future, None])
        return future

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise BusLinkError("the bus connection is closed")
        self._transport.write(data)

    def _push(self, reply: list[Any]) -> bool:
        """A push (pub/sub): handle it and say so; False: it answers a request."""
        return False

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.heard = asyncio.get_running_loop().time()
        reader = self._reader
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                if type(reply) is list and self._push(reply):
                    continue
                self._answer(reply)
        except Exception as exc:  # a broken stream, or a callback's bug: not silently on
            self._fail(exc if isinstance(exc, BusLinkError) else BusLinkError(repr(exc)))

    def _answer(self, reply: Any) -> None:
        if not self._waiting:
            if isinstance(reply, Exception):  # hiredis's ReplyError, or ours
                raise BusLinkError(f"redis refused: {reply}")
            return  # a pong: ``heard`` has moved, which is all it is for
        waiting = self._waiting[0]
        if isinstance(reply, Exception) and waiting[2] is None:
            waiting[2] = BusLinkError(f"redis refused: {reply}")
        waiting[0] -= 1
        if waiting[0] == 0:
            self._waiting.popleft()
            future, error = waiting[1], waiting[2]
            if not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    def _fail(self, error: BaseException) -> None:
        if not self.lost.done():
            self.lost.set_result(error)
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        error = exc or BusLinkError("redis closed the connection")
        if not self.lost.done():
            self.lost.set_result(error)
        while self._waiting:
            future = self._waiting.popleft()[1]
            if not future.done():
                future.set_exception(BusLinkError(f"redis connection lost: {error}"))
