"""trustmess.gateway.expiry: one timer closes connections whose access token expired (4002)."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest

from trustmess.errors import CloseCode
from trustmess.gateway.expiry import COMPACT_MIN, TokenExpiry

WAIT_S = 2.0
EXPIRED = (CloseCode.TOKEN_EXPIRED, "access token expired")


class FakeConnection:
    """What TokenExpiry uses of a Connection: its expiry, whether it is closing, close_soon."""

    def __init__(self) -> None:
        self.expires_at = float("inf")
        self.closing = False
        self.closes: list[tuple[int, str]] = []
        self.closed = asyncio.Event()

    def close_soon(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))
        self.closing = True
        self.closed.set()


@pytest.fixture
async def expiry() -> AsyncIterator[TokenExpiry]:
    watcher = TokenExpiry()
    yield watcher
    watcher.close()


@pytest.fixture
async def timers(monkeypatch: pytest.MonkeyPatch) -> list[asyncio.TimerHandle]:
    """Every timer armed on the running loop during the test."""
    handles: list[asyncio.TimerHandle] = []
    loop = asyncio.get_running_loop()
    call_later = loop.call_later

    def recording_call_later(delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        handle = call_later(delay, callback, *args)
        handles.append(handle)
        return handle

    monkeypatch.setattr(loop, "call_later", recording_call_later)
    return handles


async def closed(conn: FakeConnection) -> None:
    await asyncio.wait_for(conn.closed.wait(), WAIT_S)


def past() -> float:
    return time.time() - 1


def future() -> float:
    return time.time() + 3600


async def test_an_expired_token_closes_its_connection_with_4002(expiry: TokenExpiry) -> None:
    conn = FakeConnection()
    expiry.watch(conn, past())
    await closed(conn)
    assert conn.closes == [EXPIRED]
    assert len(expiry) == 0


async def test_a_token_expiring_soon_closes_when_it_expires(expiry: TokenExpiry) -> None:
    conn = FakeConnection()
    expires_at = time.time() + 0.05
    expiry.watch(conn, expires_at)
    await closed(conn)
    assert time.time() >= expires_at


async def test_only_expired_connections_are_closed(expiry: TokenExpiry) -> None:
    later, sooner = FakeConnection(), FakeConnection()
    expiry.watch(later, future())
    expiry.watch(sooner, past())  # earlier than the armed one: the timer is re-armed
    await closed(sooner)
    assert later.closes == []
    assert len(expiry) == 1


async def test_a_reauth_with_a_later_token_keeps_the_connection(expiry: TokenExpiry) -> None:
    renewed, witness = FakeConnection(), FakeConnection()
    old = past()
    expiry.watch(renewed, old)
    expiry.watch(renewed, future())  # re-auth before the timer ran
    expiry.watch(witness, old - 1)
    # One firing pops every expired entry, the renewed one's stale entry among them.
    await closed(witness)
    assert renewed.closes == []
    assert renewed.expires_at > time.time()


async def test_watching_the_same_expiry_again_adds_nothing(expiry: TokenExpiry) -> None:
    conn = FakeConnection()
    expires_at = future()
    expiry.watch(conn, expires_at)
    expiry.watch(conn, expires_at)
    assert len(expiry) == 1


async def test_connections_are_not_kept_alive(expiry: TokenExpiry) -> None:
    conn = FakeConnection()
    expiry.watch(conn, future())
    ref = weakref.ref(conn)
    del conn
    gc.collect()
    assert ref() is None


async def test_a_collected_connection_is_skipped_when_its_token_expires(
    expiry: TokenExpiry,
) -> None:
    gone, witness = FakeConnection(), FakeConnection()
    expiry.watch(gone, past())
    expiry.watch(witness, past())
    del gone
    gc.collect()
    await closed(witness)
    assert len(expiry) == 0


async def test_reauth_spam_does_not_grow_the_heap(expiry: TokenExpiry) -> None:
    conn = FakeConnection()
    start = future()
    for step in range(5 * COMPACT_MIN):
        expiry.watch(conn, start + step)
    assert len(expiry) <= COMPACT_MIN + 1


async def test_socket_churn_does_not_grow_the_heap(expiry: TokenExpiry) -> None:
    start = future()
    closed_conns = []  # closed, yet still referenced elsewhere (a handler not finished yet)
    for step in range(5 * COMPACT_MIN):
        conn = FakeConnection()
        expiry.watch(conn, start + step)
        conn.closing = True
        closed_conns.append(conn)
    assert len(expiry) <= COMPACT_MIN + 1


async def test_compaction_keeps_every_live_entry(expiry: TokenExpiry) -> None:
    conns = [FakeConnection() for _ in range(COMPACT_MIN + 1)]
    start = future()
    for step, conn in enumerate(conns):
        expiry.watch(conn, start + step)  # the last one triggers a compaction
    assert len(expiry) == COMPACT_MIN + 1


async def test_the_timer_is_re_armed_after_a_compaction(expiry: TokenExpiry) -> None:
    churn, due = FakeConnection(), FakeConnection()
    start = future()
    for step in range(COMPACT_MIN):
        expiry.watch(churn, start + step)
    expiry.watch(due, past())  # one entry too many: compacts, then must arm for this one
    await closed(due)
    assert churn.closes == []
    assert len(expiry) == 1


async def test_one_timer_for_all_connections(
    expiry: TokenExpiry, timers: list[asyncio.TimerHandle]
) -> None:
    now = time.time()
    conns = [FakeConnection() for _ in range(100)]
    for number, conn in enumerate(conns):
        # Alternately later and earlier than everything so far: the worst case for re-arming.
        expiry.watch(conn, now + 3600 + (number if number % 2 else -number))
    assert len([handle for handle in timers if not handle.cancelled()]) == 1


async def test_close_cancels_the_timer(timers: list[asyncio.TimerHandle]) -> None:
    watcher = TokenExpiry()
    watcher.watch(FakeConnection(), future())
    watcher.close()
    assert timers
    assert all(handle.cancelled() for handle in timers)
