"""One load-test process: open its slice of the sockets, send on the parent's clock, drain, report.

The conversation with the parent (see ``runner``): ``ready`` → ``go(start_ns)`` → ``sent``
(highest replied seq per conversation) → ``final`` (the run-wide highest seqs, which every
joined socket must reach) → ``result``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import time
import traceback
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from trustmess.loadtest.client import JoinRefused, SocketClient
from trustmess.loadtest.config import LoadConfig, SocketPlan
from trustmess.loadtest.link import Link
from trustmess.loadtest.runstate import Receipt, RunState
from trustmess.loadtest.stats import percentile

SECOND = 1_000_000_000


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    number: int
    config: LoadConfig
    ws_urls: tuple[str, ...]  # socket plan ``node`` indexes this
    sockets: list[SocketPlan]
    tag: str
    rate: float  # this process's share of --rate (open loop)


@dataclass(slots=True)
class WorkerResult:
    number: int
    connected: int
    connected_per_node: list[int]
    connect_errors: dict[str, int]
    reconnect_errors: dict[str, int]
    connect_us: array[int]
    reconnect_us: array[int]
    # --reconnect: see RunState
    closed_users: set[int]
    first_close_ns: int
    last_rejoin_ns: int
    delivery_log: array[int]
    reply_us: array[int]
    delivery_us: array[int]
    totals: dict[str, int]
    window: dict[str, int]
    cpu_window_s: float
    errors: dict[str, int]
    close_codes: dict[int, int]
    replied: dict[int, list[int]]
    receipts: list[Receipt] = field(default_factory=list)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def sleep_until(deadline_ns: int) -> None:
    delay = (deadline_ns - time.monotonic_ns()) / SECOND
    if delay > 0:
        await asyncio.sleep(delay)


async def run_worker(plan: WorkerPlan, link: Link) -> None:
    """The whole life of one process's sockets; failures are reported to the parent."""
    try:
        await _run(plan, link)
    except Exception:
        link.send(("failed", traceback.format_exc()))
        raise


async def _run(plan: WorkerPlan, link: Link) -> None:
    config = plan.config
    ratio = config.typing_ratio
    run = RunState(
        ratio / (1 - ratio),
        config.ack_every,
        closed_loop=not config.open_loop,
        mix=config.mix,
        reconnect=config.reconnect,
    )
    pad = "x" * max(1, config.body_chars - 22)
    clients = [
        SocketClient(s, run, f"{plan.tag}-{s.index}-", pad, plan.ws_urls, config.first_frame_auth)
        for s in plan.sockets
    ]
    connect_errors: Counter[str] = Counter()
    watchers = await _connect_all(clients, plan, connect_errors)
    live = [client for client in clients if client.sock is not None]
    link.send(("ready", {"connected": len(live), "errors": dict(connect_errors)}))
    _, start_ns = await link.recv()
    run.window_start = start_ns + int(config.warmup * SECOND)
    run.window_end = run.window_start + int(config.duration * SECOND)
    edges = asyncio.create_task(_window_edges(run))
    progress = asyncio.create_task(_progress(run, link)) if config.progress else None
    await sleep_until(start_ns)
    run.drop_next_delivery = config.inject_loss and plan.number == 0
    if config.sending:
        await _send_until_window_end(run, [c for c in live if c.plan.sends], plan)
    else:
        await sleep_until(run.window_end)
    (counters_start, cpu_start), (counters_end, cpu_end) = await edges
    run.unanswered += max(0, run.outstanding)
    link.send(("sent", {cid: max(flat[0::2]) for cid, flat in run.replied.items()}))
    _, final = await link.recv()
    await _wait_for_receipts(run, live, final, config.drain_timeout)
    if progress is not None:
        progress.cancel()
    await asyncio.gather(*(client.close() for client in live), return_exceptions=True)
    await asyncio.gather(*watchers, return_exceptions=True)
    result = WorkerResult(
        number=plan.number,
        connected=len(live),
        connected_per_node=[
            sum(c.plan.node == node for c in live) for node in range(len(plan.ws_urls))
        ],
        connect_errors=dict(connect_errors),
        reconnect_errors=dict(run.reconnect_errors),
        connect_us=run.connect_us,
        reconnect_us=run.reconnect_us,
        closed_users=run.closed_users,
        first_close_ns=run.first_close_ns,
        last_rejoin_ns=run.last_rejoin_ns,
        delivery_log=run.delivery_log,
        reply_us=run.reply_us,
        delivery_us=run.delivery_us,
        totals=run.counters(),
        window={k: counters_end[k] - counters_start[k] for k in counters_end},
        cpu_window_s=cpu_end - cpu_start,
        errors=dict(run.errors),
        close_codes=dict(run.close_codes),
        replied=run.replied,
        receipts=[r for client in live for r in client.receipts.values()],
    )
    link.send(("result", result))


