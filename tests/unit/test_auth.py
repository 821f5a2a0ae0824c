"""trustmess.auth.PasswordQueue: round robin between clients, bounds, cancellation.

The queue runs real calls on the real bcrypt threads; the calls here wait on an event instead
of hashing, so the order in which the queue starts them is what the tests see.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from trustmess.auth import PasswordQueue
from trustmess.errors import ApiError, ErrorCode


class Gate:
    """A call that blocks its thread until opened, and a log of the calls that ran."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.ran: list[str] = []

    def call(self, name: str) -> str:
        self.opened.wait(10)
        self.ran.append(name)
        return name


async def enqueue(queue: PasswordQueue, gate: Gate, client: str, name: str) -> asyncio.Task[str]:
    task = asyncio.create_task(queue._run(client, gate.call, name))
    await asyncio.sleep(0)  # let it join the queue: the order of joining is the point
    return task


async def test_waiting_checks_are_served_round_robin_by_client() -> None:
    queue, gate = PasswordQueue(queue_max=100, per_client=10, threads=1), Gate()
    tasks = [await enqueue(queue, gate, "flood", "f0")]  # running
    for name in ("f1", "f2", "f3", "f4"):
        tasks.append(await enqueue(queue, gate, "flood", name))
    tasks.append(await enqueue(queue, gate, "other", "o1"))
    tasks.append(await enqueue(queue, gate, "user", "u1"))
    gate.opened.set()
    assert await asyncio.gather(*tasks) == ["f0", "f1", "f2", "f3", "f4", "o1", "u1"]
    # The user's one check waited for one of each other client's, not for the whole flood.
    assert gate.ran == ["f0", "f1", "o1", "u1", "f2", "f3", "f4"]


async def test_a_client_over_its_share_is_429_and_a_full_queue_503() -> None:
    queue, gate = PasswordQueue(queue_max=2, per_client=2, threads=1), Gate()
    tasks = [await enqueue(queue, gate, "a", "a1"), await enqueue(queue, gate, "a", "a2")]
    with pytest.raises(ApiError) as refused:
        await queue._run("a", gate.call, "a3")
    assert (refused.value.status, refused.value.code) == (429, ErrorCode.RATE_LIMITED)
    assert int(refused.value.headers["Retry-After"]) >= 1
    tasks.append(await enqueue(queue, gate, "b", "b1"))  # a2 and b1 wait: the queue is full
    with pytest.raises(ApiError) as busy:
        await queue._run("c", gate.call, "c1")
    assert (busy.value.status, busy.value.code) == (503, ErrorCode.UNAVAILABLE)
    assert int(busy.value.headers["Retry-After"]) >= 1
    gate.opened.set()
    await asyncio.gather(*tasks)
    # Everything released: each client may use its whole share again.
    assert await asyncio.gather(*(queue._run("a", gate.call, f"again{i}") for i in range(2)))


async def test_a_check_whose_request_went_away_is_never_run() -> None:
    queue, gate = PasswordQueue(queue_max=10, per_client=2, threads=1), Gate()
    running = await enqueue(queue, gate, "a", "running")
    abandoned = await enqueue(queue, gate, "a", "abandoned")
    abandoned.cancel()
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    later = await enqueue(queue, gate, "a", "later")  # the abandoned one's share is free
    gate.opened.set()
    assert await asyncio.gather(running, later) == ["running", "later"]
    assert gate.ran == ["running", "later"]
