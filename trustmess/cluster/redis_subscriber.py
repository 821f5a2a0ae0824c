"""The bus's receiving side: one Redis connection in subscribe mode, read as a plain stream.

redis-py's ``PubSub.get_message`` costs, per message, a coroutine round trip, a health check,
a timeout context and a dict; under ``--workers 2`` at saturation that was a quarter of a
worker's event loop (bench/RESULTS.md, issue 20). Here the connection is an asyncio protocol:
``data_received`` parses every complete reply in the chunk it got (hiredis's parser when it
is installed, the ``fast`` extra; else :class:`RespReader`) and hands each message to the
broker synchronously. Publishing and the other commands stay on redis-py.

Only what subscribe mode needs: AUTH, SUBSCRIBE, UNSUBSCRIBE and PING out; ``message``,
``subscribe``, ``unsubscribe`` and ``pong`` pushes (RESP2 arrays) and error replies in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

from redis.asyncio.connection import SSLConnection, parse_url

_HiredisReader: Any
try:
    from hiredis import Reader as _HiredisReader
except ImportError:  # pragma: no cover - the fast extra is installed in CI
    _HiredisReader = None

OnMessage = Callable[[bytes, bytes], None]  # (channel, data)
OnSubscribed = Callable[[bytes], None]  # channel


class SubscriberError(ConnectionError):
    """The subscriber connection failed, was refused, or broke the protocol."""


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
        raise SubscriberError(f"not a RESP reply: {line[:40]!r}")


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


class BusSubscriber(asyncio.Protocol):
    """A subscribe-mode connection: ``on_message(channel, data)`` for every message.

    ``heard`` is the loop time anything last arrived (the broker's link check PINGs when it
    has been quiet); ``lost`` resolves (with the reason) when the connection is gone.
    """

    def __init__(self, on_message: OnMessage, on_subscribed: OnSubscribed) -> None:
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        self._reader = _reader()
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.heard = loop.time()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self._auth: asyncio.Future[None] | None = None

    @classmethod
    async def connect(
        cls, url: str, on_message: OnMessage, on_subscribed: OnSubscribed, timeout_s: float
    ) -> BusSubscriber:
        """Connect (TLS for ``rediss://``) and authenticate as the URL says.

        redis-py reads the URL (its ``ssl_*`` query options included) and builds the TLS
        context, so this connection is made exactly as the broker's other one is.
        """
        options = parse_url(url)
        options.pop("connection_class", None)
        context = None
        if urlsplit(url).scheme == "rediss":
            context = SSLConnection(**options).ssl_context.get()
        loop = asyncio.get_running_loop()
        made: list[BusSubscriber] = []

        def protocol_factory() -> BusSubscriber:
            made.append(cls(on_message, on_subscribed))
            return made[-1]

        try:
            async with asyncio.timeout(timeout_s):
                _, protocol = await loop.create_connection(
                    protocol_factory,
                    options.get("host", "localhost"),
                    options.get("port", 6379),
                    ssl=context,
                )
                if options.get("password") is not None:
                    await protocol._authenticate(options.get("username"), options["password"])
        except BaseException as exc:
            for unfinished in made:  # refused, timed out or cancelled: no transport left open
                unfinished.close()
            if isinstance(exc, TimeoutError):
                raise SubscriberError(f"no answer from redis within {timeout_s:g} s") from None
            if isinstance(exc, OSError):
                raise SubscriberError(str(exc)) from None
            raise
        return protocol

    async def _authenticate(self, user: str | None, password: str) -> None:
        self._auth = asyncio.get_running_loop().create_future()
        self._write(command("AUTH", *([user] if user else []), password))
        try:
            await asyncio.shield(self._auth)
        finally:
            self._auth = None

    def subscribe(self, *channels: str) -> None:
        if channels:
            self._write(command("SUBSCRIBE", *channels))

    def unsubscribe(self, *channels: str) -> None:
        if channels:
            self._write(command("UNSUBSCRIBE", *channels))

    def ping(self) -> None:
        self._write(command("PING", "tm-alive"))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise SubscriberError("the subscriber connection is closed")
        self._transport.write(data)

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
                self._reply(reply)
        except Exception as exc:  # a broken stream, or a callback's bug: not silently on
            self._fail(exc if isinstance(exc, SubscriberError) else SubscriberError(repr(exc)))

    def _reply(self, reply: Any) -> None:
        if type(reply) is list and len(reply) == 3:
            kind = reply[0]
            if kind == b"message":
                self._on_message(reply[1], reply[2])
            elif kind == b"subscribe":
                self._on_subscribed(reply[1])
            return  # unsubscribe confirmations
        if isinstance(reply, Exception):  # hiredis's ReplyError, or ours
            error = SubscriberError(f"redis refused: {reply}")
            if self._auth is not None and not self._auth.done():
                self._auth.set_exception(error)
            else:
                self._fail(error)
            return
        if self._auth is not None and not self._auth.done():
            self._auth.set_result(None)  # +OK
        # Anything else (a pong) only proves the link is alive: ``heard`` has moved.

    def _fail(self, error: BaseException) -> None:
        if not self.lost.done():
            self.lost.set_result(error)
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        error = exc or SubscriberError("redis closed the connection")
        if not self.lost.done():
            self.lost.set_result(error)
        if self._auth is not None and not self._auth.done():
            self._auth.set_exception(SubscriberError(str(error)))
