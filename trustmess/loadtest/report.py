"""The run's result as JSON (``--json``) and as a one-screen summary table."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from typing import Any

from trustmess.loadtest.runner import RunResult
from trustmess.loadtest.runstate import others_during_reconnects
from trustmess.loadtest.stats import merge, summarize


def _per(total_s: float | None, count: int) -> float | None:
    """Microseconds of ``total_s`` per item, or None when either is missing."""
    if total_s is None or count <= 0:
        return None
    return round(total_s * 1e6 / count, 2)


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(b - a, 3)


def _reconnect_row(reconnects: dict[str, Any]) -> str:
    times, others = reconnects["reconnect_us"], reconnects["others_delivery_us"]
    return (
        f"reconnects {times.get('count', 0):,}: p50 {_ms(times, 'p50')} ms, max "
        f"{_ms(times, 'max')} ms; {reconnects['failed_attempts']:,} failed attempts, "
        f"{reconnects['not_resumed']:,} joins not resumed, {reconnects['resent']:,} commands "
        f"resent; attempts failed with: {_codes(reconnects['failures'])}; meanwhile, between "
        f"sockets never closed: {others.get('count', 0):,} deliveries, p99 "
        f"{_ms(others, 'p99')} ms, max {_ms(others, 'max')} ms"
    )


def result_json(result: RunResult) -> dict[str, Any]:
    config = result.config
    workers = result.workers
    totals: Counter[str] = Counter()
    window: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    closes: Counter[str] = Counter()
    connect_errors: Counter[str] = Counter()
    for worker in workers:
        totals.update(worker.totals)
        window.update(worker.window)
        errors.update(worker.errors)
        closes.update({str(code): n for code, n in worker.close_codes.items()})
        connect_errors.update(worker.connect_errors)
    seconds = config.duration
    replies, deliveries = window["replies"], window["deliveries"]
    frames = window["frames_in"] + window["frames_out"]
    tester_cpu = sum(worker.cpu_window_s for worker in workers)
    pids = config.server_pids
    server: dict[str, Any] = {"pid": pids[0] if pids else None}
    if len(pids) > 1:
        server["pids"] = list(pids)  # CPU and RSS below are sums over all of them
    database: dict[str, Any] = {"pid": config.db_pid}
    broker: dict[str, Any] = {"pid": config.broker_pid}
    machine: dict[str, Any] = {"cpus": os.cpu_count()}
    if result.cpu is not None:
        start, end = result.cpu
        server_cpu = _delta(start.server_s, end.server_s)
        db_cpu = _delta(start.database_s, end.database_s)
        broker_cpu = _delta(start.broker_s, end.broker_s)
        process = end.machine_process_s - start.machine_process_s
        irq = end.machine_irq_s - start.machine_irq_s
        steal = end.machine_steal_s - start.machine_steal_s
        total = end.machine_total_s - start.machine_total_s
        server |= {
            "cpu_s": server_cpu,
            "cpu_percent_of_core": None
            if server_cpu is None
            else round(server_cpu / seconds * 100, 1),
            "cpu_us_per_message": _per(server_cpu, replies),
            "cpu_us_per_delivery": _per(server_cpu, deliveries),
        }
        database |= {"cpu_s": db_cpu, "cpu_us_per_message": _per(db_cpu, replies)}
        broker |= {"cpu_s": broker_cpu, "cpu_us_per_message": _per(broker_cpu, replies)}
        if total:
            machine["busy_percent"] = round((process + irq + steal) / total * 100, 1)
            machine["softirq_percent"] = round(irq / total * 100, 1)
            machine["steal_percent"] = round(steal / total * 100, 1)
        # Process CPU time not spent by the server, its database, the broker or the tester:
        # other load on the machine, which the numbers above then share the cores with.
        ours = tester_cpu + (server_cpu or 0.0) + (db_cpu or 0.0) + (broker_cpu or 0.0)
        machine["other_cpu_s"] = round(max(0.0, process - ours), 2)
    rss = result.rss
    server["rss_bytes"] = dict(rss)
    connected = sum(worker.connected for worker in workers)
    if rss.get("before") and rss.get("end") and connected:
        server["rss_per_socket_bytes"] = round((rss["end"] - rss["before"]) / connected)  # type: ignore[operator]
    sockets: dict[str, Any] = {
        "planned": len(result.provisioned.accounts) * config.sockets_per_user,
        "connected": connected,
        "connect_errors": dict(connect_errors),
        "connect_us": summarize(merge(w.connect_us for w in workers)),
    }
    if config.reconnect:
        sockets["reconnects"] = {
            "reconnect_us": summarize(merge(w.reconnect_us for w in workers)),
            # send→delivery between sockets never closed, sent during the reconnects
            "others_delivery_us": summarize(
                others_during_reconnects(
                    (w.delivery_log for w in workers),
                    set().union(*(w.closed_users for w in workers)),
                    min(w.first_close_ns for w in workers),
                    max(w.last_rejoin_ns for w in workers),
                )
            ),
            "failed_attempts": totals["reconnect_failures"],
            "failures": dict(sum((Counter(w.reconnect_errors) for w in workers), Counter())),
            "not_resumed": totals["resume_failures"],
            "resent": totals["resent"],
        }
    if len(config.socket_urls) > 1:
        sockets["per_node"] = {
            url: sum(w.connected_per_node[node] for w in workers)
            for node, url in enumerate(config.socket_urls)
        }
    data: dict[str, Any] = {
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "password"},
        "setup": {
            "users": len(result.provisioned.accounts),
            "users_created": result.provisioned.users_created,
            "groups": len(result.provisioned.conversations),
            "seconds": round(result.provisioned.seconds, 2),
            "http_429": result.http_429,
        },
        "sockets": sockets,
        "window_s": seconds,
        "totals": dict(totals),
        "window": dict(window),
        "rates": {
            "messages_per_s": round(replies / seconds, 1),
            "deliveries_per_s": round(deliveries / seconds, 1),
            "commands_per_s": round(window["frames_out"] / seconds, 1),
            # --mix: of the persisted entries, the changes (edits, deletions, reactions)
            "changes_per_s": round(window.get("changes", 0) / seconds, 1),
            "change_events_per_s": round(window.get("change_events", 0) / seconds, 1),
        },
        "latency_us": {
            "send_to_reply": summarize(merge(w.reply_us for w in workers)),
            "send_to_delivery": summarize(merge(w.delivery_us for w in workers)),
        },
        "errors": dict(errors),
        "close_codes": dict(closes),
        "tester": {
            "procs": len(workers),
            "cpu_s": round(tester_cpu, 3),
            "frames": frames,
            "cpu_us_per_frame": _per(tester_cpu, frames),
        },
        "server": server,
        "database": database,
        "machine": machine,
        "verification": result.verification.to_json(),
    }
    if config.broker_pid is not None:
        data["broker"] = broker
    return data


def _ms(summary: dict[str, float], key: str) -> str:
    return f"{summary[key] / 1000:.1f}" if summary.get("count") else "-"


def _latency_row(name: str, summary: dict[str, float]) -> str:
    cells = [_ms(summary, key) for key in ("p50", "p90", "p99", "p99.9", "max")]
    return f"  {name:<18}{summary.get('count', 0):>10,}" + "".join(f"{c:>9}" for c in cells)


def _codes(counts: dict[str, int]) -> str:
    return ", ".join(f"{code}: {n:,}" for code, n in sorted(counts.items())) or "none"


def _num(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:,.1f}{unit}"


def summary_text(data: dict[str, Any]) -> str:
    """The human summary of :func:`result_json`'s output; fits one screen."""
    config, setup, sockets = data["config"], data["setup"], data["sockets"]
    rates, tester, server = data["rates"], data["tester"], data["server"]
    mode = (
        "idle"
        if config["idle"]
        else (
            f"open loop {config['rate']:,.0f} msg/s ({config['arrival']})"
            if config["rate"]
            else f"closed loop, window {config['window']}"
        )
    )
    verification = data["verification"]
    checked = verification["checked"]
    per_node: dict[str, int] = sockets.get("per_node", {})
    nodes = f"  nodes {len(per_node)}" if per_node else ""
    spread = f" ({' + '.join(f'{n:,}' for n in per_node.values())})" if per_node else ""
    pids = server.get("pids", [])
    processes = f"{len(pids)} processes: " if pids else ""
    lines = [
        f"TrustMess load test: {config['url']}  {mode}  procs {tester['procs']}{nodes}",
        f"setup      {setup['users']:,} users ({setup['users_created']:,} new), "
        f"{setup['groups']:,} groups of {config['group_size']} in {setup['seconds']} s; "
        f"HTTP 429: {setup['http_429']}",
        f"sockets    {sockets['connected']:,}/{sockets['planned']:,} connected{spread}, "
        f"connect p50 {_ms(sockets['connect_us'], 'p50')} ms p99 "
        f"{_ms(sockets['connect_us'], 'p99')} ms; failures: {_codes(sockets['connect_errors'])}",
        f"window     {data['window_s']:g} s after {config['warmup']:g} s warm-up: "
        f"{rates['messages_per_s']:,.0f} msg/s persisted, "
        f"{rates['deliveries_per_s']:,.0f} deliveries/s, {rates['commands_per_s']:,.0f} commands/s",
        *(
            [
                f"changes    {rates['changes_per_s']:,.0f}/s of the persisted entries are "
                f"changes; {rates['change_events_per_s']:,.0f} change events/s delivered; "
                f"{data['totals'].get('change_races', 0):,} reacts to a message deleted "
                "meanwhile"
            ]
            if rates.get("changes_per_s")
            else []
        ),
        f"latency ms {'samples':>18}{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}{'max':>9}",
        _latency_row("send→reply", data["latency_us"]["send_to_reply"]),
        _latency_row("send→delivery", data["latency_us"]["send_to_delivery"]),
        f"errors     {_codes(data['errors'])}",
        f"closes     {_codes(data['close_codes'])}",
        *([_reconnect_row(sockets["reconnects"])] if "reconnects" in sockets else []),
        f"server     {processes}CPU {_num(server.get('cpu_percent_of_core'), '% of a core')}, "
        f"{_num(server.get('cpu_us_per_message'), ' µs/message')}, "
        f"{_num(server.get('cpu_us_per_delivery'), ' µs/delivery')}",
    ]
    rss = server["rss_bytes"]
    if any(rss.values()):
        mib = {k: "n/a" if v is None else f"{v / 2**20:,.1f}" for k, v in rss.items()}
        per = server.get("rss_per_socket_bytes")
        lines.append(
            f"server RSS MiB: before {mib.get('before')}, connected {mib.get('connected')}, "
            f"end {mib.get('end')}; per socket {_num(None if per is None else per / 1024, ' KiB')}"
        )
    database = data["database"]
    if database.get("cpu_s") is not None:
        lines.append(f"database   {_num(database.get('cpu_us_per_message'), ' µs CPU/message')}")
    broker = data.get("broker", {})
    if broker.get("cpu_s") is not None:
        lines.append(f"broker     {_num(broker.get('cpu_us_per_message'), ' µs CPU/message')}")
    lines += [
        f"tester     {tester['cpu_s']:.1f} s CPU for {tester['frames']:,} frames: "
        f"{_num(tester['cpu_us_per_frame'], ' µs/frame')}; machine busy "
        f"{_num(data['machine'].get('busy_percent'), '%')} of {data['machine']['cpus']} CPUs",
        f"machine    softirq {_num(data['machine'].get('softirq_percent'), '%')}, stolen by the "
        f"hypervisor {_num(data['machine'].get('steal_percent'), '%')}, other processes "
        f"{_num(data['machine'].get('other_cpu_s'), ' CPU-s')}",
        f"verify     {'OK' if verification['ok'] else 'FAILED'}: "
        f"{checked['receipts']:,} socket-conversation streams, {checked['replies']:,} replies, "
        f"{checked['stored_rows']:,} stored rows "
        f"({'history read back' if checked['history_checked'] else 'history not read'})",
    ]
    for kind, count in verification["violations"].items():
        lines.append(f"  VIOLATION {kind}: {count:,}")
    lines += [f"  e.g. {example}" for example in verification["examples"][:8]]
    return "\n".join(lines)
