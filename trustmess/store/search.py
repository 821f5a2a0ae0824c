"""Full-text search over the messages a user can read, newest first.

The index is ``ix_messages_conversation_id_body_tsv``: GIN (btree_gin) over the conversation and
``to_tsvector('simple', body)`` (lower-cased words, no stemming, any language). The plan is
one index probe per conversation of the user, which GIN answers by intersecting the
conversation's entries with the words': its cost follows the user's conversations, not how
common the word is, whatever parameters a cached generic plan is run with. A deleted
message's body is NULL, so it is in no result. Membership is part of the query, so a user
removed from a conversation stops finding its messages at once.
"""

from __future__ import annotations

import re

from trustmess.models import Message
from trustmess.store.history import DbConnection, message_from_row

MAX_TERMS = 8
MAX_TERM_CHARS = 64
# Letters and digits: anything else separates words, as PostgreSQL's parser mostly does.
_WORD = re.compile(r"[^\W_]+")


def search_terms(text: str) -> list[str]:
    """The words of a query, lower-cased, at most MAX_TERMS (each cut to MAX_TERM_CHARS)."""
    return [word[:MAX_TERM_CHARS] for word in _WORD.findall(text.lower())][:MAX_TERMS]


def tsquery(terms: list[str]) -> str:
    """Every term must match as a whole word. Terms are letters and digits only, so nothing
    in them is tsquery syntax.

    Not as a prefix: a prefix ("lun:*") is a partial match, which GIN answers by collecting
    every row of every word it matches before anything else is filtered; on 1M messages a
    common prefix took 200-300 ms against under 20 ms for the most common whole word
    (bench/RESULTS.md, search).
    """
    return " & ".join(terms)


def _search_sql(one_conversation: bool, before: bool) -> str:
    where = ["cm.user_id = $1", "to_tsvector('simple', m.body) @@ to_tsquery('simple', $2)"]
    if one_conversation:
        where.append("cm.conversation_id = $4")
    if before:
        where.append(f"m.id < ${5 if one_conversation else 4}")
    # Only constant fragments are joined here; the query's values are parameters.
    return (
        "SELECT m.id, m.conversation_id, m.seq, m.sender_id, m.body, m.reply_to_seq, "  # noqa: S608
        "m.client_msg_id, m.created_at, m.edited_at, m.deleted_at "
        "FROM conversation_members cm "
        "JOIN messages m ON m.conversation_id = cm.conversation_id "
        f"WHERE {' AND '.join(where)} ORDER BY m.id DESC LIMIT $3"
    )


# One statement per shape rather than "$n IS NULL OR …": each gets a plan of its own.
_SQL = {
    (one, before): _search_sql(one, before) for one in (False, True) for before in (False, True)
}


async def search_messages(
    conn: DbConnection,
    user_id: int,
    terms: list[str],
    limit: int,
    conversation_id: int | None = None,
    before_id: int | None = None,
) -> list[Message]:
    """The newest ``limit`` messages matching every term in the conversations ``user_id`` is a
    member of (only ``conversation_id``, if given), with id < ``before_id`` if given."""
    args: list[object] = [user_id, tsquery(terms), limit]
    if conversation_id is not None:
        args.append(conversation_id)
    if before_id is not None:
        args.append(before_id)
    sql = _SQL[(conversation_id is not None, before_id is not None)]
    return [message_from_row(row) for row in await conn.fetch(sql, *args)]
