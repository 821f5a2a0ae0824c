"""Search benchmark: ``GET /messages/search``'s query on a table of 1,000,000 messages.

    python bench/search.py                       # scratch database on 127.0.0.1:5432
    python bench/search.py --dsn postgresql://postgres@127.0.0.1:5432/tm_search_bench --keep

Creates (or, with ``--keep`` and an existing one, reuses) a scratch database, migrates it, and
fills it with users, direct and group conversations and messages whose words follow a Zipf
law over a synthetic vocabulary (seeded: every run builds the same data). Then it runs the
server's own search statement (``trustmess.store.search``) for typical queries, from random
members, and prints p50/p99 per query class and one ``EXPLAIN (ANALYZE, BUFFERS)`` per class,
as Markdown for bench/RESULTS.md. The database is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import string
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trustmess.runtime.migrate import upgrade  # noqa: E402
from trustmess.store.search import _SQL, search_messages, search_terms, tsquery  # noqa: E402

SEED = 17
VOCABULARY = 30_000
ZIPF_S = 1.0


def admin_dsn(dsn: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/postgres"))


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


def vocabulary(rng: random.Random) -> list[str]:
    """Distinct pseudo-words of 3-10 letters; index = frequency rank."""
    words: dict[str, None] = {}
    while len(words) < VOCABULARY:
        length = min(10, max(3, int(rng.gauss(6, 2))))
        words.setdefault("".join(rng.choices(string.ascii_lowercase, k=length)))
    return list(words)


async def build(conn: asyncpg.Connection, args: argparse.Namespace, words: list[str]) -> None:
    rng = random.Random(SEED)
    t0 = time.monotonic()
    await conn.execute(
        "INSERT INTO users (username, password_hash, display_name) "
        "SELECT 'u' || g, 'x', 'User ' || g FROM generate_series(1, $1) g",
        args.users,
    )
    user_ids = [r["id"] for r in await conn.fetch("SELECT id FROM users ORDER BY id")]
    members: list[tuple[int, int, str]] = []
    conversations: list[tuple[str, int, str | None]] = []
    groups = args.conversations // 3
    for n in range(args.conversations):
        if n < groups:
            people = rng.sample(user_ids, rng.randint(3, 20))
            conversations.append(("group", people[0], None))
        else:
            people = rng.sample(user_ids, 2)
            conversations.append(("direct", people[0], f"{min(people)}:{max(people)}:{n}"))
        members.extend(
            (n, uid, "owner" if i == 0 and n < groups else "member") for i, uid in enumerate(people)
        )
    await conn.copy_records_to_table(
        "conversations", records=conversations, columns=["kind", "created_by", "direct_key"]
    )
    conv_ids = [r["id"] for r in await conn.fetch("SELECT id FROM conversations ORDER BY id")]
    rows = [(conv_ids[n], uid, role) for n, uid, role in members]
    await conn.copy_records_to_table(
        "conversation_members", records=rows, columns=["conversation_id", "user_id", "role"]
    )
    by_conv: dict[int, list[int]] = {}
    for cid, uid, _ in rows:
        by_conv.setdefault(cid, []).append(uid)
    print(
        f"  {args.users:,} users, {len(conv_ids):,} conversations, {len(rows):,} memberships "
        f"({time.monotonic() - t0:.1f} s)",
        flush=True,
    )

    # Messages: conversations drawn with a skew (some are busy), words by Zipf.
    weights = [1 / (rank + 1) ** ZIPF_S for rank in range(len(words))]
    cum = list(_accumulate(weights))
    conv_weights = list(_accumulate([rng.paretovariate(1.2) for _ in conv_ids]))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    await conn.execute("DROP INDEX ix_messages_conversation_id_body_tsv")
    seqs: dict[int, int] = {}
    batch: list[tuple[int, int, int, str, str, datetime]] = []
    made = 0
    while made < args.messages:
        cid = rng.choices(conv_ids, cum_weights=conv_weights)[0]
        seq = seqs[cid] = seqs.get(cid, 0) + 1
        body = " ".join(rng.choices(words, cum_weights=cum, k=rng.randint(3, 18)))
        if rng.random() < 0.3:
            body = body.capitalize() + rng.choice(["?", "!", ".", " :)"])
        at = start + timedelta(seconds=made * 10)
        batch.append((cid, seq, rng.choice(by_conv[cid]), f"b{made}", body, at))
        made += 1
        if len(batch) == 50_000 or made == args.messages:
            await conn.copy_records_to_table(
                "messages",
                records=batch,
                columns=[
                    "conversation_id",
                    "seq",
                    "sender_id",
                    "client_msg_id",
                    "body",
                    "created_at",
                ],
            )
            batch = []
            print(f"  {made:,} messages ({time.monotonic() - t0:.0f} s)", flush=True)
    await conn.executemany(
        "UPDATE conversations SET last_seq = $2 WHERE id = $1", list(seqs.items())
    )
    t1 = time.monotonic()
    # The migration's definition (schema.py), built once after the load.
    await conn.execute(
        "CREATE INDEX ix_messages_conversation_id_body_tsv ON messages "
        "USING gin (conversation_id, to_tsvector('simple'::regconfig, body))"
    )
    print(f"  GIN index built in {time.monotonic() - t1:.0f} s", flush=True)
    await conn.execute("VACUUM ANALYZE")


def _accumulate(values: list[float]) -> list[float]:
    total = 0.0
    out = []
    for value in values:
        total += value
        out.append(total)
    return out


async def query_classes(
    conn: asyncpg.Connection, words: list[str], rng: random.Random, n: int
) -> dict[str, list[tuple[int, list[str], int | None]]]:
    """(user, terms, conversation or None) samples per class; users are random members."""
    members = await conn.fetch("SELECT conversation_id, user_id FROM conversation_members")
    pairs = [(r["conversation_id"], r["user_id"]) for r in members]

    def sample(pick_terms, one_conversation: bool = False) -> list:  # type: ignore[no-untyped-def]
        out = []
        for _ in range(n):
            cid, uid = rng.choice(pairs)
            out.append((uid, pick_terms(), cid if one_conversation else None))
        return out

    def word(lo: int, hi: int) -> str:
        return words[rng.randrange(lo, hi)]

    return {
        "rare word (rank 5,000-30,000)": sample(lambda: [word(5000, 30000)]),
        "mid word (rank 500-5,000)": sample(lambda: [word(500, 5000)]),
        "common word (rank 50-500)": sample(lambda: [word(50, 500)]),
        "two words (mid + mid)": sample(lambda: [word(500, 5000), word(500, 5000)]),
        "very common word (rank 1-50)": sample(lambda: [word(0, 50)]),
        "one conversation, common word": sample(lambda: [word(50, 500)], one_conversation=True),
    }


async def measure(conn: asyncpg.Connection, samples: list, limit: int) -> list[float]:  # type: ignore[type-arg]
    times = []
    for uid, terms, cid in samples:
        t0 = time.perf_counter()
        await search_messages(conn, uid, terms, limit + 1, conversation_id=cid)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/tm_search_bench")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--conversations", type=int, default=4_000)
    parser.add_argument("--queries", type=int, default=400, help="per class")
    parser.add_argument("--limit", type=int, default=50, help="page size (the API's default)")
    parser.add_argument("--keep", action="store_true", help="reuse an existing database; keep it")
    args = parser.parse_args()
    name = database_name(args.dsn)
    words = vocabulary(random.Random(SEED))
    admin = await asyncpg.connect(admin_dsn(args.dsn))
    exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    if exists and not args.keep:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        exists = False
    if not exists:
        await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        if not exists:
            print(f"building {name}: migrating", flush=True)
            await asyncio.to_thread(upgrade, args.dsn)
            conn = await asyncpg.connect(args.dsn)
            await build(conn, args, words)
            await conn.close()
        conn = await asyncpg.connect(args.dsn)
        total = await conn.fetchval("SELECT count(*) FROM messages")
        visible = await conn.fetchval(
            "SELECT avg(n) FROM (SELECT count(*) AS n FROM conversation_members cm "
            "JOIN messages m ON m.conversation_id = cm.conversation_id GROUP BY cm.user_id) v"
        )
        per_user = await conn.fetchval(
            "SELECT avg(n) FROM (SELECT count(*) AS n FROM conversation_members GROUP BY user_id) v"
        )
        version = await conn.fetchval("SHOW server_version")
        classes = await query_classes(conn, words, random.Random(SEED + 1), args.queries)
        lines = [
            f"{total:,} messages in {args.conversations:,} conversations (a third groups of "
            f"3-20, the rest direct) of {args.users:,} users: {per_user:.1f} conversations and "
            f"{visible:,.0f} messages a user can search, on average. Words drawn from a "
            f"{VOCABULARY:,}-word vocabulary by a Zipf law (s = {ZIPF_S}), 3-18 per message. "
            f"PostgreSQL {version}, page size {args.limit}, "
            f"{args.queries} queries per class from random members, one connection, warm cache "
            "(each class run twice, the second run measured).",
            "",
            "| query | p50 (ms) | p99 (ms) | max (ms) | mean hits |",
            "|---|---|---|---|---|",
        ]
        explains = []
        for label, samples in classes.items():
            await measure(conn, samples, args.limit)  # warm-up
            times = await measure(conn, samples, args.limit)
            hits = [
                len(await search_messages(conn, uid, terms, args.limit, conversation_id=cid))
                for uid, terms, cid in samples[:50]
            ]
            lines.append(
                f"| {label} | {statistics.median(times):.2f} | {pct(times, 0.99):.2f} | "
                f"{max(times):.2f} | {statistics.mean(hits):.1f} |"
            )
            uid, terms, cid = samples[0]
            sql = _SQL[(cid is not None, False)]
            params = [uid, tsquery(search_terms(" ".join(terms))), args.limit + 1]
            if cid is not None:
                params.append(cid)
            plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, *params)
            explains.append((label, terms, "\n".join(r[0] for r in plan)))
            print(lines[-1], flush=True)
        await conn.close()
        print("\n".join(lines))
        for label, terms, plan in explains:
            print(f"\n{label}: {terms}\n```\n{plan}\n```")
    finally:
        if not args.keep:
            admin = await asyncpg.connect(admin_dsn(args.dsn))
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
