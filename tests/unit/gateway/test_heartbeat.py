"""trustmess.gateway.heartbeat: one sweep pings silent connections, then drops dead ones."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from trustmess.gateway.heartbeat import DROP_AFTER, PING_AFTER, Heartbeat

WAIT_S = 2.0


class FakeConnection:
    """What the heartbeat uses of a Connection."""

    def __init__(self, registry: set[FakeConnection] | None = None) -> None:
        self.heard = False
        self.busy = False
        self.closing = False
        self.silent_sweeps = 0
        self.pings = 0
        self.drops: list[str] = []
        self.registry = registry
        self.pinged = asyncio.Event()

    def ping(self) -> None:
        self.pings += 1
        self.pinged.set()

    def drop(self, reason: str) -> None:
        self.drops.append(reason)
        self.closing = True
        if self.registry is not None:
            self.registry.discard(self)  # as the endpoint's cleanup would


def sweeps(heartbeat: Heartbeat, count: int) -> None:
    for _ in range(count):
        heartbeat.sweep()


def test_the_sweep_runs_twice_per_heartbeat() -> None:
    assert Heartbeat([], 30.0).interval_s == 15.0


def test_a_silent_connection_is_pinged_then_dropped() -> None:
    conn = FakeConnection()
    heartbeat = Heartbeat([conn], 30.0)
    sweeps(heartbeat, PING_AFTER - 1)
    assert (conn.pings, conn.drops) == (0, [])
    sweeps(heartbeat, 1)
    assert (conn.pings, conn.drops) == (1, [])
    sweeps(heartbeat, DROP_AFTER - PING_AFTER)
    assert (conn.pings, conn.drops) == (1, ["no answer to ping"])
    sweeps(heartbeat, 3)  # dropped once, pinged once
    assert (conn.pings, len(conn.drops)) == (1, 1)
    assert (heartbeat.pings, heartbeat.dropped) == (1, 1)


def test_a_connection_heard_between_sweeps_is_left_alone() -> None:
    conn = FakeConnection()
    heartbeat = Heartbeat([conn], 30.0)
    for _ in range(10):
        conn.heard = True  # the reader loop got a frame
        heartbeat.sweep()
    assert (conn.pings, conn.drops) == (0, [])
    assert conn.heard is False  # each sweep starts a new listening period


def test_an_answered_ping_starts_the_count_again() -> None:
    conn = FakeConnection()
    heartbeat = Heartbeat([conn], 30.0)
    sweeps(heartbeat, PING_AFTER)
    conn.heard = True  # the pong
    sweeps(heartbeat, 1 + PING_AFTER)
    assert (conn.pings, conn.drops) == (2, [])


def test_a_busy_connection_is_not_silent() -> None:
    conn = FakeConnection()
    conn.busy = True  # its reader awaits a command; pongs wait unread
    heartbeat = Heartbeat([conn], 30.0)
    sweeps(heartbeat, 2 * DROP_AFTER)
    assert (conn.pings, conn.drops) == (0, [])


def test_a_closing_connection_is_not_dropped() -> None:
    conn = FakeConnection()
    heartbeat = Heartbeat([conn], 30.0)
    sweeps(heartbeat, PING_AFTER)
    conn.closing = True
    sweeps(heartbeat, DROP_AFTER)
    assert conn.drops == []


def test_connections_may_leave_the_registry_during_a_sweep() -> None:
    registry: set[FakeConnection] = set()
    registry.update(FakeConnection(registry) for _ in range(5))
    conns = list(registry)
    heartbeat = Heartbeat(registry, 30.0)
    sweeps(heartbeat, DROP_AFTER)
    assert registry == set()
    assert all(conn.drops for conn in conns)


class FailingOnce:
    """A registry whose first iteration fails."""

    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn
        self.failed = False

    def __iter__(self) -> Iterator[FakeConnection]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("registry broken")
        return iter([self.conn])


async def test_the_timer_keeps_sweeping_after_a_failed_sweep(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = FakeConnection()
    heartbeat = Heartbeat(FailingOnce(conn), 0.01)
    with caplog.at_level(logging.ERROR, logger="trustmess.gateway.heartbeat"):
        heartbeat.start()
        try:
            await asyncio.wait_for(conn.pinged.wait(), WAIT_S)
        finally:
            await heartbeat.close()
    assert "heartbeat sweep failed" in caplog.text
    assert conn.pings == 1
