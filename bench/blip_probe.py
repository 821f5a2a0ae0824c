"""The client side of ``redis_blip.py``: a sender socket, a receiver socket, or /readyz polls.

    python bench/blip_probe.py sender|receiver|ready '<JSON config>'

``redis_blip.py`` runs one process per role, so neither stopping and starting Redis (in the
parent) nor the receiver's burst of catch-up events after the outage can stall the loop that
times the sender's replies. Each process connects, prints ``go <CLOCK_MONOTONIC ns>``, works
until a line arrives on its stdin, finishes, and writes what it saw to ``config["out"]`` as
JSON. Every time is CLOCK_MONOTONIC nanoseconds, system-wide on Linux, so the parent can set
them against the moments it stopped and started Redis.

* ``sender``: one socket on ``url`` joined to ``conversation_id``; sends ``message`` commands
  at ``rate``/s with fixed spacing (open loop: late ones go at once, none is skipped;
  pipelined by ``ref``) until the ``stop`` line, then waits (up to ``drain_s``) for every reply
  and for its own ``message`` events up to the last replied seq.
* ``receiver``: one socket on ``url`` joined to ``conversation_id``; records every ``message``
  event until the line ``stop <seq>``, then waits (up to ``drain_s``) to have received ``seq``.
* ``ready``: ``GET /readyz`` on each of ``urls`` every 20 ms until ``stop``; records each change
  of status.

Every role also records its own event loop's lateness (a 5 ms ticker), so a stall of the
client is not mistaken for one of the server.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from trustmess.loadtest.cli import run_async
from trustmess.loadtest.runner import ws_url
from trustmess.loadtest.wsconn import Data, FrameSocket

SECOND = 1_000_000_000
READY_POLL_S = 0.02
READY_TIMEOUT_S = 1.0
TICK_S = 0.005
LATE_NS = 20_000_000  # a tick this late is kept as a client stall


class Side:
    """One joined socket and what it received: replies and ``message`` events."""

    def __init__(self) -> None:
        self.sock: FrameSocket | None = None
        self.hello: asyncio.Future[None] | None = None
        self.joined: asyncio.Future[int] | None = None
        # (received ns, ref, seq, id) of each reply; (received ns, sent ns, seq, id) of events
        self.replies: list[tuple[int, int, int, int]] = []
        self.events: list[tuple[int, int, int, int]] = []
        self.errors: list[tuple[int, Any]] = []
        self.other: dict[str, int] = {}
        self.closed_at: int | None = None
        self.asked_to_close = False

    async def open(self, url: str, token: str, conversation_id: int, first_frame: bool) -> None:
        """Connect (header auth, or the ``auth`` frame), wait for ``hello``, join."""
        loop = asyncio.get_running_loop()
        self.hello, self.joined = loop.create_future(), loop.create_future()
        headers = {} if first_frame else {"Authorization": f"Bearer {token}"}
        self.sock = await FrameSocket.connect(ws_url(url), headers, self.on_text)
        if first_frame:
            self.sock.send_text(orjson.dumps({"type": "auth", "ref": "a", "token": token}))
        async with asyncio.timeout(30):
            await self.hello
            join = {"type": "join", "ref": "j", "conversation_id": conversation_id}
            self.sock.send_text(orjson.dumps(join))
            await self.joined

    def on_text(self, data: Data) -> None:
        now = time.monotonic_ns()
        frame = orjson.loads(data)
        kind = frame["type"]
        if kind == "message":
            body: str = frame["body"]
            sent = int(body[2 : body.index(" ")]) if body.startswith("t=") else 0
            self.events.append((now, sent, frame["seq"], frame["id"]))
        elif kind == "reply" and isinstance(frame.get("ref"), int):
            answer = frame["data"]
            self.replies.append((now, frame["ref"], answer["seq"], answer["id"]))
        elif kind == "reply" and frame.get("ref") == "j":
            assert self.joined is not None
            self.joined.set_result(int(frame["data"]["last_seq"]))
        elif kind == "hello":
            assert self.hello is not None
            self.hello.set_result(None)
        elif kind == "error":
            self.errors.append((now, {k: frame.get(k) for k in ("ref", "code", "message")}))
            if frame.get("ref") == "j" and self.joined is not None and not self.joined.done():
                self.joined.set_exception(RuntimeError(f"join refused: {frame}"))
        else:
            self.other[kind] = self.other.get(kind, 0) + 1

    async def watch(self) -> None:
        assert self.sock is not None
        await self.sock.closed
        self.closed_at = time.monotonic_ns()

    async def close(self) -> None:
        self.asked_to_close = self.closed_at is None
        if self.sock is not None:
            await self.sock.close()

    def last_seq(self) -> int:
        return self.events[-1][2] if self.events else 0

    def report(self) -> dict[str, Any]:
        sock = self.sock
        return {
            "replies": self.replies,
            "events": self.events,
            "errors": self.errors,
            "other": self.other,
            "closed_at": self.closed_at,
            "close_code": None if sock is None else sock.close_code,
            "closed_by_server": self.closed_at is not None and not self.asked_to_close,
        }


class Ticker:
    """This process's own event-loop lateness, sampled every TICK_S."""

    def __init__(self) -> None:
        self.worst_ns = 0
        self.stalls: list[tuple[int, int]] = []  # (due ns, lateness ns) of ticks > LATE_NS late
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            due = time.monotonic_ns() + int(TICK_S * SECOND)
            await asyncio.sleep(TICK_S)
            late = time.monotonic_ns() - due
            self.worst_ns = max(self.worst_ns, late)
            if late > LATE_NS:
                self.stalls.append((due, late))

    def report(self) -> dict[str, Any]:
        self._task.cancel()
        return {"client_worst_lateness_ns": self.worst_ns, "client_stalls": self.stalls}


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def go() -> None:
    print(f"go {time.monotonic_ns()}", flush=True)


