"""``Inbox``: a client's events collected in the background, for tests to wait on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from trustmess.client import Client, Event

E = TypeVar("E")


class Inbox:
    """Collects a client's events in the background, for tests to wait on."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.events: list[Event] = []
        self.changed = asyncio.Event()
        self.error: BaseException | None = None
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for event in self.client.events():
                self.events.append(event)
                self.changed.set()
        except Exception as exc:
            self.error = exc
            self.changed.set()

    async def next(self, kind: type[E], where: Callable[[E], bool] = lambda e: True) -> E:
        """The first collected event of ``kind`` matching ``where`` (waiting for it)."""
        async with asyncio.timeout(10):
            while True:
                for event in self.events:
                    if isinstance(event, kind) and where(event):
                        return event
                self.changed.clear()
                await self.changed.wait()

    def of(self, kind: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, kind)]
