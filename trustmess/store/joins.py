"""What a socket's ``join`` reads, for many joins at once: each member's position in the
conversation and, when it asked to resume, the entries it missed.

Joins arriving together share these statements (store/batching.py): after a node restart its
sockets rejoin all their conversations on the surviving nodes within a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from trustmess.store.history import DbConnection, Entry, entries_after_many


@dataclass(frozen=True, slots=True)
class JoinRequest:
    conversation_id: int
    user_id: int
    since: int | None  # resume after this seq; None: from the present


@dataclass(frozen=True, slots=True)
class JoinRead:
    last_seq: int
    read_seq: int  # the member's stored read marker
    resumed: bool  # ``since`` was given and at most the replay limit behind
    replay: list[Entry]  # the entries after ``since`` (at most the replay limit), ascending


_STATES = """
SELECT p.i, c.last_seq, m.last_read_seq
FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS p(c, u, i)
JOIN conversation_members m ON m.conversation_id = p.c AND m.user_id = p.u
JOIN conversations c ON c.id = p.c
"""


async def read_joins(
    conn: DbConnection, requests: Sequence[JoinRequest], replay_limit: int
) -> list[JoinRead | None]:
    """Each request's :class:`JoinRead`, or None where the user is not a member.

    At most three statements for any number of requests: the positions, then the missed
    messages and changes of the distinct ``(conversation, since)`` ranges to replay.
    """
    rows = await conn.fetch(
        _STATES, [r.conversation_id for r in requests], [r.user_id for r in requests]
    )
    states: list[tuple[int, int] | None] = [None] * len(requests)
    for row in rows:
        states[row["i"] - 1] = (row["last_seq"], row["last_read_seq"])
    # Members of one group rejoining after the same outage ask for the same range: read once.
    wanted: set[tuple[int, int]] = set()
    for request, state in zip(requests, states, strict=True):
        if state is None or request.since is None:
            continue
        if 0 < state[0] - request.since <= replay_limit:
            wanted.add((request.conversation_id, request.since))
    ranges = await entries_after_many(conn, list(wanted), replay_limit) if wanted else {}
    reads: list[JoinRead | None] = []
    for request, state in zip(requests, states, strict=True):
        if state is None:
            reads.append(None)
            continue
        last_seq, read_seq = state
        since = request.since
        resumed = since is not None and last_seq - since <= replay_limit
        replay = ranges.get((request.conversation_id, since), []) if since is not None else []
        reads.append(JoinRead(last_seq, read_seq, resumed, replay))
    return reads
