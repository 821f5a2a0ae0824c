"""Tokens mailed to an address: email verification and password reset.

Only the SHA-256 of a token is stored. A token is spent by the statement that checks it (one
winner among concurrent uses), expires, and names the address it was mailed to, so that a
token outlives no change of the account's email.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from trustmess.store.users import Db


class Purpose(StrEnum):
    VERIFY = "verify"
    RESET = "reset"


@dataclass(frozen=True, slots=True)
class MailedToken:
    """A token: whose it is and the address it was mailed to."""

    user_id: int
    email: str


async def insert_token(
    db: Db, *, user_id: int, purpose: Purpose, token_hash: str, email: str, ttl_s: int
) -> None:
    """Store a token valid for ``ttl_s`` seconds; the user's dead tokens are swept meanwhile."""
    await db.execute(
        "DELETE FROM email_tokens WHERE user_id = $1 "
        "AND (used_at IS NOT NULL OR expires_at < now())",
        user_id,
    )
    await db.execute(
        "INSERT INTO email_tokens (user_id, purpose, token_hash, email, expires_at) "
        "VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        user_id,
        str(purpose),
        token_hash,
        email,
        float(ttl_s),
    )


async def spend_token(db: Db, token_hash: str, purpose: Purpose) -> MailedToken | None:
    """Mark a live token of ``purpose`` used and return it; None if unknown, used or expired."""
    row = await db.fetchrow(
        "UPDATE email_tokens SET used_at = now() "
        "WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now() "
        "RETURNING user_id, email",
        token_hash,
        str(purpose),
    )
    return None if row is None else MailedToken(row["user_id"], row["email"])


async def spend_user_tokens(db: Db, user_id: int, purpose: Purpose | None = None) -> None:
    """Spend every live token of the user (of ``purpose``, or all): after a reset, the other
    reset links of the user are dead; after an email change, every link mailed before."""
    await db.execute(
        "UPDATE email_tokens SET used_at = now() "
        "WHERE user_id = $1 AND used_at IS NULL AND ($2::text IS NULL OR purpose = $2)",
        user_id,
        None if purpose is None else str(purpose),
    )


async def delete_user_tokens(db: Db, user_id: int) -> None:
    """Every mailed token of the user, used or not (the account is being deleted: the rows
    hold the addresses they were mailed to)."""
    await db.execute("DELETE FROM email_tokens WHERE user_id = $1", user_id)


async def find_live_token(db: Db, token_hash: str, purpose: Purpose) -> MailedToken | None:
    """The live token of ``purpose`` with this hash, without spending it."""
    row = await db.fetchrow(
        "SELECT user_id, email FROM email_tokens "
        "WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()",
        token_hash,
        str(purpose),
    )
    return None if row is None else MailedToken(row["user_id"], row["email"])