async def _connect_all(
    clients: list[SocketClient], plan: WorkerPlan, errors: Counter[str]
) -> list[asyncio.Task[None]]:
    """Open every socket (bounded concurrency); each joined one gets a task awaiting its close."""
    semaphore = asyncio.Semaphore(plan.config.connect_concurrency)
    watchers: list[asyncio.Task[None]] = []

    async def open_one(client: SocketClient) -> None:
        async with semaphore:
            try:
                await client.open(plan.ws_urls[client.plan.node], plan.config.first_frame_auth)
            except Exception as exc:
                status = getattr(getattr(exc, "response", None), "status_code", None)
                reason = str(exc) if isinstance(exc, JoinRefused) else type(exc).__name__
                errors[f"HTTP {status}" if status else reason] += 1
                if client.sock is not None:
                    await client.close()
                client.sock = None
                return
            watchers.append(asyncio.create_task(client.watch()))

    await asyncio.gather(*(open_one(client) for client in clients))
    return watchers


async def _send_until_window_end(
    run: RunState, senders: list[SocketClient], plan: WorkerPlan
) -> None:
    """Closed loop: prime each sender's window (replies send the next); open loop: schedule."""
    run.sending = True
    if senders and plan.config.open_loop:
        await _open_loop(run, senders, plan.rate, plan.config.arrival == "poisson")
    else:
        for client in senders:
            for _ in range(plan.config.window):
                client.send_message()
        await sleep_until(run.window_end)
    run.sending = False
    if run.outstanding <= 0:
        run.drained.set()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(plan.config.drain_timeout):
            await run.drained.wait()


async def _open_loop(
    run: RunState, senders: list[SocketClient], rate: float, poisson: bool
) -> None:
    """Arrivals at ``rate``/s until the window ends; late arrivals are sent at once, not skipped."""
    gap_ns = SECOND / rate
    next_at = float(time.monotonic_ns())
    turn = 0
    while True:
        now = time.monotonic_ns()
        if now >= run.window_end:
            return
        while next_at <= now:
            senders[turn % len(senders)].send_message()
            turn += 1
            next_at += random.expovariate(1 / gap_ns) if poisson else gap_ns
        await sleep_until(int(next_at))


async def _window_edges(run: RunState) -> tuple[tuple[dict[str, int], float], ...]:
    """Counters and own CPU time at the start and at the end of the measured window."""
    await sleep_until(run.window_start)
    start = (run.counters(), cpu_seconds())
    await sleep_until(run.window_end)
    return start, (run.counters(), cpu_seconds())


async def _progress(run: RunState, link: Link) -> None:
    seen = 0
    while True:
        await asyncio.sleep(1.0)
        recent = sorted(run.delivery_us[seen:])
        seen = len(run.delivery_us)
        errors = sum(run.errors.values()) + sum(run.close_codes.values())
        link.send(("progress", (run.replies, run.deliveries, errors, percentile(recent, 99))))


async def _wait_for_receipts(
    run: RunState, live: list[SocketClient], final: dict[int, Any], wait_s: float
) -> None:
    """Wait (bounded) until every live socket has received up to each conversation's last seq."""
    for client in live:
        if client.dead:
            continue
        for receipt in client.receipts.values():
            target = final.get(receipt.conversation_id, 0)
            if receipt.last < target:
                receipt.target = target
                run.open_receipts += 1
    if run.open_receipts == 0:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait_s):
            await run.receipts_done.wait()
