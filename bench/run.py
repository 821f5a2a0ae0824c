"""Benchmark harness: start servers, run the load tester through fixed scenarios, write RESULTS.md.

    python bench/run.py            # full run (a few minutes), writes bench/RESULTS.md
    python bench/run.py --quick    # tiny versions of every scenario, a smoke check
    python bench/run.py --profile  # also py-spy the server under scenario 1
    python bench/run.py --only everyday --profile everyday  # ... or under another one
    python bench/run.py --only workers2 --only nodes3   # some scenarios only

Scenarios 1-3 share one server (their users are created once), the idle scenario gets fresh
servers for every run so its RSS baseline is clean, the baseline scenario a server with group
commit off, and the two scale-out scenarios their own processes joined by a Redis
(``TRUSTMESS_BENCH_REDIS_URL``, else a ``redis-server`` started here; without either they are
skipped).
``TRUSTMESS_DATABASE_URL`` in the environment makes every server use that database instead of an
embedded one (its CPU is then not measured).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyspy
import results
from server import BENCH_ENV, ROOT, BenchCluster, BenchRedis, RedisUnavailable, ServerSetup

Target = tuple[str, str, str, float, float]


@dataclass(frozen=True)
class Scenario:
    key: str
    server: str  # a key of SERVERS; consecutive scenarios on the same one share it
    title: str
    args: list[str]
    quick_args: list[str]
    # (what, JSON path in the load tester's result, "<=" or ">=", limit, divisor for display)
    targets: list[Target] = field(default_factory=list)


TOPOLOGY = ["--users", "1000", "--groups", "200", "--group-size", "5"]
QUICK_TOPOLOGY = ["--users", "40", "--groups", "8", "--group-size", "5"]
QUICK_TIMING = ["--duration", "2", "--warmup", "0.5"]
FANOUT_TIMING = ["--arrival", "fixed", "--duration", "15", "--warmup", "3"]
THROUGHPUT = [*TOPOLOGY, "--window", "2", "--duration", "20", "--warmup", "5"]
QUICK_THROUGHPUT = [*QUICK_TOPOLOGY, "--window", "2", *QUICK_TIMING]
LATENCY = [*TOPOLOGY, "--rate", "2000", "--arrival", "poisson", "--duration", "20", "--warmup", "3"]
QUICK_LATENCY = [*QUICK_TOPOLOGY, "--rate", "200", *QUICK_TIMING]
# Everyday traffic: each message is a batch of its own, so per-statement and per-wake-up costs
# show, not the saturated group commit of scenario 1.
EVERYDAY = [*TOPOLOGY, "--rate", "200", "--arrival", "poisson", "--duration", "30", "--warmup", "3"]
QUICK_EVERYDAY = [*QUICK_TOPOLOGY, "--rate", "50", *QUICK_TIMING]
# 62 messages/s, not 60: deliveries/s counts what arrives inside the window, so an offered load
# of exactly 60,000/s measures a hair above or below it by where the window's edges fall
# (59,933 in one run with every delivery made). 3% more load shows >= 60,000 sustained. Fixed
# arrivals for the same reason: a Poisson process would undershoot by chance.
FANOUT = ["--users", "1000", "--fanout", "--senders", "5", "--rate", "62", *FANOUT_TIMING]
QUICK_FANOUT = ["--users", "50", "--fanout", "--senders", "5", "--rate", "20", *QUICK_TIMING]
IDLE = ["--idle", "10000", "--duration", "35", "--warmup", "0", "--connect-concurrency", "100"]
QUICK_IDLE = ["--idle", "200", "--duration", "2", "--warmup", "0"]

CPU_PER_MESSAGE: Target = (
    "server CPU per persisted message (µs)",
    "server.cpu_us_per_message",
    "<=",
    50,
    1,
)
MESSAGES: Target = ("persisted messages/s", "rates.messages_per_s", ">=", 10_000, 1)
P50: Target = ("p50 send→delivery (ms)", "latency_us.send_to_delivery.p50", "<=", 5, 1000)
P99: Target = ("p99 send→delivery (ms)", "latency_us.send_to_delivery.p99", "<=", 25, 1000)
FANOUT_P99: Target = ("p99 send→delivery (ms)", "latency_us.send_to_delivery.p99", "<=", 100, 1000)
# Issue 20's targets for everyday rates (same topology, open loop).
SERVER_CPU_2000: Target = ("server CPU per message (µs)", "server.cpu_us_per_message", "<=", 60, 1)
DB_CPU_2000: Target = ("database CPU per message (µs)", "database.cpu_us_per_message", "<=", 60, 1)
SERVER_CPU_200: Target = ("server CPU per message (µs)", "server.cpu_us_per_message", "<=", 150, 1)
DB_CPU_200: Target = ("database CPU per message (µs)", "database.cpu_us_per_message", "<=", 150, 1)
# Issue 20: a big group's fan-out, per delivery.
CPU_PER_DELIVERY: Target = (
    "server CPU per delivery (µs)",
    "server.cpu_us_per_delivery",
    "<=",
    3,
    1,
)
DELIVERIES: Target = ("deliveries/s", "rates.deliveries_per_s", ">=", 60_000, 1)
RSS: Target = ("server RSS per socket (KiB)", "server.rss_per_socket_bytes", "<=", 20, 1024)

SERVERS = {
    "main": ServerSetup(),
    # Fresh servers for every run: a run's RSS baseline must not hold the previous run's sockets.
    "idle": ServerSetup(fresh_per_run=True),
    "baseline": ServerSetup(env={"TRUSTMESS_GROUP_COMMIT": "false"}),
    "workers2": ServerSetup(workers=2),
    "nodes3": ServerSetup(nodes=3),
}
SCENARIOS = [
    Scenario(
        "throughput",
        "main",
        "1. Throughput: 1,000 sockets, 200 groups of 5, closed loop",
        THROUGHPUT,
        QUICK_THROUGHPUT,
        [CPU_PER_MESSAGE, MESSAGES],
    ),
    Scenario(
        "latency",
        "main",
        "2. Latency: same topology, open loop at 2,000 messages/s",
        LATENCY,
        QUICK_LATENCY,
        [P50, P99, SERVER_CPU_2000, DB_CPU_2000],
    ),
    Scenario(
        "everyday",
        "main",
        "9. Everyday rate: same topology, open loop at 200 messages/s",
        EVERYDAY,
        QUICK_EVERYDAY,
        [P50, P99, SERVER_CPU_200, DB_CPU_200],
    ),
    Scenario(
        "fanout",
        "main",
        "3. Fan-out: one group of 1,000 members, 5 senders at 62 messages/s",
        FANOUT,
        QUICK_FANOUT,
        [DELIVERIES, FANOUT_P99, CPU_PER_DELIVERY],
    ),
    Scenario(
        "idle",
        "idle",
        "4. Idle: 10,000 authenticated, joined sockets, heartbeats on (30 s)",
        IDLE,
        QUICK_IDLE,
        [RSS],
    ),
    Scenario(
        "baseline",
        "baseline",
        "5. Baseline: scenario 1 with group commit off (one transaction per message)",
        THROUGHPUT,
        QUICK_THROUGHPUT,
        [],  # a comparison, not a target: the summary gives the ratio to scenario 1
    ),
    Scenario(
        "workers2",
        "workers2",
        "6. Scale-out: scenario 1 on `serve --workers 2` with Redis",
        THROUGHPUT,
        QUICK_THROUGHPUT,
    ),
    Scenario(
        "nodes3",
        "nodes3",
        "7. Scale-out: scenario 1 on 3 nodes sharing one database and Redis",
        THROUGHPUT,
        QUICK_THROUGHPUT,
    ),
    Scenario(
        "nodes3-latency",
        "nodes3",
        "10. Scale-out latency: 3 nodes sharing one database and Redis, open loop at 2,000 "
        "messages/s",
        LATENCY,
        QUICK_LATENCY,
        [P99],  # issue 20: p99 <= 25 ms, as on one node
    ),
    Scenario(
        "mixed",
        "main",
        "8. Mixed: scenario 1 with 80% sends, 10% reactions, 5% edits, 5% deletes",
        [*THROUGHPUT, "--mix", "80,10,5,5"],
        [*QUICK_THROUGHPUT, "--mix", "80,10,5,5"],
        [],  # a comparison with scenario 1, not a target
    ),
]
# A scenario is rerun when other processes took more than this share of the machine during its
# window, as long as the whole benchmark has run for less than the budget.
QUIET_SHARE = 0.10
RETRY_BUDGET_S = 240.0
# Flags whose values are this machine's (URLs, pids): shown as placeholders in RESULTS.md.
PLACEHOLDER_FLAGS = ("--url", "--ws-url", "--server-pid", "--db-pid", "--broker-pid")


def machine_busy(seconds: float = 2.0) -> float:
    """Share of all CPUs busy over the next ``seconds`` (from /proc/stat), 0-1."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:8]]
        return sum(values) - values[3] - values[4], sum(values)

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    return (busy1 - busy0) / max(1, total1 - total0)


