"""``python -m trustmess createuser USERNAME [--admin] [--password-stdin]``.

The username and password pass the same checks as ``POST /auth/signup``. The password comes
from a prompt (typed twice) or, with ``--password-stdin``, from the first line of standard input.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

import asyncpg

from trustmess.auth import hash_password, require_new_password, require_username
from trustmess.errors import ApiError
from trustmess.settings import Settings
from trustmess.store.users import User, insert_user


class CreateUserError(Exception):
    """A reason to stop, printed as one line."""


def read_password(from_stdin: bool) -> str:
    """The new password: one line of standard input, or typed twice at a prompt."""
    if from_stdin:
        line = sys.stdin.readline()
        return line.removesuffix("\n").removesuffix("\r")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Password (again): ") != password:
        raise CreateUserError("the passwords do not match")
    return password


async def create_user(
    database_url: str, username: str, password: str, *, is_admin: bool, bcrypt_rounds: int
) -> User:
    """Insert the account; CreateUserError if the username is taken."""
    password_hash = await hash_password(password, bcrypt_rounds)
    conn = await asyncpg.connect(database_url)
    try:
        user = await insert_user(conn, username, password_hash, username, is_admin=is_admin)
    finally:
        await conn.close()
    if user is None:
        raise CreateUserError(f"username {username!r} is already taken")
    return user


def create_user_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run the command: 0 on success, 1 after printing one line saying what went wrong."""
    assert settings.database_url is not None
    try:
        username = require_username({"username": args.username})
        password = require_new_password(
            {"password": read_password(args.password_stdin)}, "password", username=username
        )
        user = asyncio.run(
            create_user(
                settings.database_url,
                username,
                password,
                is_admin=args.admin,
                bcrypt_rounds=settings.bcrypt_rounds,
            )
        )
    except ApiError as exc:
        print(f"trustmess: {exc.message}", file=sys.stderr)
        return 1
    except CreateUserError as exc:
        print(f"trustmess: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"trustmess: database error: {exc}", file=sys.stderr)
        return 1
    except EOFError:
        print("trustmess: no password given", file=sys.stderr)
        return 1
    role = "administrator" if user.is_admin else "user"
    print(f"created {role} {user.username!r} (id {user.id})")
    return 0
