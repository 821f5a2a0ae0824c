"""Readings from ``/proc``: CPU time and RSS of the server, its database, and the whole machine.

The server may be several processes (``--workers``, or several nodes on this machine): their
CPU and RSS are summed. The database is a process tree (postmaster plus one backend per
connection), so its CPU is summed over the postmaster and every descendant alive at the time of
the sample.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

N = TypeVar("N", int, float)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuSample:
    """Cumulative CPU seconds: the server processes, the database tree, the broker (Redis), and
    the machine's totals split into process time (user + system), interrupt time (softirq:
    loopback networking is largely done there), time stolen by the hypervisor, and everything."""

    server_s: float | None
    database_s: float | None
    broker_s: float | None
    machine_process_s: float
    machine_irq_s: float
    machine_steal_s: float
    machine_total_s: float


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is index 0)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of one process (None if it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _summed(pids: Sequence[int], reading: Callable[[int], N | None]) -> N | None:
    """``reading`` summed over ``pids``; None when there are none or any is gone (a sum
    missing one process would make the window's difference meaningless)."""
    total: N | None = None
    for pid in pids:
        value = reading(pid)
        if value is None:
            return None
        total = value if total is None else total + value
    return total


def processes_cpu_s(pids: Sequence[int]) -> float | None:
    """User + system CPU seconds summed over ``pids`` (see _summed)."""
    return _summed(pids, process_cpu_s)


def parent_pids() -> dict[int, int]:
    """pid → parent pid of every process visible in /proc."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parents[int(entry.name)] = int(fields[1])
    return parents


def child_pids(pid: int) -> list[int]:
    """The living direct children of ``pid``, in pid order."""
    return sorted(child for child, parent in parent_pids().items() if parent == pid)


def reaped_children_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid``'s children that have exited and been waited for."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[13]) + int(fields[14])) / CLOCK_TICKS


def tree_cpu_s(root: int) -> float | None:
    """CPU seconds of ``root`` and all its descendants, living or exited: a process that
    ends (a PostgreSQL backend or autovacuum worker, say) has its time moved into its
    parent's reaped-children count, so the total never goes backwards."""
    parents = parent_pids()
    if root not in parents:
        return None
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += (process_cpu_s(pid) or 0.0) + reaped_children_cpu_s(pid)
        todo.extend(children.get(pid, ()))
    return total


def machine_cpu_s() -> tuple[float, float, float, float]:
    """(process, irq, steal, total) CPU seconds of all cores since boot, from /proc/stat."""
    with open("/proc/stat") as handle:
        user, nice, system, idle, iowait, irq, softirq, steal = (
            int(v) / CLOCK_TICKS for v in handle.readline().split()[1:9]
        )
    total = user + nice + system + idle + iowait + irq + softirq + steal
    return user + nice + system, irq + softirq, steal, total


def rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid`` (VmRSS), None if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def processes_rss_bytes(pids: Sequence[int]) -> int | None:
    """RSS summed over ``pids`` (see _summed)."""
    return _summed(pids, rss_bytes)


def cpu_sample(
    server_pids: Sequence[int], db_pid: int | None, broker_pid: int | None = None
) -> CpuSample:
    return CpuSample(
        processes_cpu_s(server_pids) if server_pids else None,
        None if db_pid is None else tree_cpu_s(db_pid),
        None if broker_pid is None else process_cpu_s(broker_pid),
        *machine_cpu_s(),
    )
