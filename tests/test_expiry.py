"""The process-wide token expiry heap (expiry.py): one timer, bounded by the live sockets."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from trustmess.errors import CloseCode
from trustmess.gateway.expiry import COMPACT_MIN, TokenExpiry


class Watched:
    """What TokenExpiry touches of a connection (a real one needs a socket; the heap's
    bookkeeping is what is under test here)."""

    def __init__(self) -> None:
        self.expires_at = float("inf")
        self.closing = False
        self.closed = asyncio.Event()
        self.code: int | None = None

    def close_soon(self, code: int, reason: str) -> None:
        self.closing, self.code = True, code
        self.closed.set()


def watch(expiry: TokenExpiry, conn: Any, at: float) -> None:
    expiry.watch(conn, at)


async def test_rewatching_with_the_same_expiry_adds_nothing() -> None:
    expiry = TokenExpiry()
    conn = Watched()
    later = time.time() + 3600
    for _ in range(100):
        watch(expiry, conn, later)
    assert len(expiry) == 1
    expiry.close()


async def test_dead_and_stale_entries_are_compacted_and_live_ones_still_fire() -> None:
    expiry = TokenExpiry()
    keep = Watched()
    watch(expiry, keep, time.time() + 0.2)
    later = time.time() + 3600
    for n in range(10 * COMPACT_MIN):
        churn = Watched()  # a socket that comes and goes with a long-lived token
        watch(expiry, churn, later + n)
        del churn
        gc.collect(0)
    reauthed = Watched()
    for n in range(5 * COMPACT_MIN):  # re-auths, each with a fresh token
        watch(expiry, reauthed, later + n)
    assert len(expiry) <= 2 * COMPACT_MIN + 1
    async with asyncio.timeout(5):
        await keep.closed.wait()
    assert keep.code == CloseCode.TOKEN_EXPIRED and not reauthed.closing
    expiry.close()
