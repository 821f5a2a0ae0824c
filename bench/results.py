"""Render bench/RESULTS.md: the machine, the exact commands, each scenario's numbers and targets,
and the scale-out comparison (several processes against one)."""

from __future__ import annotations

import asyncio
import os
import platform
import time
from importlib import metadata
from typing import Any

import asyncpg
import redis

PACKAGES = ("aiohttp", "asyncpg", "websockets", "orjson", "uvloop", "redis", "hiredis")


def _first(path: str, prefix: str) -> str:
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _gib(meminfo_value: str) -> str:
    try:
        return f"{int(meminfo_value.split()[0]) / 2**20:.1f} GiB"
    except ValueError:
        return meminfo_value


async def _postgres_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def machine_info(dsn: str | None, redis_url: str | None) -> dict[str, str]:
    info = {
        "CPUs (nproc)": str(os.cpu_count()),
        "CPU model": _first("/proc/cpuinfo", "model name"),
        "RAM": _gib(_first("/proc/meminfo", "MemTotal")),
        "kernel": platform.release(),
        "Python": platform.python_version(),
    }
    for package in PACKAGES:
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "not installed"
    try:
        info["PostgreSQL"] = (
            "unknown (no server ran)" if dsn is None else asyncio.run(_postgres_version(dsn))
        )
    except Exception as exc:
        info["PostgreSQL"] = f"unknown ({type(exc).__name__})"
    try:
        info["Redis"] = "not used" if redis_url is None else _redis_version(redis_url)
    except Exception as exc:
        info["Redis"] = f"unknown ({type(exc).__name__})"
    return info


def _redis_version(url: str) -> str:
    """The version the scale-out scenarios' Redis reports about itself."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


def lookup(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def judge(run: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, target, measured, MET/MISSED) rows, the zero-loss check first."""
    data = run["data"]
    verification = data.get("verification", {})
    ok = verification.get("ok") is True and run["exit_code"] == 0
    violations = ", ".join(f"{k}: {v}" for k, v in verification.get("violations", {}).items())
    rows = [
        ("loss / duplicates / misorder", "none", violations or "none", "MET" if ok else "MISSED")
    ]
    for label, path, op, limit, divisor in run["scenario"].targets:
        value = lookup(data, path)
        if value is not None:
            value = value / divisor
        met = value is not None and (value <= limit if op == "<=" else value >= limit)
        rows.append((label, f"{op} {_fmt(limit)}", _fmt(value), "MET" if met else "MISSED"))
    return rows


def _details(run: dict[str, Any]) -> list[str]:
    data = run["data"]
    tester = data.get("tester", {})
    server = data.get("server", {})
    redis = ""
    if "broker" in data:
        redis = f", Redis CPU: {_fmt(lookup(data, 'broker.cpu_us_per_message'))} µs per message"
    extra = [
        f"- machine {run.get('busy_before', 0):.0%} busy just before the start; other processes "
        f"used {run.get('other_load', 0):.0%} of it during the window (attempt "
        f"{run.get('attempt', 1)} of {run.get('attempts', 1)} kept: the least disturbed)",
        f"- server CPU{_processes(server)}: {_fmt(server.get('cpu_us_per_message'))} µs per "
        f"persisted message or {_fmt(server.get('cpu_us_per_delivery'))} µs per delivery (the "
        f"same CPU time divided two ways), {_fmt(server.get('cpu_percent_of_core'))}% of one "
        "core over the window",
        f"- database CPU: {_fmt(lookup(data, 'database.cpu_us_per_message'))} µs per message"
        f"{redis}; machine busy {_fmt(lookup(data, 'machine.busy_percent'))}% of all cores "
        "(softirq "
        f"{_fmt(lookup(data, 'machine.softirq_percent'))}%, stolen by the hypervisor "
        f"{_fmt(lookup(data, 'machine.steal_percent'))}%, other processes "
        f"{_fmt(lookup(data, 'machine.other_cpu_s'))} CPU-seconds)",
        f"- load tester: {_fmt(tester.get('cpu_us_per_frame'))} µs CPU per frame over "
        f"{_fmt(tester.get('frames'))} frames ({tester.get('procs')} processes)",
    ]
    if "repeats" in run:
        what, values = run["repeats"]
        extra.insert(
            0,
            f"- the median of {len(values)} runs by {what}; in the runs, in order: "
            + ", ".join(_fmt(value) for value in values),
        )
    return extra


def _processes(server: dict[str, Any]) -> str:
    pids = server.get("pids")
    return f" (summed over {len(pids)} processes)" if pids else ""


# (row label, scenario key) of the scale-out table; the first row is the reference.
SCALE_OUT = [
    ("single process (scenario 1)", "throughput"),
    ("`--workers 2` + Redis", "workers2"),
    ("3 nodes + Redis", "nodes3"),
]


