"""Presence benchmark: idle sockets connecting and leaving, every user with 50 contacts.

    python bench/presence.py                     # 2,000 users, scratch database on 127.0.0.1:5432
    python bench/presence.py --users 500 --quick

Creates a scratch database, migrates it, inserts the users and their contacts with SQL (the
contacts table's contract: both directions per pair; user i's contacts are the 25 ids on each
side of it, modulo the number of users), and starts one server on it (local broker). Then:

1. **connect**: every user opens a socket (``--concurrency`` at a time), reads ``hello`` and
   sends ``presence`` (subscribe; its reply is the snapshot). Each connect is one presence
   change (online) delivered to the subscribed sockets of its contacts.
2. **leave**: every socket closes; after the grace each user's offline is one change.

Reported per phase: sockets/s, presence changes the server published, events the clients
received, the server's CPU per presence change (the whole connect: upgrade, token check and
presence), and its audience queries (``trustmess_presence_queries_total``: one per batch, not
one per contact). The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from server import BenchServer  # noqa: E402

from trustmess.auth import issue_access_token  # noqa: E402
from trustmess.runtime.migrate import upgrade  # noqa: E402

WAIT_S = 60.0
METRIC = re.compile(r"^(trustmess_presence_\w+|process_cpu_seconds_total) (\S+)$", re.MULTILINE)


def admin_dsn(dsn: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/postgres"))


async def provision(dsn: str, users: int, contacts: int) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        ids = [
            row["id"]
            for row in await conn.fetch(
                "INSERT INTO users (username, password_hash, display_name) "
                "SELECT 'p' || n, 'x', 'P' || n FROM generate_series(1, $1) n RETURNING id",
                users,
            )
        ]
        half = contacts // 2
        # Position-based ring: both directions of each pair come out of the offsets ±1..±half.
        await conn.execute(
            "INSERT INTO contacts (user_id, contact_id) "
            "SELECT ids[a], ids[((a - 1 + d + $2) % $2) + 1] "
            "FROM (SELECT $1::bigint[] AS ids) i, generate_series(1, $2) a, "
            "generate_series(-$3::int, $3::int) d WHERE d <> 0",
            ids,
            users,
            half,
        )
        count = await conn.fetchval("SELECT count(*) FROM contacts")
        assert count == users * 2 * half, count
    finally:
        await conn.close()
    return ids


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(url + "/metrics") as resp:
        text = await resp.text()
    return {name: float(value) for name, value in METRIC.findall(text)}


async def wait_for(
    session: aiohttp.ClientSession, url: str, name: str, value: float
) -> dict[str, float]:
    """Scrape until metric ``name`` reaches ``value`` (at most WAIT_S)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        metrics = await scrape(session, url)
        if metrics.get(name, 0) >= value or time.monotonic() > deadline:
            return metrics
        await asyncio.sleep(0.05)


class Client:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events = 0
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT and '"type":"presence"' in msg.data:
                self.events += 1


async def connect_one(
    session: aiohttp.ClientSession,
    ws_url: str,
    token: str,
    gate: asyncio.Semaphore,
    subscribe: bool,
) -> Client:
    async with gate:
        ws = await session.ws_connect(ws_url, headers={"Authorization": f"Bearer {token}"})
        hello = orjson.loads((await ws.receive()).data)
        assert hello["type"] == "hello", hello
        if not subscribe:
            return Client(ws)
        await ws.send_str('{"type":"presence","ref":1}')
        reply = orjson.loads((await ws.receive()).data)
        while reply.get("type") != "reply":  # events of contacts that came online meanwhile
            reply = orjson.loads((await ws.receive()).data)
        return Client(ws)


async def run(args: argparse.Namespace) -> None:
    dsn_base = args.dsn
    name = f"tm_presence_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn(dsn_base))
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = urlunsplit(urlsplit(dsn_base)._replace(path="/" + name))
    server: BenchServer | None = None
    try:
        await asyncio.to_thread(upgrade, dsn)
        ids = await provision(dsn, args.users, args.contacts)
        secret = secrets.token_urlsafe(48)
        server = BenchServer(
            {
                "TRUSTMESS_JWT_SECRET": secret,
                "TRUSTMESS_PRESENCE_GRACE_S": str(args.grace),
                "TRUSTMESS_POOL_MAX": "10",
            },
            database_url=dsn,
        )
        tokens = [issue_access_token(secret, uid, 3600)[0] for uid in ids]
        ws_url = server.url.replace("http", "ws", 1) + "/ws"
        gate = asyncio.Semaphore(args.concurrency)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            before = await scrape(session, server.url)
            client_cpu = time.process_time()
            started = time.perf_counter()
            clients = await asyncio.gather(
                *(connect_one(session, ws_url, t, gate, not args.no_subscribe) for t in tokens)
            )
            connected_s = time.perf_counter() - started
            after_connect = await wait_for(
                session, server.url, "trustmess_presence_changes_total", args.users
            )
            settled_s = time.perf_counter() - started
            client_cpu = time.process_time() - client_cpu
            received = sum(c.events for c in clients)
            cpu = after_connect["process_cpu_seconds_total"] - before["process_cpu_seconds_total"]
            changes = after_connect["trustmess_presence_changes_total"]
            queries = after_connect["trustmess_presence_queries_total"]
            what = "connect" if args.no_subscribe else "connect + subscribe"
            print(f"## Presence: {args.users:,} idle sockets, {args.contacts} contacts each\n")
            print("| phase | value |\n|---|---|")
            print(
                f"| {what}, {args.concurrency} at a time | {connected_s:.2f} s "
                f"({args.users / connected_s:,.0f} sockets/s) |"
            )
            print(f"| every online published | {settled_s:.2f} s |")
            print(f"| this client's CPU meanwhile (the same machine) | {client_cpu:.2f} s |")
            print(f"| presence changes (online) | {changes:,.0f} |")
            print(f"| presence events received | {received:,} |")
            print(f"| audience queries | {queries:,.0f} |")
            print(
                f"| server CPU, whole connect phase | {cpu:.2f} s "
                f"({cpu / changes * 1e6:,.0f} µs per connect and its online change) |"
            )

            before_leave = after_connect
            started = time.perf_counter()
            await asyncio.gather(*(c.ws.close() for c in clients))
            closed_s = time.perf_counter() - started
            after_leave = await wait_for(
                session, server.url, "trustmess_presence_changes_total", 2 * args.users
            )
            leave_s = time.perf_counter() - started
            cpu = (
                after_leave["process_cpu_seconds_total"] - before_leave["process_cpu_seconds_total"]
            )
            changes = (
                after_leave["trustmess_presence_changes_total"]
                - before_leave["trustmess_presence_changes_total"]
            )
            queries = (
                after_leave["trustmess_presence_queries_total"]
                - before_leave["trustmess_presence_queries_total"]
            )
            print(f"| close every socket | {closed_s:.2f} s |")
            print(f"| every offline published (grace {args.grace:g} s) | {leave_s:.2f} s |")
            print(f"| presence changes (offline) | {changes:,.0f} |")
            print(f"| audience queries (cached at connect) | {queries:,.0f} |")
            print(
                f"| server CPU, close + offline phase | {cpu:.2f} s "
                f"({cpu / max(changes, 1) * 1e6:,.0f} µs per close and its offline change) |"
            )
    finally:
        if server is not None:
            server.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dsn",
        default=os.environ.get(
            "TRUSTMESS_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--contacts", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--grace", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="200 users")
    parser.add_argument(
        "--no-subscribe", action="store_true", help="sockets do not send presence (baseline)"
    )
    args = parser.parse_args()
    if args.quick:
        args.users = 200
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
