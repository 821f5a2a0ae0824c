"""A client WebSocket on websockets' Sans-I/O ``ClientProtocol``, pumped by an asyncio Protocol.

Why not ``websockets.asyncio.client.connect``: its ``recv()``/``send()`` cost a future, a task
wake-up, a lock and a write system call per frame; the tester spent ~12 µs of CPU per frame, as
much as the server under test. Here websockets does the handshake, masking, pings (answered by
the protocol object itself), control frames and the closing handshake, while complete text
frames are cut out of each TCP read here and handed synchronously to a callback; whatever the
callback sends meanwhile leaves in one write at the end of the read.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

Data = bytes | bytearray | memoryview
OPEN_TIMEOUT_S = 60.0
MAX_FRAME_BYTES = 16 << 20
TEXT_FIN = 0x81


class FrameSocket(asyncio.Protocol):
    """One connection; ``on_text`` gets each text message's bytes, in order, synchronously."""

    def __init__(self, url: str, headers: dict[str, str], on_text: Callable[[Data], None]):
        self.protocol = ClientProtocol(parse_uri(url), max_size=MAX_FRAME_BYTES)
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._in_read = False
        self._framing = False
        self._rest = b""
        self._partial: list[Data] = []
        request = self.protocol.connect()
        for name, value in headers.items():
            request.headers[name] = value
        self.protocol.send_request(request)

    @classmethod
    async def connect(
        cls, url: str, headers: dict[str, str], on_text: Callable[[Data], None]
    ) -> FrameSocket:
        """Open the TCP connection and complete the upgrade (raises on refusal)."""
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            _, sock = await loop.create_connection(
                lambda: cls(url, headers, on_text),
                parts.hostname or "localhost",
                parts.port or (443 if secure else 80),
                ssl=ssl.create_default_context() if secure else None,
            )
            await sock.opened
        return sock

    @property
    def open(self) -> bool:
        return self.protocol.state is State.OPEN

    @property
    def close_code(self) -> int | None:
        return self.protocol.close_code

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.flush()

    def data_received(self, data: bytes) -> None:
        self._in_read = True
        try:
            if self._framing:
                self._split_frames(self._rest + data if self._rest else data)
            elif self.protocol.state is State.CONNECTING:
                self._handshake(data)
            else:
                self._to_protocol(data)
        finally:
            self._in_read = False
            self.flush()

    def _handshake(self, data: bytes) -> None:
        """Feed websockets exactly the HTTP response; frames after it are split here."""
        self._rest += data
        end = self._rest.find(b"\r\n\r\n")
        if end < 0:
            return
        response, rest = self._rest[: end + 4], self._rest[end + 4 :]
        self._rest = b""
        self._to_protocol(response)
        if self.protocol.state is State.OPEN:
            self._framing = True
            self._split_frames(rest)
        elif rest:
            self._to_protocol(rest)  # a refusal's body: websockets reads it

    def _split_frames(self, buf: bytes) -> None:
        """Hand complete unfragmented text frames to ``on_text``; give websockets the rest.

        websockets' own frame parser costs ~4.6 µs a frame here, more than everything else the
        tester does per frame. A server frame is unmasked, so its header is 2, 4 or 10 bytes.
        Control frames, fragments and anything odd (RSV bits, a mask, oversize) go to the
        protocol object whole, so its parser only ever sees frame boundaries.
        """
        pos, end, on_text = 0, len(buf), self.on_text
        while end - pos >= 2:
            first, length = buf[pos], buf[pos + 1]
            head = 2
            if length == 126:
                if end - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4]), 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10]), 10
            if length > MAX_FRAME_BYTES:  # also a set mask bit (length ≥ 128 with head 2)
                self._framing = False  # let websockets fail the connection properly
                self._to_protocol(buf[pos:])
                return
            stop = pos + head + length
            if stop > end:
                break
            if first == TEXT_FIN and self.protocol.state is State.OPEN:
                on_text(buf[pos + head : stop])
            else:
                self._to_protocol(buf[pos:stop])
                if self.protocol.state is not State.OPEN:
                    self._framing = False
                    self._to_protocol(buf[stop:])
                    return
            pos = stop
        self._rest = buf[pos:] if pos < end else b""

    def _to_protocol(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Frame):
                self._frame(event)
            elif isinstance(event, Response) and not self.opened.done():
                if protocol.handshake_exc is not None:
                    self.opened.set_exception(protocol.handshake_exc)
                else:
                    self.opened.set_result(None)

    def _frame(self, frame: Frame) -> None:
        # Pings, pongs and close frames are handled inside the protocol object.
        if frame.opcode is Opcode.TEXT:
            if frame.fin:
                self.on_text(frame.data)
            else:
                self._partial = [frame.data]
        elif frame.opcode is Opcode.CONT and self._partial:
            self._partial.append(frame.data)
            if frame.fin:
                data, self._partial = b"".join(self._partial), []
                self.on_text(data)

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self.protocol.events_received()
        self.flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.protocol.state is not State.CLOSED:
            self.protocol.receive_eof()
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("connection closed during upgrade"))
        if not self.closed.done():
            self.closed.set_result(None)

    def send_text(self, payload: bytes) -> bool:
        """Queue one text frame (written at the end of the current read, or now); False if the
        connection is no longer open."""
        try:
            self.protocol.send_text(payload)
        except InvalidState:
            return False
        if not self._in_read:
            self.flush()
        return True

    def flush(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        writes = self.protocol.data_to_send()
        if not writes:
            return
        if writes[-1] == b"":  # the protocol's end-of-stream signal
            writes.pop()
            transport.writelines(writes)
            if transport.can_write_eof():
                transport.write_eof()
            return
        transport.writelines(writes)

    def abort(self) -> None:
        """Drop the connection at once (a set-up that failed half-way)."""
        if self.transport is not None:
            self.transport.abort()

    async def close(self, wait_s: float = 5.0) -> None:
        """Closing handshake (1000), then wait for the server to drop the TCP connection."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(1000)
            self.flush()
        try:
            async with asyncio.timeout(wait_s):
                await asyncio.shield(self.closed)
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()
