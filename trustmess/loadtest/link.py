"""The control channel between the parent and a worker: small tuples, in order, both ways.

In-process (``--procs 1`` and the tests) it is a pair of asyncio queues; across processes a pair
of one-way pipes read through the event loop, so no thread waits on them.
"""

from __future__ import annotations

import asyncio
import os
from multiprocessing.connection import Connection
from typing import Any, Protocol

Message = tuple[str, Any]


class Link(Protocol):
    def send(self, message: Message) -> None: ...

    async def recv(self) -> Message: ...


class QueueLink:
    """One end of an in-process link."""

    def __init__(self, inbox: asyncio.Queue[Message], outbox: asyncio.Queue[Message]) -> None:
        self._inbox = inbox
        self._outbox = outbox

    def send(self, message: Message) -> None:
        self._outbox.put_nowait(message)

    async def recv(self) -> Message:
        return await self._inbox.get()


def queue_pair() -> tuple[QueueLink, QueueLink]:
    """Two connected ends: (parent's, worker's)."""
    down: asyncio.Queue[Message] = asyncio.Queue()
    up: asyncio.Queue[Message] = asyncio.Queue()
    return QueueLink(up, down), QueueLink(down, up)


class PipeLink:
    """One end of a cross-process link: ``reader`` from the other side, ``writer`` to it."""

    def __init__(self, reader: Connection, writer: Connection) -> None:
        self._reader = reader
        self._writer = writer

    def send(self, message: Message) -> None:
        self._writer.send(message)

    async def recv(self) -> Message:
        """The next message; EOFError when the other process is gone."""
        if self._reader.poll():
            return self._reader.recv()  # type: ignore[no-any-return]
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()
        fd = self._reader.fileno()

        def wake() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await readable
        finally:
            loop.remove_reader(fd)
            # uvloop leaves the descriptor non-blocking; a large message arrives in parts.
            os.set_blocking(fd, True)
        return self._reader.recv()  # type: ignore[no-any-return]

    def close(self) -> None:
        self._reader.close()
        self._writer.close()