def wait_for_quiet(limit_s: float = 30.0, threshold: float = 0.25) -> float:
    """Wait (bounded) until other work on the machine calms down; the last busy share.

    Server, database and tester share the cores with whatever else runs here, so a scenario
    started next to someone's test suite measures that suite too.
    """
    deadline = time.monotonic() + limit_s
    busy = machine_busy()
    while busy > threshold and time.monotonic() < deadline:
        print(f"   machine {busy:.0%} busy before the scenario; waiting for it to calm down")
        busy = machine_busy(5.0)
    return busy


def run_scenario(
    scenario: Scenario,
    cluster: BenchCluster,
    procs: int,
    quick: bool,
    workdir: Path,
    on_go: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run the load tester once; ``on_go`` is called when it starts sending (warm-up begins)."""
    out = workdir / f"{scenario.key}.json"
    args = scenario.quick_args if quick else scenario.args
    command = [sys.executable, "-m", "trustmess.loadtest", "--url", cluster.url]
    for url in cluster.ws_urls:
        command += ["--ws-url", url]
    command += ["--prefix", "bench", *args, "--procs", str(procs)]
    pids = cluster.pids  # read from /proc once: the command and its placeholders must agree
    for pid in pids:
        command += ["--server-pid", str(pid)]
    if cluster.db_pid is not None:
        command += ["--db-pid", str(cluster.db_pid)]
    if cluster.broker_pid is not None:
        command += ["--broker-pid", str(cluster.broker_pid)]
    shown = shown_command(command, cluster, pids)
    command += ["--json", str(out)]
    print(f"== {scenario.title}\n$ {shlex.join(command[1:])}", flush=True)
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stderr is not None
    errors = []
    for line in process.stderr:  # the summary on stdout is small and comes last
        errors.append(line)
        if on_go is not None and line.startswith("loadtest: go:"):
            on_go()
    stdout = process.stdout.read()
    exit_code = process.wait()
    print(stdout or "".join(errors), flush=True)
    data: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    return {
        "scenario": scenario,
        "server_commands": cluster.commands(),
        "command": shown,
        "exit_code": exit_code,
        "summary": stdout.strip() or "".join(errors).strip(),
        "data": data,
        "seconds": round(time.monotonic() - started, 1),
    }


def shown_command(command: list[str], cluster: BenchCluster, pids: list[int]) -> str:
    """The load tester's command for RESULTS.md: this machine's URLs and pids as placeholders."""
    names = cluster.url_names()
    names |= {str(pid): name for pid, name in zip(pids, cluster.pid_names(len(pids)), strict=True)}
    names |= {str(cluster.db_pid): "$POSTMASTER_PID", str(cluster.broker_pid): "$REDIS_PID"}
    words = ["python", *command[1:]]
    shown = [
        names.get(word, word) if before in PLACEHOLDER_FLAGS else shlex.quote(word)
        for before, word in zip(["", *words[:-1]], words, strict=True)
    ]
    return " ".join(shown)


def profile_scenario(measured: Scenario, cluster: BenchCluster, procs: int, workdir: Path) -> str:
    """``measured`` once more, with py-spy on the server for exactly the measured window."""
    if pyspy.py_spy() is None:
        return "_py-spy not installed: `pip install py-spy`_"
    raw = workdir / "server-profile.txt"
    warmup = float(measured.args[measured.args.index("--warmup") + 1])
    duration = float(measured.args[measured.args.index("--duration") + 1])
    scenario = Scenario("profile", measured.server, measured.title, measured.args, [])
    recorders: list[subprocess.Popen[bytes]] = []

    def record() -> None:
        # A ``--workers`` server's first pid is its supervisor: profile the first worker.
        pid = cluster.pids[1] if cluster.setup.workers > 1 else cluster.pids[0]
        recorder = pyspy.start_recording(pid, duration, raw)
        if recorder is not None:
            recorders.append(recorder)

    wait_for_quiet()
    run_scenario(
        scenario, cluster, procs, False, workdir, lambda: threading.Timer(warmup, record).start()
    )
    for recorder in recorders:
        recorder.wait()
    ranked = pyspy.markdown(raw) if raw.exists() else "_py-spy recorded nothing_"
    return f"Under {measured.title}.\n\n{ranked}"


def other_load(run: dict[str, Any]) -> float:
    """Share of the machine taken by processes outside the benchmark (or by the hypervisor)
    during the window."""
    data = run["data"]
    other = results.lookup(data, "machine.other_cpu_s")
    stolen = results.lookup(data, "machine.steal_percent") or 0.0
    cpus = results.lookup(data, "machine.cpus") or 1
    if other is None:
        return 1.0
    return float(other / (data.get("window_s") or 1) / cpus + stolen / 100)


def run_quietest(
    scenario: Scenario,
    servers: Callable[[], BenchCluster],
    args: argparse.Namespace,
    workdir: Path,
    retry: bool,
) -> dict[str, Any]:
    """Run once; while other work on the machine took a noticeable share of the CPU during
    the window, run again (up to ``--attempts``) and keep the least disturbed run."""
    best: dict[str, Any] | None = None
    attempts = args.attempts if retry else 1
    for attempt in range(1, attempts + 1):
        busy_before = machine_busy(0.5) if args.quick else wait_for_quiet()
        run = run_scenario(scenario, servers(), args.procs, args.quick, workdir)
        run |= {"busy_before": busy_before, "attempt": attempt, "other_load": other_load(run)}
        if best is None or run["other_load"] < best["other_load"]:
            best = run
        if run["other_load"] <= QUIET_SHARE:
            break
        print(f"   other processes used {run['other_load']:.0%} of the machine; ", end="")
        print("running the scenario again" if attempt < attempts else "keeping the quietest run")
    assert best is not None
    best["attempts"] = attempt
    return best


def run_median(
    scenario: Scenario,
    servers: Callable[[], BenchCluster],
    args: argparse.Namespace,
    workdir: Path,
    retry: bool,
) -> dict[str, Any]:
    """``--repeat`` runs of the scenario; the one with the median of its first target (or of
    messages/s) is reported, with that figure from every run beside it.

    The same code measured 47-88 us of server CPU per message in single runs an hour apart
    on this (virtual) machine: one run is an anecdote, the spread is part of the result.
    """
    runs = [run_quietest(scenario, servers, args, workdir, retry) for _ in range(args.repeat)]
    if len(runs) == 1:
        return runs[0]
    what, path, scale = (
        (scenario.targets[0][0], scenario.targets[0][1], scenario.targets[0][4])
        if scenario.targets
        else ("persisted messages/s", "rates.messages_per_s", 1)
    )
    found = [(results.lookup(run["data"], path), index) for index, run in enumerate(runs)]
    if any(value is None for value, _ in found):
        return runs[0]
    measured = [(value / scale, index) for value, index in found]
    ordered = sorted(measured)
    median = runs[ordered[len(ordered) // 2][1]]
    median["repeats"] = (what, [value for value, _ in measured])
    return median


class Servers:
    """The servers the current scenario runs against: called before each run, it starts them
    when the scenario needs other ones than the last, or fresh ones (``fresh_per_run``) once
    they have served a run."""

    def __init__(self, database_url: str | None) -> None:
        self.database_url = database_url
        self.cluster: BenchCluster | None = None
        self.dsn: str | None = None
        self._key = ""  # the SERVERS key ``cluster`` was started for
        self._wanted = ""
        self._broker: BenchRedis | None = None
        self._used = False

    def want(self, key: str, broker: BenchRedis | None) -> None:
        self._wanted, self._broker = key, broker

    def __call__(self) -> BenchCluster:
        setup = SERVERS[self._wanted]
        if (
            self.cluster is None
            or self._key != self._wanted
            or (setup.fresh_per_run and self._used)
        ):
            self.stop()
            self.cluster = BenchCluster(setup, self.database_url, self._broker)
            self._key, self.dsn, self._used = self._wanted, self.cluster.dsn, False
        self._used = True
        return self.cluster

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny scenarios (smoke check)")
    parser.add_argument("--procs", type=int, default=2, help="load-test processes")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="throughput",
        choices=[scenario.key for scenario in SCENARIOS],
        help="py-spy the server under this scenario (default: throughput)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[scenario.key for scenario in SCENARIOS],
        help="run only this scenario (repeatable)",
    )
    parser.add_argument(
        "--attempts", type=int, default=3, help="runs of a scenario disturbed by other load"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per scenario; the median one is reported"
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for every server started (repeatable), e.g. TRUSTMESS_COMMIT_WINDOW_MS=2",
    )
    parser.add_argument("--out", type=Path, help="markdown output (default: bench/RESULTS.md)")
    args = parser.parse_args()
    for pair in args.server_env:
        name, sep, value = pair.partition("=")
        if not sep or not name.startswith("TRUSTMESS_"):
            parser.error(f"--server-env wants TRUSTMESS_NAME=VALUE, not {pair!r}")
        BENCH_ENV[name] = value  # every server's environment, and shown in the results
    # Stop the servers (and their embedded databases) on Ctrl-C or SIGTERM, even when started
    # in the background by a shell that ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the servers
    database_url = os.environ.get("TRUSTMESS_DATABASE_URL")
    workdir = Path(tempfile.mkdtemp(prefix="trustmess-bench-out-", dir="/tmp"))
    runs: list[dict[str, Any]] = []
    skipped: list[tuple[Scenario, str]] = []
    servers = Servers(database_url)
    redis: BenchRedis | None = None
    no_redis: str | None = None  # why there is no Redis, once that is known
    profile_md: str | None = None
    started = time.monotonic()
    try:
        for scenario in SCENARIOS:
            if args.only and scenario.key not in args.only:
                continue
            setup = SERVERS[scenario.server]
            if setup.needs_broker and redis is None and no_redis is None:
                try:
                    redis = BenchRedis()
                except RedisUnavailable as exc:
                    no_redis = str(exc)
            if setup.needs_broker and redis is None:
                assert no_redis is not None
                print(f"== {scenario.title}\n   skipped: {no_redis}", flush=True)
                skipped.append((scenario, no_redis))
                continue
            servers.want(scenario.server, redis if setup.needs_broker else None)
            retry = not args.quick and time.monotonic() - started < RETRY_BUDGET_S
            runs.append(run_median(scenario, servers, args, workdir, retry))
            if args.profile == scenario.key and not args.quick:
                profile_md = profile_scenario(scenario, servers(), args.procs, workdir)
        machine = results.machine_info(servers.dsn, None if redis is None else redis.url)
    finally:
        servers.stop()
        if redis is not None:
            redis.stop()
    elapsed = time.monotonic() - started
    text = results.render(runs, skipped, machine, BENCH_ENV, profile_md, args.quick, elapsed)
    out = args.out or (None if args.quick else ROOT / "bench" / "RESULTS.md")
    if out is not None:
        out.write_text(text)
        print(f"wrote {out} ({elapsed:.0f} s); the load tester's JSON results are in {workdir}")
    failed = [run["scenario"].key for run in runs if run["exit_code"] != 0]
    if failed:
        print("verification failed or run broken in: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
