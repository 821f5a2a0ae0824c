"""``run_load(config)``: set up over HTTP, run the workers (in-process or spawned), verify.

With ``procs == 1`` the worker runs in the caller's event loop (the tests await it that way);
otherwise each worker is a spawned process owning a slice of the sockets, and the parent only
coordinates, samples ``/proc`` at the window's edges, merges the results and checks them.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from trustmess.loadtest.config import LoadConfig, group_members, socket_plans, split
from trustmess.loadtest.eventloop import raise_open_files_limit, run_async
from trustmess.loadtest.httpapi import Api
from trustmess.loadtest.link import Link, PipeLink, queue_pair
from trustmess.loadtest.procinfo import CpuSample, cpu_sample, processes_rss_bytes
from trustmess.loadtest.provision import Provisioned, provision
from trustmess.loadtest.verify import Verification, verify
from trustmess.loadtest.worker import SECOND, WorkerPlan, WorkerResult, run_worker, sleep_until

START_MARGIN_NS = SECOND // 4


def say(line: str) -> None:
    """A phase line on stderr (for logs and harnesses that time things against the run)."""
    print(f"loadtest: {line}", file=sys.stderr, flush=True)


class WorkerFailed(RuntimeError):
    """A load-test process died or raised."""


@dataclass(slots=True)
class RunResult:
    config: LoadConfig
    provisioned: Provisioned
    http_429: int
    workers: list[WorkerResult]
    verification: Verification
    rss: dict[str, int | None]
    cpu: tuple[CpuSample, CpuSample] | None


class Coordinator:
    """The parent's side of every link, with the live progress line."""

    def __init__(self, links: list[Link], show_progress: bool) -> None:
        self.links = links
        self.latest: dict[int, tuple[int, int, int, int]] = {}
        self.show_progress = show_progress

    def broadcast(self, message: tuple[str, Any]) -> None:
        for link in self.links:
            link.send(message)

    async def gather(self, kind: str) -> list[Any]:
        return list(
            await asyncio.gather(
                *(self._expect(i, link, kind) for i, link in enumerate(self.links))
            )
        )

    async def _expect(self, number: int, link: Link, kind: str) -> Any:
        while True:
            try:
                got, payload = await link.recv()
            except (EOFError, OSError) as exc:
                raise WorkerFailed(
                    f"load-test process {number} exited unexpectedly ({exc!r})"
                ) from None
            if got == kind:
                return payload
            if got == "progress":
                self.latest[number] = payload
            elif got == "failed":
                raise WorkerFailed(f"load-test process {number} failed:\n{payload}")
            else:
                raise WorkerFailed(f"process {number}: expected {kind}, got {got}")

    async def print_progress(self) -> None:
        """Once per second on stderr: messages/s, deliveries/s, p99 send→delivery, errors."""
        before = (0, 0)
        while True:
            await asyncio.sleep(1.0)
            snapshots = list(self.latest.values())
            replies = sum(s[0] for s in snapshots)
            deliveries = sum(s[1] for s in snapshots)
            errors = sum(s[2] for s in snapshots)
            p99 = max((s[3] for s in snapshots), default=0)
            sys.stderr.write(
                f"\r{replies - before[0]:>8,} msg/s {deliveries - before[1]:>9,} deliveries/s "
                f"p99 {p99 / 1000:7.1f} ms  errors {errors:,}   "
            )
            sys.stderr.flush()
            before = (replies, deliveries)


def worker_process(plan: WorkerPlan, reader: Connection, writer: Connection) -> None:
    """Entry point of a spawned worker: its own (uv)loop, the pipes as its link."""
    raise_open_files_limit()
    run_async(run_worker(plan, PipeLink(reader, writer)))


@contextlib.asynccontextmanager
async def _workers(plans: list[WorkerPlan]) -> AsyncIterator[list[Link]]:
    if len(plans) == 1:
        parent, child = queue_pair()
        task = asyncio.create_task(run_worker(plans[0], child))
        try:
            yield [parent]
        finally:
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                await task
        return
    context = multiprocessing.get_context("spawn")
    processes, links = [], []
    for plan in plans:
        down_reader, down_writer = context.Pipe(duplex=False)
        up_reader, up_writer = context.Pipe(duplex=False)
        process = context.Process(
            target=worker_process, args=(plan, down_reader, up_writer), daemon=True
        )
        process.start()
        down_reader.close()
        up_writer.close()
        processes.append(process)
        links.append(PipeLink(up_reader, down_writer))
    try:
        yield list(links)
    finally:
        for process in processes:
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                process.kill()
        for link in links:
            link.close()


