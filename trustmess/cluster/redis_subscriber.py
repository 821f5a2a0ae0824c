"""The bus's receiving side: one Redis connection in subscribe mode, read as a plain stream
(see redis_link.py for why not redis-py's PubSub)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trustmess.cluster.redis_link import RespLink, command

OnMessage = Callable[[bytes, bytes], None]  # (channel, data)
OnSubscribed = Callable[[bytes], None]  # channel


class BusSubscriber(RespLink):
    """A subscribe-mode connection: ``on_message(channel, data)`` for every message, called
    from ``data_received`` (so in arrival order, with nothing awaited in between)."""

    def __init__(self, on_message: OnMessage, on_subscribed: OnSubscribed) -> None:
        super().__init__()
        self._on_message = on_message
        self._on_subscribed = on_subscribed

    def subscribe(self, *channels: str) -> None:
        if channels:
            self._write(command("SUBSCRIBE", *channels))

    def unsubscribe(self, *channels: str) -> None:
        if channels:
            self._write(command("UNSUBSCRIBE", *channels))

    def ping(self) -> None:
        """In subscribe mode the answer is a ``pong`` push: it only moves ``heard``."""
        self._write(command("PING", "tm-alive"))

    def _push(self, reply: list[Any]) -> bool:
        kind = reply[0] if reply else None
        if kind == b"message" and len(reply) == 3:
            self._on_message(reply[1], reply[2])
        elif kind == b"subscribe" and len(reply) == 3:
            self._on_subscribed(reply[1])
        elif kind not in (b"unsubscribe", b"pong"):
            return False
        return True