def scale_out(runs: list[dict[str, Any]], skipped: list[tuple[Any, str]], cpus: str) -> list[str]:
    """The "Scale-out" section: scenario 1 against the same load on several processes."""
    by_key = {run["scenario"].key: run for run in runs}
    why_skipped = {scenario.key: reason for scenario, reason in skipped}
    keys = [key for _, key in SCALE_OUT[1:]]
    if not any(key in by_key or key in why_skipped for key in keys):
        return []
    reference = lookup(by_key.get("throughput", {}).get("data", {}), "rates.messages_per_s")
    lines = [
        "## Scale-out",
        "",
        "Scenario 1's load (the same flags) against one server process, against "
        "`serve --workers 2` (two processes on one port, the kernel spreading the sockets) and "
        "against three `serve` processes sharing node 1's database (the load tester spreads the "
        "sockets over them with `--ws-url`); the processes share events through Redis. Server "
        "CPU is summed over every server process (the supervisor included); Redis's own CPU is "
        "shown apart.",
        "",
        f"On this {cpus}-core machine, shared with PostgreSQL, Redis and the load tester, more "
        "server processes cannot add CPU: the ratio shows what the bus costs (every event "
        "serialised for Redis and read back by each process, the per-conversation sequencer), "
        "not the scaling one gets with more cores or machines.",
        "",
        "| setup | persisted msg/s | deliveries/s | p50 / p99 send→delivery (ms) "
        "| server CPU µs/message | database CPU µs/message | Redis CPU µs/message "
        "| msg/s vs single process |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, key in SCALE_OUT:
        if key in why_skipped:
            lines.append(f"| {label} | skipped: {why_skipped[key]} | | | | | | |")
            continue
        run = by_key.get(key)
        if run is None:
            lines.append(f"| {label} | not run | | | | | | |")
            continue
        data = run["data"]
        rate = lookup(data, "rates.messages_per_s")
        p50 = lookup(data, "latency_us.send_to_delivery.p50")
        p99 = lookup(data, "latency_us.send_to_delivery.p99")
        latency = " / ".join(_fmt(None if v is None else v / 1000) for v in (p50, p99))
        ratio = f"{rate / reference:.2f}x" if rate is not None and reference else "n/a"
        verified = "" if judge(run)[0][3] == "MET" else " (verification FAILED)"
        cells = [
            label + verified,
            _fmt(rate),
            _fmt(lookup(data, "rates.deliveries_per_s")),
            latency,
            _fmt(lookup(data, "server.cpu_us_per_message")),
            _fmt(lookup(data, "database.cpu_us_per_message")),
            _fmt(lookup(data, "broker.cpu_us_per_message")) if "broker" in data else "n/a",
            ratio,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def group_commit_ratio(runs: list[dict[str, Any]]) -> list[str]:
    """One line comparing scenario 1 with the baseline (group commit off), if both ran."""
    by_key = {run["scenario"].key: run["data"] for run in runs}
    if "throughput" not in by_key or "baseline" not in by_key:
        return []
    paths = ("rates.messages_per_s", "server.cpu_us_per_message")
    grouped = [lookup(by_key["throughput"], path) for path in paths]
    single = [lookup(by_key["baseline"], path) for path in paths]
    if None in grouped or None in single or not single[0] or not grouped[1]:
        return []
    return [
        f"Group commit against the baseline (one transaction per message): "
        f"{grouped[0] / single[0]:.1f}x the messages/s, {single[1] / grouped[1]:.1f}x less "
        "server CPU per message.",
        "",
    ]


def render(
    runs: list[dict[str, Any]],
    skipped: list[tuple[Any, str]],
    machine: dict[str, str],
    env: dict[str, str],
    profile_md: str | None,
    quick: bool,
    elapsed: float,
) -> str:
    lines = [
        "# Benchmark results" + (" (quick smoke run: numbers are not meaningful)" if quick else ""),
        "",
        f"Generated by `python bench/run.py{' --quick' if quick else ''}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {elapsed:.0f} s. Server, "
        "PostgreSQL and load tester share the machine below; one server process except in the "
        "scale-out scenarios.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in machine.items()),
        "",
        "## Server configuration",
        "",
        "`python -m trustmess serve` with a fresh `TRUSTMESS_DATA_DIR` (embedded PostgreSQL with "
        "its default settings: fsync and synchronous_commit on) and `TRUSTMESS_PORT=0`, plus:",
        "",
        "```sh",
        " ".join(f"{k}={v}" for k, v in sorted(env.items()) if k != "TRUSTMESS_PORT"),
        "```",
        "",
        "The baseline scenario adds `TRUSTMESS_GROUP_COMMIT=false`; the scale-out scenarios add "
        "`TRUSTMESS_BROKER` (a local `redis-server --save '' --appendonly no`, or "
        "`TRUSTMESS_BENCH_REDIS_URL`) and start their processes as shown in their sections. "
        "Every other setting is the default (heartbeat 30 s, group commit up to 1,024 rows, no "
        "commit window).",
        "",
        "## Summary",
        "",
        "| scenario | what | target | measured | |",
        "|---|---|---|---|---|",
    ]
    for run in runs:
        for what, target, measured, verdict in judge(run):
            lines.append(f"| {run['scenario'].key} | {what} | {target} | {measured} | {verdict} |")
    for scenario, reason in skipped:
        lines.append(f"| {scenario.key} | skipped | | {reason} | |")
    lines += ["", *group_commit_ratio(runs)]
    lines += [*scale_out(runs, skipped, machine.get("CPUs (nproc)", "?"))]
    for scenario, reason in skipped:
        lines += [f"## {scenario.title}", "", f"Skipped: {reason}.", ""]
    for run in runs:
        lines += [f"## {run['scenario'].title}", "", "```sh", *run["server_commands"]]
        lines += [run["command"], "```", ""]
        lines += [
            f"- **{verdict}**: {what} {target}, measured {measured}"
            for what, target, measured, verdict in judge(run)
        ]
        lines += _details(run)
        lines += ["", "```text", run["summary"], "```", ""]
    if profile_md is not None:
        lines += ["## Server profile (py-spy)", "", profile_md]
    return "\n".join(lines).rstrip("\n") + "\n"