def ws_url(base_url: str) -> str:
    """``http://host:port`` → ``ws://host:port/ws`` (``https`` → ``wss``)."""
    return "ws" + base_url.rstrip("/").removeprefix("http") + "/ws"


def _worker_plans(config: LoadConfig, provisioned: Provisioned) -> list[WorkerPlan]:
    sockets = socket_plans(config, provisioned.accounts, provisioned.conversations)
    senders = sum(s.sends for s in sockets) or 1
    ws_urls = tuple(ws_url(url) for url in config.socket_urls)
    tag = f"{os.getpid():x}{time.time_ns() // 1_000_000 % (1 << 32):x}"
    rate = config.rate or 0.0
    parts = [part for part in split(sockets, config.procs) if part]
    return [
        WorkerPlan(n, config, ws_urls, part, tag, rate * sum(s.sends for s in part) / senders)
        for n, part in enumerate(parts)
    ]


async def _server_rss(config: LoadConfig, api: Api) -> int | None:
    if config.server_pids:
        return processes_rss_bytes(config.server_pids)
    with contextlib.suppress(Exception):
        return await api.metrics_rss()
    return None


async def _window_cpu(config: LoadConfig, start_ns: int) -> tuple[CpuSample, CpuSample]:
    window_start = start_ns + int(config.warmup * SECOND)
    await sleep_until(window_start)
    first = cpu_sample(config.server_pids, config.db_pid, config.broker_pid)
    await sleep_until(window_start + int(config.duration * SECOND))
    return first, cpu_sample(config.server_pids, config.db_pid, config.broker_pid)


async def run_load(config: LoadConfig) -> RunResult:
    """Run the whole test against ``config.url`` (sockets: ``config.socket_urls``) and return
    what was measured and checked."""
    config = config.resolved()
    api = Api(config.url)
    try:
        provisioned = await provision(api, config)
        say(
            f"set-up: {len(provisioned.accounts)} users ({provisioned.users_created} new), "
            f"{len(provisioned.conversations)} groups in {provisioned.seconds:.1f} s"
        )
        plans = _worker_plans(config, provisioned)
        rss: dict[str, int | None] = {"before": await _server_rss(config, api)}
        async with _workers(plans) as links:
            coordinator = Coordinator(links, config.progress)
            ready = await coordinator.gather("ready")
            say(f"{sum(r['connected'] for r in ready)} sockets connected and joined")
            rss["connected"] = await _server_rss(config, api)
            start_ns = time.monotonic_ns() + START_MARGIN_NS
            coordinator.broadcast(("go", start_ns))
            say(f"go: warm-up {config.warmup:g} s, then measuring {config.duration:g} s")
            cpu_task = asyncio.create_task(_window_cpu(config, start_ns))
            printer = asyncio.create_task(coordinator.print_progress()) if config.progress else None
            try:
                sent: list[dict[int, int]] = await coordinator.gather("sent")
                cpu = await cpu_task
                rss["end"] = await _server_rss(config, api)
                final: dict[int, int] = {}
                for part in sent:
                    for cid, seq in part.items():
                        final[cid] = max(seq, final.get(cid, 0))
                coordinator.broadcast(("final", final))
                results: list[WorkerResult] = await coordinator.gather("result")
            finally:
                cpu_task.cancel()
                if printer is not None:
                    printer.cancel()
                    sys.stderr.write("\n")
        history = None
        if config.history_check and config.sending:
            say("reading the history back")
            history = await _history(api, config, provisioned)
        verification = verify(
            provisioned.conversations, results, history, closes_expected=config.reconnect
        )
        return RunResult(config, provisioned, api.rate_limited, results, verification, rss, cpu)
    finally:
        await api.close()


async def _history(
    api: Api, config: LoadConfig, provisioned: Provisioned
) -> dict[int, list[tuple[int, int]]]:
    """Every stored (seq, id) of the run's conversations, read as each group's owner."""
    owners = [m[0] for m in group_members(config.users, config.groups, config.group_size)]
    pages = await asyncio.gather(
        *(
            api.history(provisioned.accounts[owner].token, cid)
            for owner, cid in zip(owners, provisioned.conversations, strict=True)
        )
    )
    return dict(zip(provisioned.conversations, pages, strict=True))
