"""Sessions (devices): one per login, the refresh-token family it started.

``sessions.id`` is the family id of ``refresh_tokens`` and the ``sid`` of the access tokens
issued for it. Ending a session marks it ended (erasing client and address) and revokes its
refresh tokens; the ended row stays until no access token of it can still be valid, which is
what a node rebuilds its revocation set from (``recently_ended``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from trustmess.models import format_ts
from trustmess.store.users import Db

USER_AGENT_MAX = 256
ADDRESS_MAX = 64


@dataclass(frozen=True, slots=True)
class Session:
    """A live session as its owner sees it in ``GET /auth/sessions``."""

    id: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    user_agent: str | None
    address: str | None

    def to_json(self, current_id: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": format_ts(self.created_at),
            "last_used_at": format_ts(self.last_used_at),
            "expires_at": format_ts(self.expires_at),
            "user_agent": self.user_agent,
            "address": self.address,
            "current": self.id == current_id,
        }


async def touch_session(
    db: Db,
    *,
    session_id: str,
    user_id: int,
    ttl_s: int,
    user_agent: str | None,
    address: str,
) -> bool:
    """Start a session, or note a refresh of a live one (last used, expiry, client, address).

    False when the session has ended: its refresh tokens are revoked, so only a refresh racing
    the end gets here, and it must fail. A refresh-token family without a row (issued before
    sessions existed) gets one.
    """
    status: str = await db.execute(
        "INSERT INTO sessions (id, user_id, expires_at, user_agent, address) "
        "VALUES ($1, $2, now() + make_interval(secs => $3), $4, $5) "
        "ON CONFLICT (id) DO UPDATE SET last_used_at = now(), expires_at = EXCLUDED.expires_at, "
        "user_agent = EXCLUDED.user_agent, address = EXCLUDED.address "
        "WHERE sessions.ended_at IS NULL AND sessions.user_id = EXCLUDED.user_id",
        session_id,
        user_id,
        float(ttl_s),
        None if user_agent is None else user_agent[:USER_AGENT_MAX],
        address[:ADDRESS_MAX],
    )
    return status == "INSERT 0 1"


async def live_sessions(db: Db, user_id: int) -> list[Session]:
    """The user's sessions that can still refresh, most recently used first."""
    rows = await db.fetch(
        "SELECT id, created_at, last_used_at, expires_at, user_agent, address FROM sessions "
        "WHERE user_id = $1 AND ended_at IS NULL AND expires_at > now() "
        "ORDER BY last_used_at DESC, id",
        user_id,
    )
    return [Session(**dict(row)) for row in rows]


# One statement: the sessions end and their refresh tokens are revoked together. With $2 NULL
# every session of the user ends (but the one named $3, if any) and every refresh token of the
# user is revoked (but that session's): tokens of families without a row included.
_END = """
WITH ended AS (
    UPDATE sessions SET ended_at = now(), user_agent = NULL, address = NULL
    WHERE user_id = $1 AND ended_at IS NULL
      AND ($2::text[] IS NULL OR id = ANY($2::text[]))
      AND ($3::text IS NULL OR id <> $3::text)
    RETURNING id
), revoked AS (
    UPDATE refresh_tokens SET revoked_at = now()
    WHERE user_id = $1 AND revoked_at IS NULL
      AND (family_id IN (SELECT id FROM ended)
           OR ($2::text[] IS NULL AND ($3::text IS NULL OR family_id <> $3::text)))
)
SELECT id FROM ended
"""


async def end_sessions(
    db: Db, user_id: int, session_ids: Collection[str] | None, *, keep: str | None = None
) -> list[str]:
    """End ``session_ids`` of the user (None: all of them, but ``keep``); the ids that ended.

    Ids of other users' sessions, or of sessions already ended, are not in the answer.
    """
    rows = await db.fetch(_END, user_id, None if session_ids is None else list(session_ids), keep)
    return [row["id"] for row in rows]


async def recently_ended(db: Db, within_s: float) -> list[tuple[str, float]]:
    """Sessions ended in the last ``within_s`` seconds, with when (UNIX time)."""
    rows = await db.fetch(
        "SELECT id, extract(epoch FROM ended_at)::float8 AS ended FROM sessions "
        "WHERE ended_at > now() - make_interval(secs => $1)",
        float(within_s),
    )
    return [(row["id"], row["ended"]) for row in rows]


async def purge_sessions(db: Db, older_than_s: float) -> int:
    """Delete sessions ended or expired more than ``older_than_s`` ago: no access token of
    theirs can still be valid, so they no longer matter to anyone."""
    status: str = await db.execute(
        "DELETE FROM sessions WHERE ended_at < now() - make_interval(secs => $1) "
        "OR expires_at < now() - make_interval(secs => $1)",
        float(older_than_s),
    )
    return int(status.split()[-1])


async def delete_user_sessions(db: Db, user_id: int) -> None:
    """Forget every session of a deleted account (after ending them)."""
    await db.execute("DELETE FROM sessions WHERE user_id = $1", user_id)
