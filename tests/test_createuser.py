"""``python -m trustmess createuser``: accounts made from the command line, same rules as signup.

These tests are synchronous on purpose: ``main`` runs its own event loop (``asyncio.run``) in
the main thread, as it does from a shell.
"""

from __future__ import annotations

import asyncio
import io
import signal
import sys

import asyncpg
import pytest

from trustmess.__main__ import main
from trustmess.auth import _check_password_sync
from trustmess.runtime import createuser

PASSWORD = "a long enough password"


@pytest.fixture
def cli_env(database_url, monkeypatch) -> str:
    """Point the CLI at the test database, and undo the SIGTERM handler ``main`` installs."""
    monkeypatch.setenv("TRUSTMESS_DATABASE_URL", database_url)
    monkeypatch.setenv("TRUSTMESS_BCRYPT_ROUNDS", "4")
    previous = signal.getsignal(signal.SIGTERM)
    yield database_url
    signal.signal(signal.SIGTERM, previous)


def stdin(monkeypatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


def prompts(monkeypatch, *answers: str) -> list[str]:
    """Answer getpass prompts in order; returns the prompts shown."""
    shown: list[str] = []
    replies = iter(answers)

    def fake_getpass(prompt: str = "Password: ") -> str:
        shown.append(prompt)
        return next(replies)

    monkeypatch.setattr(createuser.getpass, "getpass", fake_getpass)
    return shown


def fetch_user(database_url: str, username: str) -> asyncpg.Record | None:
    async def fetch() -> asyncpg.Record | None:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetchrow("SELECT * FROM users WHERE username = $1", username)
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_creates_a_user_from_stdin(cli_env, monkeypatch, capsys) -> None:
    stdin(monkeypatch, PASSWORD + "\n")
    assert main(["createuser", "Alice", "--password-stdin"]) == 0
    row = fetch_user(cli_env, "alice")
    assert row is not None
    assert row["is_admin"] is False and row["is_active"] is True
    assert row["display_name"] == "alice"
    assert _check_password_sync(PASSWORD, row["password_hash"])
    out = capsys.readouterr()
    assert "alice" in out.out and PASSWORD not in out.out + out.err


def test_creates_an_admin(cli_env, monkeypatch) -> None:
    stdin(monkeypatch, PASSWORD + "\r\n")
    assert main(["createuser", "root.admin", "--admin", "--password-stdin"]) == 0
    row = fetch_user(cli_env, "root.admin")
    assert row is not None and row["is_admin"] is True
    assert _check_password_sync(PASSWORD, row["password_hash"])


def test_prompts_twice_without_password_stdin(cli_env, monkeypatch) -> None:
    shown = prompts(monkeypatch, PASSWORD, PASSWORD)
    assert main(["createuser", "bob"]) == 0
    assert len(shown) == 2
    row = fetch_user(cli_env, "bob")
    assert row is not None and _check_password_sync(PASSWORD, row["password_hash"])


def test_mismatched_prompts_fail(cli_env, monkeypatch, capsys) -> None:
    prompts(monkeypatch, PASSWORD, PASSWORD + "x")
    assert main(["createuser", "carol"]) != 0
    assert "do not match" in capsys.readouterr().err
    assert fetch_user(cli_env, "carol") is None


@pytest.mark.parametrize("username", ["ab", "has space", "x" * 33, "émile", "semi;colon"])
def test_bad_username_fails_with_one_line(cli_env, monkeypatch, capsys, username) -> None:
    stdin(monkeypatch, PASSWORD + "\n")
    assert main(["createuser", username, "--password-stdin"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "username" in err
    assert fetch_user(cli_env, username.lower()) is None


@pytest.mark.parametrize("password", ["short", "", "dave12345", "p" * 129])
def test_bad_password_fails(cli_env, monkeypatch, capsys, password) -> None:
    stdin(monkeypatch, password + "\n")
    assert main(["createuser", "dave12345", "--password-stdin"]) != 0
    assert "password" in capsys.readouterr().err
    assert fetch_user(cli_env, "dave12345") is None


def test_empty_stdin_fails(cli_env, monkeypatch) -> None:
    stdin(monkeypatch, "")
    assert main(["createuser", "erin", "--password-stdin"]) != 0
    assert fetch_user(cli_env, "erin") is None


def test_taken_username_fails(cli_env, monkeypatch, capsys) -> None:
    stdin(monkeypatch, PASSWORD + "\n")
    assert main(["createuser", "frank", "--password-stdin"]) == 0
    stdin(monkeypatch, "another password\n")
    assert main(["createuser", "FRANK", "--password-stdin"]) != 0
    assert "taken" in capsys.readouterr().err
    row = fetch_user(cli_env, "frank")
    assert row is not None and _check_password_sync(PASSWORD, row["password_hash"])


def test_unreachable_database_fails_with_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setenv("TRUSTMESS_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("TRUSTMESS_BCRYPT_ROUNDS", "4")
    previous = signal.getsignal(signal.SIGTERM)
    try:
        stdin(monkeypatch, PASSWORD + "\n")
        assert main(["createuser", "gina", "--password-stdin"]) == 3
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = capsys.readouterr().err
    assert err == (
        "trustmess: cannot use the database at 127.0.0.1:1/none: Connection refused\n"
    ), err
