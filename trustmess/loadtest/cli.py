"""``python -m trustmess.loadtest``: flags → :class:`LoadConfig` → :func:`run_load` → report.

Exit status: 0 when the verification passed, 1 when it found a violation, 2 when the run could
not be set up (bad flags, server refused the set-up, a worker died).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import orjson

from trustmess.loadtest.config import INJECT_LOSS_ENV, ConfigError, LoadConfig
from trustmess.loadtest.eventloop import raise_open_files_limit, run_async


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trustmess.loadtest",
        description="Drive a running TrustMess server over its WebSocket protocol, measure "
        "latency and throughput, and verify that every message was delivered exactly once.",
    )
    p.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL")
    p.add_argument(
        "--ws-url",
        action="append",
        metavar="URL",
        help="base URL for the sockets (repeatable: socket i goes to the i-th, round-robin); "
        "set-up and verification use --url",
    )
    p.add_argument("--prefix", default="lt", help="username prefix; reruns reuse the users")
    p.add_argument("--password", default="loadtest-password", help="password of every user")
    topo = p.add_argument_group("topology")
    topo.add_argument("--users", type=int, default=10)
    topo.add_argument("--groups", type=int, default=2, help="groups created fresh for this run")
    topo.add_argument("--group-size", type=int, default=5, help="members per group (≤ 1000)")
    topo.add_argument("--sockets-per-user", type=int, default=1)
    topo.add_argument("--senders", type=int, help="sockets that send (default: all)")
    topo.add_argument("--fanout", action="store_true", help="one group of all users")
    topo.add_argument("--idle", type=int, default=0, metavar="N", help="hold N idle sockets")
    load = p.add_argument_group("load")
    load.add_argument("--rate", type=float, help="open loop: messages/s in total")
    load.add_argument("--arrival", choices=("poisson", "fixed"), default="poisson")
    load.add_argument("--window", type=int, default=1, help="closed loop: in flight per sender")
    load.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    load.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    load.add_argument("--typing-ratio", type=float, default=0.0, help="fraction of commands")
    load.add_argument(
        "--mix",
        type=_mix,
        metavar="S,R,E,D",
        help="shares of message, react, edit and delete commands, e.g. 80,10,5,5",
    )
    load.add_argument("--ack-every", type=int, default=0, metavar="N", help="ack every N received")
    load.add_argument("--body-chars", type=int, default=32, help="message body length")
    load.add_argument("--first-frame-auth", action="store_true", help="auth frame, not header")
    run = p.add_argument_group("run")
    run.add_argument("--procs", type=int, default=1, help="client processes")
    run.add_argument("--connect-concurrency", type=int, default=200, help="per process")
    run.add_argument("--drain-timeout", type=float, default=30.0, help="seconds")
    run.add_argument("--no-history-check", action="store_true", help="skip reading history back")
    run.add_argument(
        "--server-pid",
        type=int,
        action="append",
        metavar="PID",
        help="sample this process's CPU and RSS (repeatable: summed over all)",
    )
    run.add_argument("--db-pid", type=int, help="sample this process tree's CPU (postmaster)")
    run.add_argument("--broker-pid", type=int, help="sample this process's CPU (redis-server)")
    run.add_argument("--json", type=Path, metavar="FILE", help="write the full result")
    run.add_argument(
        "--reconnect",
        action="store_true",
        help="after a close, reconnect to the next node, resume and resend (fault injection)",
    )
    run.add_argument("--inject-loss", action="store_true", help=argparse.SUPPRESS)
    return p


def _mix(raw: str) -> tuple[float, float, float, float]:
    try:
        shares = [float(part) for part in raw.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("four numbers: SENDS,REACTS,EDITS,DELETES") from None
    if len(shares) != 4 or min(shares) < 0 or shares[0] <= 0:
        raise argparse.ArgumentTypeError("four shares SENDS,REACTS,EDITS,DELETES, sends above 0")
    total = sum(shares)
    return (shares[0] / total, shares[1] / total, shares[2] / total, shares[3] / total)


def config_from_args(args: argparse.Namespace) -> LoadConfig:
    return LoadConfig(
        url=args.url,
        prefix=args.prefix,
        password=args.password,
        users=args.users,
        groups=args.groups,
        group_size=args.group_size,
        sockets_per_user=args.sockets_per_user,
        senders=args.senders,
        rate=args.rate,
        arrival=args.arrival,
        window=args.window,
        duration=args.duration,
        warmup=args.warmup,
        typing_ratio=args.typing_ratio,
        mix=args.mix,
        ack_every=args.ack_every,
        body_chars=args.body_chars,
        idle=args.idle,
        fanout=args.fanout,
        procs=args.procs,
        connect_concurrency=args.connect_concurrency,
        first_frame_auth=args.first_frame_auth,
        history_check=not args.no_history_check,
        drain_timeout=args.drain_timeout,
        ws_urls=tuple(args.ws_url or ()),
        server_pids=tuple(args.server_pid or ()),
        db_pid=args.db_pid,
        broker_pid=args.broker_pid,
        progress=sys.stderr.isatty(),
        inject_loss=args.inject_loss or os.environ.get(INJECT_LOSS_ENV) == "1",
        reconnect=args.reconnect,
    )


def main(argv: list[str] | None = None) -> int:
    from trustmess.loadtest.httpapi import SetupError
    from trustmess.loadtest.report import result_json, summary_text
    from trustmess.loadtest.runner import WorkerFailed, run_load

    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args).resolved()
    except ConfigError as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    raise_open_files_limit()
    try:
        result = run_async(run_load(config))
    except (SetupError, WorkerFailed, OSError) as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    data = result_json(result)
    if args.json:
        args.json.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    print(summary_text(data))
    return 0 if result.verification.ok else 1
