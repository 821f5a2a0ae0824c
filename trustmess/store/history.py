"""Reading messages: history pages and seq ranges, all keyset scans of the primary key
``(conversation_id, seq)``; results are always in ascending seq."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from trustmess.models import Message

# What store functions take: a connection of its own or one acquired from the pool.
DbConnection: TypeAlias = asyncpg.Connection | PoolConnectionProxy


def message_from_row(row: asyncpg.Record, prefix: str = "") -> Message:
    """A message from a row's columns, named ``prefix`` + the column name."""
    return Message(
        id=row[prefix + "id"],
        conversation_id=row[prefix + "conversation_id"],
        seq=row[prefix + "seq"],
        sender_id=row[prefix + "sender_id"],
        body=row[prefix + "body"],
        reply_to=row[prefix + "reply_to_seq"],
        client_msg_id=row[prefix + "client_msg_id"],
        created_at=row[prefix + "created_at"],
    )


LATEST = """
SELECT id, conversation_id, seq, sender_id, body, reply_to_seq, client_msg_id, created_at
FROM messages
WHERE conversation_id = $1
ORDER BY seq DESC LIMIT $2
"""

BEFORE = """
SELECT id, conversation_id, seq, sender_id, body, reply_to_seq, client_msg_id, created_at
FROM messages
WHERE conversation_id = $1 AND seq < $2
ORDER BY seq DESC LIMIT $3
"""

AFTER = """
SELECT id, conversation_id, seq, sender_id, body, reply_to_seq, client_msg_id, created_at
FROM messages
WHERE conversation_id = $1 AND seq > $2
ORDER BY seq LIMIT $3
"""

IN_RANGE = """
SELECT id, conversation_id, seq, sender_id, body, reply_to_seq, client_msg_id, created_at
FROM messages
WHERE conversation_id = $1 AND seq > $2 AND seq <= $3
ORDER BY seq
"""


async def latest_messages(conn: DbConnection, conversation_id: int, limit: int) -> list[Message]:
    """The newest ``limit`` messages, ascending."""
    rows = await conn.fetch(LATEST, conversation_id, limit)
    return [message_from_row(row) for row in reversed(rows)]


async def messages_before(
    conn: DbConnection, conversation_id: int, before_seq: int, limit: int
) -> list[Message]:
    """The newest ``limit`` messages with seq < ``before_seq``, ascending."""
    rows = await conn.fetch(BEFORE, conversation_id, before_seq, limit)
    return [message_from_row(row) for row in reversed(rows)]


async def messages_after(
    conn: DbConnection, conversation_id: int, after_seq: int, limit: int
) -> list[Message]:
    """The oldest ``limit`` messages with seq > ``after_seq``, ascending."""
    rows = await conn.fetch(AFTER, conversation_id, after_seq, limit)
    return [message_from_row(row) for row in rows]


async def messages_in_range(
    conn: DbConnection, conversation_id: int, after_seq: int, through_seq: int
) -> list[Message]:
    """Every message with ``after_seq`` < seq <= ``through_seq``, ascending."""
    rows = await conn.fetch(IN_RANGE, conversation_id, after_seq, through_seq)
    return [message_from_row(row) for row in rows]
