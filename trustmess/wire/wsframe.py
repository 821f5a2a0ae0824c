"""WebSocket framing of server frames (RFC 6455), for writing straight to the transport.

Server-to-client frames are unmasked, so a frame is a 2-10 byte header and the payload. A
fan-out hands the same payload object to every recipient, so the last one framed is
remembered: 1,000 recipients cost one concatenation, not 1,000. No I/O here.
"""

from __future__ import annotations

import struct

_SHORT_HEADERS = tuple(bytes((0x81, length)) for length in range(126))
# The last payload framed and its frame: a fan-out hands the same bytes to every recipient.
_last_framed: list[bytes] = [b"", b"\x81\x00"]


def text_frame(payload: bytes) -> bytes:
    """``payload`` as one final, unmasked text frame (server to client)."""
    if payload is _last_framed[0]:
        return _last_framed[1]
    framed = text_frame_header(len(payload)) + payload
    _last_framed[0], _last_framed[1] = payload, framed
    return framed


def text_frame_header(length: int) -> bytes:
    """RFC 6455 header of a final, unmasked text frame (server to client)."""
    if length < 126:
        return _SHORT_HEADERS[length]
    if length < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


def control_frame(opcode: int, data: bytes) -> bytes:
    """A ping (0x9) or pong (0xA) frame; ``data`` is at most 125 bytes."""
    return bytes((0x80 | opcode, len(data))) + data
