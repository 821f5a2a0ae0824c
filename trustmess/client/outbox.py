"""Socket commands until their answers: one queue, the refs that match answers to commands, the
window of unanswered commands and the pause after refusals (protocol/README.md §2, §5, §6).

Each write of a command gets a fresh ``ref``, and every ref it was written with stays valid
until it is answered: whichever answer comes first settles it, later ones are ignored. So a
command resent after a ref-less ``rate_limited`` (which may or may not have refused it) or after
a reconnect is settled exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trustmess.client.errors import CommandError, ConnectionLost, TrustMessError
from trustmess.client.models import Json

RETRYABLE_CODES = frozenset({"internal", "unavailable", "rate_limited"})
WINDOW_MAX = 32
PAUSE_MIN_S = 0.5
PAUSE_MAX_S = 8.0


@dataclass(eq=False, slots=True)
class Command:
    """A command until its answer. ``durable`` ones (messages, changes, acks: all idempotent)
    are resent after a reconnect; the others fail with :class:`ConnectionLost`, except joins,
    which the next connection makes anew."""

    frame: dict[str, Any]
    future: asyncio.Future[Json]
    durable: bool
    on_reply: Callable[[Json], object] | None = None
    on_error: Callable[[CommandError], None] | None = None
    refs: list[int] = field(default_factory=list)


class Outbox:
    """Commands waiting to be written, and those written on this connection, unanswered."""

    def __init__(self) -> None:
        self._queue: deque[Command] = deque()
        self._inflight: dict[Command, None] = {}  # an ordered set
        self._refs: dict[int, Command] = {}
        self._ref_counter = itertools.count(1)
        self._wake = asyncio.Event()
        # Additive increase per answer, halved per refusal; the pause doubles while refusals
        # go on, so a client never keeps a server's rate limit busy (and never earns 4008).
        self._window = WINDOW_MAX
        self._pause = 0.0
        self._paused_until = 0.0

    def put(self, command: Command, *, first: bool = False) -> None:
        if first:
            self._queue.appendleft(command)
        else:
            self._queue.append(command)
        self._wake.set()

    def put_first(self, commands: list[Command]) -> None:
        """Queue ``commands`` ahead of everything, in their order."""
        self._queue.extendleft(reversed(commands))
        self._wake.set()

    async def next(self) -> tuple[int, Command]:
        """The next command to write and its new ref, once the window and the pause allow."""
        while True:
            wait = self._paused_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if not self._queue or len(self._inflight) >= self._window:
                self._wake.clear()
                await self._wake.wait()
                continue
            command = self._queue.popleft()
            if command.future.done():
                continue  # answered under an earlier ref meanwhile
            ref = next(self._ref_counter)
            command.refs.append(ref)
            self._refs[ref] = command
            self._inflight[command] = None
            return ref, command

    def _settle(self, ref: Any) -> Command | None:
        command = self._refs.get(ref) if isinstance(ref, int) else None
        if command is None:
            return None
        for old in command.refs:
            self._refs.pop(old, None)
        command.refs.clear()
        self._inflight.pop(command, None)
        self._wake.set()
        return command if not command.future.done() else None

    def on_reply(self, ref: Any, data: Json) -> None:
        command = self._settle(ref)
        if command is None:
            return
        self._window = min(WINDOW_MAX, self._window + 1)
        self._pause = 0.0
        if command.on_reply is not None:
            command.on_reply(data)
        command.future.set_result(data)

    def on_error(self, ref: Any, error: CommandError) -> None:
        command = self._settle(ref)
        if command is None:
            return
        if error.code in RETRYABLE_CODES:
            self.put(command, first=True)
            self._slow_down()
            return
        if command.on_error is not None:
            command.on_error(error)
        command.future.set_exception(error)

    def on_refused_unread(self) -> None:
        """A ``rate_limited`` without ref: frames were refused unparsed, any unanswered command
        may be among them (§2). Resend them all later; their old refs stay valid."""
        refused = list(self._inflight)
        self._inflight.clear()
        self.put_first(refused)
        self._slow_down()

    def _slow_down(self) -> None:
        self._window = max(1, self._window // 2)
        self._pause = min(PAUSE_MAX_S, max(PAUSE_MIN_S, self._pause * 2))
        self._paused_until = time.monotonic() + self._pause
        self._wake.set()

    def connection_lost(self) -> None:
        """Keep durable commands, in their order, for the next connection; end the others."""
        kept: list[Command] = []
        for command in [*self._inflight, *self._queue]:
            if command.future.done():
                continue
            if command.durable:
                command.refs.clear()
                kept.append(command)
            elif command.frame["type"] == "join":
                command.future.cancel()
            else:
                command.future.set_exception(ConnectionLost("the socket closed"))
        self._inflight.clear()
        self._refs.clear()
        self._queue = deque(kept)

    def fail_all(self, error: TrustMessError) -> None:
        for command in [*self._inflight, *self._queue]:
            if not command.future.done():
                command.future.set_exception(error)
        self._inflight.clear()
        self._queue.clear()
        self._refs.clear()
