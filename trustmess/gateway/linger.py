"""A lingering close for sockets: after our close frame, read and discard what the peer
still sends until its close frame or its FIN (or a short timeout), and only then close TCP.

Closing a TCP socket that still has unread data, or that data keeps arriving for, makes the
kernel answer with a reset; the peer then loses our close frame or fails its close reply and
sees 1006 instead of our code (4008 for a flood, 1009 for a frame over the limit). aiohttp
closes the transport at once when it initiated the close while a ``receive`` was pending, or
when its reader failed (a frame over the limit), and after 2 s without the peer's reply. In
those cases :class:`LingeringWebSocketResponse` keeps the transport open, and the handler's
:meth:`~LingeringWebSocketResponse.lingered` reads on. When the peer's close frame has been
read (the handshake is complete), aiohttp's plain close stays: nothing more comes.

Relies on aiohttp 3.14's WebSocketResponse internals (``_close_transport``,
``_set_code_close_transport``, ``_close_wait``, ``_reader``, ``_req``);
tests/test_ws_close_codes.py checks the behaviour with real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiohttp import EofStream, WSCloseCode, WSMsgType, web
from aiohttp.http_websocket import WebSocketError

LINGER_S = 2.0


class _Discard(asyncio.Protocol):
    """The transport's protocol once aiohttp's frame parser has failed (a frame over the
    limit: no frame boundary is known any more): drops everything until the peer's FIN."""

    def __init__(self, inner: asyncio.BaseProtocol) -> None:
        self._inner = inner
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool | None:
        return None  # the peer is done too: the transport closes

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)
        self._inner.connection_lost(exc)


class LingeringWebSocketResponse(web.WebSocketResponse):
    """aiohttp's WebSocketResponse that leaves the transport open for :meth:`lingered` when
    the peer's close frame has not been read."""

    _linger: asyncio.Transport | None = None
    _peer_closed: bool | None = None

    def _set_code_close_transport(self, code: WSCloseCode) -> None:
        # With the code of the peer's close frame (handshake complete), or 1006 on a failure
        # or when the peer's close did not come in time.
        self._peer_closed = code != WSCloseCode.ABNORMAL_CLOSURE
        super()._set_code_close_transport(code)

    def _close_transport(self) -> None:
        peer_closed = self._peer_closed
        if peer_closed is None:
            # Called directly: after the peer's close frame (autoclose), or after ours while
            # a receive was pending (then close() made the _close_wait future).
            peer_closed = self._close_wait is None
        request: Any = self._req
        transport = None if request is None else request.transport
        if peer_closed or transport is None or transport.is_closing():
            super()._close_transport()
        else:
            self._linger = transport

    async def lingered(self) -> None:
        """Read and drop the peer's frames until its close frame or FIN, for LINGER_S at
        most, then close the transport (a no-op unless a close left it open)."""
        transport, self._linger = self._linger, None
        if transport is None or transport.is_closing():
            return
        deadline = time.monotonic() + LINGER_S
        try:
            async with asyncio.timeout(LINGER_S):
                while True:
                    msg = await self._reader.read()  # type: ignore[union-attr]
                    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED):
                        return
        except (TimeoutError, EofStream, ConnectionError):
            return
        except WebSocketError:
            # The parser failed (a frame over the limit): no frame boundary is known any
            # more, so drop bytes until the peer's FIN.
            discard = _Discard(transport.get_protocol())
            transport.set_protocol(discard)
            with contextlib.suppress(RuntimeError, AttributeError):
                transport.resume_reading()  # aiohttp may have paused it (flow control)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.shield(discard.done), max(0.0, deadline - time.monotonic())
                )
        finally:
            if not transport.is_closing():
                transport.close()
