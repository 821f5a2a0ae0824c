"""Users: accounts, profiles, credentials and the directory search. asyncpg, $n parameters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from trustmess.models import format_ts

# Every function takes whatever runs the query: a pool for one statement, a connection inside a
# transaction.
Conn = asyncpg.Connection | PoolConnectionProxy
Db = asyncpg.Pool | Conn


@dataclass(frozen=True, slots=True)
class User:
    """An account without its password hash; each JSON form shows only what its reader may see."""

    id: int
    username: str
    display_name: str | None  # None only for a deleted account
    bio: str
    created_at: datetime
    is_active: bool
    is_admin: bool
    email: str | None = None
    email_verified: bool = False
    deleted: bool = False

    def public_json(self) -> dict[str, Any]:
        """What anyone signed in may see."""
        return {
            "id": self.id,
            "username": self.username,
            "display_name": self.display_name,
            "bio": self.bio,
            "created_at": format_ts(self.created_at),
        }

    def profile_json(self) -> dict[str, Any]:
        """What the user sees of themselves: with the email, which nobody else sees."""
        return {
            **self.public_json(),
            "is_admin": self.is_admin,
            "email": self.email,
            "email_verified": self.email_verified,
        }

    def admin_json(self) -> dict[str, Any]:
        """What an administrator sees (deleted accounts too)."""
        return {
            **self.public_json(),
            "is_active": self.is_active,
            "is_admin": self.is_admin,
            "deleted": self.deleted,
        }


@dataclass(frozen=True, slots=True)
class Credentials:
    """An account with the password hash a login or a password change checks."""

    user: User
    password_hash: str | None  # None only for a deleted account: no password matches


# The columns _user() reads: every query that builds a User selects (or returns) exactly these.
# Only this constant is ever put into the SQL text; values always go as $n parameters.
_USER_COLUMNS = (
    "id, username, display_name, bio, created_at, is_active, is_admin, email, "
    "email_verified_at, deleted_at"
)


def _user(row: asyncpg.Record) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        display_name=row["display_name"],
        bio=row["bio"],
        created_at=row["created_at"],
        is_active=row["is_active"],
        is_admin=row["is_admin"],
        email=row["email"],
        email_verified=row["email_verified_at"] is not None,
        deleted=row["deleted_at"] is not None,
    )


async def insert_user(
    db: Db,
    username: str,
    password_hash: str,
    display_name: str,
    *,
    is_admin: bool = False,
    email: str | None = None,
) -> User | None:
    """Create an account; None when the (lower-cased) username is already taken.

    The unique constraint decides, so two concurrent signups for one name cannot both succeed.
    """
    try:
        row = await db.fetchrow(
            "INSERT INTO users (username, password_hash, display_name, is_admin, email) "
            "VALUES ($1, $2, $3, $4, $5) "
            f"RETURNING {_USER_COLUMNS}",
            username,
            password_hash,
            display_name,
            is_admin,
            email,
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "uq_users_username":
            return None
        raise
    assert row is not None
    return _user(row)


async def get_user(db: Db, user_id: int) -> User | None:
    """The account with this id, active or not."""
    row = await db.fetchrow(
        f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1",
        user_id,
    )
    return None if row is None else _user(row)


async def get_credentials(db: Db, username: str) -> Credentials | None:
    """The account with this lower-cased username, and its password hash."""
    row = await db.fetchrow(
        f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE username = $1",
        username,
    )
    return None if row is None else Credentials(_user(row), row["password_hash"])


async def get_credentials_by_id(db: Db, user_id: int) -> Credentials | None:
    """The account with this id, and its password hash."""
    row = await db.fetchrow(
        f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE id = $1",
        user_id,
    )
    return None if row is None else Credentials(_user(row), row["password_hash"])


async def is_active_admin(db: Db, user_id: int) -> bool:
    """True when the user exists, is enabled and is an administrator."""
    value = await db.fetchval("SELECT is_admin AND is_active FROM users WHERE id = $1", user_id)
    return value is True


async def lock_live_user(db: Db, user_id: int) -> User | None:
    """The account, not deleted, locked until the end of the transaction; None otherwise.

    NO KEY UPDATE: a message insert's foreign-key check (KEY SHARE) on the row does not wait
    for it, so a batch holding conversation locks never queues behind this.
    """
    row = await db.fetchrow(
        f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL FOR NO KEY UPDATE",
        user_id,
    )
    return None if row is None else _user(row)


async def other_active_admins(db: Db, user_id: int) -> int:
    """How many active administrators there are besides ``user_id``.

    Every administrator row is locked (in id order, so concurrent callers queue instead of
    deadlocking): of two administrators removing themselves at once, the second sees the first
    gone.
    """
    count: int = await db.fetchval(
        "SELECT count(*) FROM ("
        "  SELECT id FROM users WHERE is_admin AND is_active ORDER BY id FOR NO KEY UPDATE"
        ") AS admins WHERE id <> $1",
        user_id,
    )
    return count


async def tombstone_user(db: Db, user_id: int) -> None:
    """Turn a deleted account into its tombstone: no password, no profile, disabled for good.

    The row and the username stay, so ids in message history resolve and nobody can sign up
    under the deleted user's name.
    """
    await db.execute(
        "UPDATE users SET deleted_at = now(), is_active = false, is_admin = false, "
        "password_hash = NULL, display_name = NULL, bio = '', email = NULL, "
        "email_verified_at = NULL, last_seen = NULL, updated_at = now() WHERE id = $1",
        user_id,
    )


async def disabled_among(db: Db, user_ids: list[int]) -> list[int]:
    """Which of ``user_ids`` are disabled (or gone)."""
    rows = await db.fetch(
        "SELECT u.id FROM unnest($1::bigint[]) AS u(id) "
        "WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = u.id AND is_active)",
        user_ids,
    )
    return [row["id"] for row in rows]


async def update_profile(
    db: Db, user_id: int, *, display_name: str | None, bio: str | None
) -> User | None:
    """Set the given profile fields (None keeps the stored value) and ``updated_at``."""
    row = await db.fetchrow(
        "UPDATE users "
        "SET display_name = coalesce($2, display_name), bio = coalesce($3, bio), "
        "updated_at = now() WHERE id = $1 "
        f"RETURNING {_USER_COLUMNS}",
        user_id,
        display_name,
        bio,
    )
    return None if row is None else _user(row)


async def replace_password_hash(db: Db, user_id: int, old_hash: str, new_hash: str) -> bool:
    """Swap the hash only if it is still ``old_hash``; False if it changed meanwhile."""
    status: str = await db.execute(
        "UPDATE users SET password_hash = $3, updated_at = now() "
        "WHERE id = $1 AND password_hash = $2",
        user_id,
        old_hash,
        new_hash,
    )
    return status == "UPDATE 1"


async def set_password_hash(db: Db, user_id: int, new_hash: str) -> None:
    """Replace the password hash whatever it was (a password reset: no old one to compare)."""
    await db.execute(
        "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1", user_id, new_hash
    )


async def set_email(db: Db, user_id: int, email: str | None) -> User | None:
    """Set (or with None remove) the email. The same address in another letter case keeps its
    verification; any other address starts unverified."""
    row = await db.fetchrow(
        "UPDATE users SET email = $2::text, updated_at = now(), "
        "email_verified_at = CASE WHEN lower(email) = lower($2::text) THEN email_verified_at END "
        "WHERE id = $1 "
        f"RETURNING {_USER_COLUMNS}",
        user_id,
        email,
    )
    return None if row is None else _user(row)


async def verified_owner(db: Db, email: str) -> int | None:
    """The account that verified ``email`` (in any letter case), if one did."""
    owner: int | None = await db.fetchval(
        "SELECT id FROM users WHERE lower(email) = lower($1) AND email_verified_at IS NOT NULL",
        email,
    )
    return owner


async def find_by_login(db: Db, login: str) -> User | None:
    """The account a password-reset request names: by its verified email when ``login`` has an
    ``@``, else by its username (any case). An unverified address finds nobody."""
    if "@" in login:
        row = await db.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM users "
            "WHERE lower(email) = lower($1) AND email_verified_at IS NOT NULL",
            login,
        )
    else:
        row = await db.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM users WHERE username = lower($1)",
            login,
        )
    return None if row is None else _user(row)


async def mark_email_verified(conn: Conn, user_id: int, email: str) -> bool:
    """Verify the user's email if it is still ``email`` (in any letter case: a change of case
    keeps links working); False if it changed or another
    account verified the address first. Other accounts' unverified claims of it are dropped.
    Call inside a transaction."""
    try:
        async with conn.transaction():  # a savepoint: the unique violation must not end ours
            status: str = await conn.execute(
                "UPDATE users SET email_verified_at = coalesce(email_verified_at, now()), "
                "updated_at = now() WHERE id = $1 AND lower(email) = lower($2)",
                user_id,
                email,
            )
    except asyncpg.UniqueViolationError:
        return False
    if status != "UPDATE 1":
        return False
    await conn.execute(
        "UPDATE users SET email = NULL, updated_at = now() "
        "WHERE lower(email) = lower($2) AND email_verified_at IS NULL AND id <> $1",
        user_id,
        email,
    )
    return True


async def update_flags(
    db: Db, user_id: int, *, is_active: bool | None, is_admin: bool | None
) -> User | None:
    """Set the given administrative flags (None keeps the stored value); None for an unknown
    or deleted account (a deleted account is never enabled again)."""
    row = await db.fetchrow(
        "UPDATE users "
        "SET is_active = coalesce($2, is_active), is_admin = coalesce($3, is_admin), "
        "updated_at = now() WHERE id = $1 AND deleted_at IS NULL "
        f"RETURNING {_USER_COLUMNS}",
        user_id,
        is_active,
        is_admin,
    )
    return None if row is None else _user(row)


# "Starts with $1 in any case" as ranges the prefix indexes (schema.py) answer: from the
# lower-cased prefix up to it followed by the last code point (chr(1114111), U+10FFFF). ~>=~
# and ~<~ compare code points, as those indexes do, and take parameters, so a generic plan uses
# them too (LIKE with a parameter would not). The one string this misses, a name continuing the
# prefix with U+10FFFF (a noncharacter), cannot be typed.
#
# MATERIALIZED keeps ORDER BY ... LIMIT out of the match: with it in view, the planner may walk
# every active username in order hoping to meet 21 matches soon, which for a rare prefix reads
# the whole table. The ranges read only the matches (all of them, then the top of them sorted).
_SEARCH_BY_PREFIX = f"""
WITH matches AS MATERIALIZED (
    SELECT {_USER_COLUMNS} FROM users
    WHERE is_active
      AND ((username ~>=~ lower($1::text) AND username ~<~ (lower($1::text) || chr(1114111)))
           OR (lower(display_name) ~>=~ lower($1::text)
               AND lower(display_name) ~<~ (lower($1::text) || chr(1114111))))
      AND ($2::text IS NULL OR username > $2)
)
SELECT {_USER_COLUMNS} FROM matches
ORDER BY username LIMIT $3
"""

_LIST_ALL = f"""
SELECT {_USER_COLUMNS} FROM users
WHERE is_active AND ($1::text IS NULL OR username > $1)
ORDER BY username LIMIT $2
"""


async def search_active_users(
    db: Db, prefix: str, *, after_username: str | None, limit: int
) -> list[User]:
    """Active users whose username or display name starts with ``prefix`` (any case; an empty
    prefix lists everyone).

    Ordered by username; ``after_username`` continues after the last one of a previous page.
    """
    if prefix:
        rows = await db.fetch(_SEARCH_BY_PREFIX, prefix, after_username, limit)
    else:
        rows = await db.fetch(_LIST_ALL, after_username, limit)
    return [_user(row) for row in rows]


# Administration's view: every account, deleted ones included, by username.
ADMIN_STATES = ("active", "disabled", "deleted", "admin")
_ADMIN_PAGE = f"""
SELECT {_USER_COLUMNS} FROM users
WHERE username ~>=~ lower($1::text) AND username ~<~ (lower($1::text) || chr(1114111))
  AND ($2::text IS NULL
       OR ($2 = 'active' AND is_active)
       OR ($2 = 'disabled' AND NOT is_active AND deleted_at IS NULL)
       OR ($2 = 'deleted' AND deleted_at IS NOT NULL)
       OR ($2 = 'admin' AND is_admin))
  AND ($3::text IS NULL OR username > $3)
ORDER BY username LIMIT $4
"""


async def admin_users_page(
    db: Db, prefix: str, state: str | None, *, after_username: str | None, limit: int
) -> list[User]:
    """Accounts whose username starts with ``prefix`` (any case; empty: all) in ``state`` (one
    of ADMIN_STATES, None: any), by username after ``after_username``."""
    rows = await db.fetch(_ADMIN_PAGE, prefix, state, after_username, limit)
    return [_user(row) for row in rows]