async def wait_until(done: Any, wait_s: float) -> None:
    """Poll ``done()`` every 10 ms for at most ``wait_s`` (it depends on several counters and
    on the socket closing; a poll is simpler than an event for each)."""
    deadline = time.monotonic() + wait_s
    while not done() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def sender(config: dict[str, Any]) -> dict[str, Any]:
    side, cid = Side(), int(config["conversation_id"])
    await side.open(config["url"], config["token"], cid, bool(config["first_frame_auth"]))
    watcher = asyncio.create_task(side.watch())
    stdin = await stdin_lines()
    ticker = Ticker()
    stop = asyncio.create_task(stdin.readline())
    assert side.sock is not None
    sock, gap = side.sock, SECOND / float(config["rate"])
    sent: list[int] = []  # send ns of ref i + 1
    next_at = float(time.monotonic_ns())
    go()
    while not stop.done() and side.closed_at is None:
        now = time.monotonic_ns()
        while next_at <= now:
            ref = len(sent) + 1
            sent.append(now)
            frame = {
                "type": "message",
                "ref": ref,
                "conversation_id": cid,
                "client_msg_id": f"b{ref}",
                "body": f"t={now} blip",
            }
            sock.send_text(orjson.dumps(frame))
            next_at += gap
        delay = (next_at - time.monotonic_ns()) / SECOND
        if delay > 0:
            await asyncio.sleep(delay)

    def drained() -> bool:
        if side.closed_at is not None:
            return True
        last = max((seq for _, _, seq, _ in side.replies), default=0)
        return len(side.replies) + len(side.errors) >= len(sent) and side.last_seq() >= last

    await wait_until(drained, float(config["drain_s"]))
    report = ticker.report()
    await side.close()
    await watcher
    return {"sent": sent, **side.report(), **report}


async def receiver(config: dict[str, Any]) -> dict[str, Any]:
    side = Side()
    cid = int(config["conversation_id"])
    await side.open(config["url"], config["token"], cid, bool(config["first_frame_auth"]))
    watcher = asyncio.create_task(side.watch())
    stdin = await stdin_lines()
    ticker = Ticker()
    go()
    line = await stdin.readline()
    target = int(line.split()[1]) if len(line.split()) > 1 else 0
    await wait_until(
        lambda: side.closed_at is not None or side.last_seq() >= target, float(config["drain_s"])
    )
    report = ticker.report()
    await side.close()
    await watcher
    return {**side.report(), **report}


async def ready(config: dict[str, Any]) -> dict[str, Any]:
    stdin = await stdin_lines()
    ticker = Ticker()
    stop = asyncio.Event()
    transitions: list[list[tuple[int, int]]] = [[] for _ in config["urls"]]
    polls = [
        asyncio.create_task(poll_ready(url, found, stop))
        for url, found in zip(config["urls"], transitions, strict=True)
    ]
    go()
    await stdin.readline()
    stop.set()
    await asyncio.gather(*polls)
    return {"ready": transitions, **ticker.report()}


async def poll_ready(url: str, transitions: list[tuple[int, int]], stop: asyncio.Event) -> None:
    """Record (monotonic ns at which the answer came, HTTP status) whenever the status changes;
    0 stands for no answer within READY_TIMEOUT_S."""
    timeout = aiohttp.ClientTimeout(total=READY_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        last = -1
        while not stop.is_set():
            try:
                async with session.get(url.rstrip("/") + "/readyz") as resp:
                    status = resp.status
                    await resp.read()
            except (TimeoutError, aiohttp.ClientError):
                status = 0
            if status != last:
                transitions.append((time.monotonic_ns(), status))
                last = status
            await asyncio.sleep(READY_POLL_S)


ROLES = {"sender": sender, "receiver": receiver, "ready": ready}


def main() -> int:
    role, config = sys.argv[1], json.loads(sys.argv[2])
    result = run_async(ROLES[role](config))
    Path(config["out"]).write_bytes(orjson.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
