"""Lookups that arrive together share one database round trip.

A node that takes over 2,000 sockets at once (another node restarted) gets 2,000 logins and
10,000 joins within a second; one statement each is what limited their catch-up
(bench/RESULTS.md, "Reconnect storm"). Requests made while earlier batches are in flight wait
and go together in the next one; an idle node still answers a lone request in one round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import asyncpg

from trustmess.store.history import DbConnection

K = TypeVar("K")
V = TypeVar("V")

# The statement for a batch: one result per key, in the keys' order.
Fetch = Callable[[DbConnection, Sequence[K]], Awaitable[Sequence[V]]]


class BatchedLookup(Generic[K, V]):
    """``await lookup.get(key)``: keys asked for together are read by one ``fetch`` call.

    At most ``concurrency`` batches (each holding a pool connection) run at once, each of at
    most ``batch_max`` keys.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        fetch: Fetch[K, V],
        *,
        batch_max: int = 500,
        concurrency: int = 2,
    ) -> None:
        self._pool = pool
        self._fetch = fetch
        self._batch_max = batch_max
        self._concurrency = concurrency
        self._pending: list[tuple[K, asyncio.Future[V]]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._starting = False  # a batch task has been started but has not taken its keys yet
        self._closed = False

    def get(self, key: K) -> asyncio.Future[V]:
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.cancel()
            return future
        self._pending.append((key, future))
        self._start_batch()
        return future

    def _start_batch(self) -> None:
        if not self._starting and len(self._running) < self._concurrency:
            # Started now, run on the next loop iteration: the keys asked for meanwhile join.
            self._starting = True
            self._running.add(asyncio.create_task(self._run()))

    async def _run(self) -> None:
        self._starting = False
        try:
            await self._drain()
        finally:
            # Now, not in a done callback: a key asked for after this must start a batch.
            task = asyncio.current_task()
            assert task is not None
            self._running.discard(task)

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self._batch_max]
            del self._pending[: self._batch_max]
            if self._pending:
                self._start_batch()  # more than one batch waits: read them side by side
            batch = [(key, future) for key, future in batch if not future.done()]
            if not batch:
                continue
            try:
                async with self._pool.acquire() as conn:
                    results = await self._fetch(conn, [key for key, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{len(results)} results for {len(batch)} keys")
            except BaseException as exc:
                for _, future in batch:
                    if future.done():
                        continue
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), result in zip(batch, results, strict=False):
                if not future.done():
                    future.set_result(result)

    async def close(self) -> None:
        """Cancel the batches in flight and whatever waits (at shutdown); later lookups are
        cancelled at once."""
        self._closed = True
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
