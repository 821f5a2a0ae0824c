"""Refresh tokens: stored as SHA-256 hashes, single use, rotated within a family.

A login starts a family; each refresh spends one token and stores its successor in the same
family. A spent token presented again means two parties hold the family (one of them stole
it), so the whole family is revoked.
"""

from __future__ import annotations

from dataclasses import dataclass

from trustmess.store.users import Db

USER_AGENT_MAX = 256


@dataclass(frozen=True, slots=True)
class SpentToken:
    """A refresh token's owner and family (its session): the one just spent, or looked up."""

    user_id: int
    family_id: str


async def insert_refresh_token(
    db: Db,
    *,
    user_id: int,
    token_hash: str,
    family_id: str,
    ttl_s: int,
    user_agent: str | None,
) -> None:
    """Store a new, unused refresh token valid for ``ttl_s`` seconds from now."""
    await db.execute(
        "INSERT INTO refresh_tokens (user_id, token_hash, family_id, expires_at, user_agent) "
        "VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5)",
        user_id,
        token_hash,
        family_id,
        float(ttl_s),
        None if user_agent is None else user_agent[:USER_AGENT_MAX],
    )


async def spend_refresh_token(db: Db, token_hash: str) -> SpentToken | None:
    """Mark a live token used and return it; None if unknown, spent, revoked or expired.

    One statement, so of two concurrent refreshes with the same token exactly one wins (the
    other waits for the row lock, then no longer matches ``used_at IS NULL``).
    """
    row = await db.fetchrow(
        "UPDATE refresh_tokens SET used_at = now() "
        "WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL "
        "AND expires_at > now() "
        "RETURNING user_id, family_id",
        token_hash,
    )
    return None if row is None else SpentToken(row["user_id"], row["family_id"])


async def revoke_family_if_spent(db: Db, token_hash: str) -> SpentToken | None:
    """If ``token_hash`` was already used, revoke its whole family and return whose it was.

    None when the token is unknown or was never used (expired or revoked tokens that were not
    spent are plain failures, not evidence of theft). The caller ends the family's session.
    """
    row = await db.fetchrow(
        "WITH spent AS ("
        "  SELECT user_id, family_id FROM refresh_tokens "
        "  WHERE token_hash = $1 AND used_at IS NOT NULL"
        "), revoked AS ("
        "  UPDATE refresh_tokens SET revoked_at = now() "
        "  WHERE family_id = (SELECT family_id FROM spent) AND revoked_at IS NULL"
        ") SELECT user_id, family_id FROM spent",
        token_hash,
    )
    return None if row is None else SpentToken(row["user_id"], row["family_id"])


async def family_of(db: Db, token_hash: str) -> SpentToken | None:
    """Whose token ``token_hash`` is and its family (its session), spent or not; None if
    unknown."""
    row = await db.fetchrow(
        "SELECT user_id, family_id FROM refresh_tokens WHERE token_hash = $1", token_hash
    )
    return None if row is None else SpentToken(row["user_id"], row["family_id"])


async def delete_user_tokens(db: Db, user_id: int) -> None:
    """Forget every refresh token of a deleted account (its sessions ended first)."""
    await db.execute("DELETE FROM refresh_tokens WHERE user_id = $1", user_id)
