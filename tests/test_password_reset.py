"""Password reset by mail: the request never tells whether an account exists, the link works
once and expires, the confirm ends every session. A real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import time

import pytest

from tests.conftest import (
    TEST_PASSWORD,
    AppFactory,
    User,
    UserFactory,
    error_of,
    eventually,
    login,
    post_from,
)
from tests.mailserver import MailServer
from trustmess.appkeys import METRICS

PUBLIC_URL = "https://chat.example.org/app"
NEW_PASSWORD = "a brand new secret"


@pytest.fixture
async def mail_client(make_client: AppFactory, mail_server: MailServer):
    return await make_client(smtp_url=mail_server.url, public_url=PUBLIC_URL, mail_retry_s=0.05)


async def with_email(db, user: User, address: str, *, verified: bool = True) -> None:
    await db.execute(
        "UPDATE users SET email = $2, email_verified_at = CASE WHEN $3 THEN now() END "
        "WHERE id = $1",
        user.id,
        address,
        verified,
    )


async def request_reset(client, login_name: str):
    return await client.post("/auth/password-reset", json={"login": login_name})


async def confirm(client, token: str, password: str = NEW_PASSWORD):
    return await client.post(
        "/auth/password-reset/confirm", json={"token": token, "password": password}
    )


async def test_reset_by_mail_end_to_end(mail_client, mail_server, make_user: UserFactory, db):
    ada = await make_user()
    await with_email(db, ada, "ada@example.org")
    resp = await login(mail_client, ada.username)
    assert resp.status == 200
    old_refresh = (await resp.json())["refresh_token"]

    resp = await request_reset(mail_client, ada.username)
    assert resp.status == 202
    [mail] = await mail_server.wait_for(1)
    assert mail.recipients == ["ada@example.org"]
    assert mail.subject == "Reset your password"
    url, token = mail.link()
    assert url == f"{PUBLIC_URL}/reset-password"
    assert ada.username in mail.text

    assert (await confirm(mail_client, token)).status == 204
    # Every session ended: the refresh token from before is revoked.
    resp = await mail_client.post("/auth/refresh", json={"refresh_token": old_refresh})
    assert (await error_of(resp, 401))["code"] == "unauthenticated"
    assert (await login(mail_client, ada.username)).status == 401
    assert (await login(mail_client, ada.username, NEW_PASSWORD)).status == 200

    # Single use.
    resp = await confirm(mail_client, token, "yet another secret")
    error = await error_of(resp, 422)
    assert error["field"] == "token"
    assert (await login(mail_client, ada.username, NEW_PASSWORD)).status == 200


async def test_reset_by_email_in_any_case(mail_client, mail_server, make_user, db):
    ada = await make_user()
    await with_email(db, ada, "Ada@Example.org")
    assert (await request_reset(mail_client, "aDA@example.ORG")).status == 202
    [mail] = await mail_server.wait_for(1)
    assert mail.recipients == ["Ada@Example.org"]


async def test_the_answer_is_the_same_whatever_login_names(
    mail_client, mail_server, make_user: UserFactory, db
):
    """Known username, known address, unknown ones, an unverified address, a disabled
    account: the same status, body and headers (Date aside); only the first two mail."""
    ada = await make_user()
    await with_email(db, ada, "ada@example.org")
    unverified = await make_user()
    await with_email(db, unverified, "unverified@example.org", verified=False)
    disabled = await make_user()
    await with_email(db, disabled, "disabled@example.org")
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", disabled.id)

    answers = []
    for name in (
        ada.username,
        "ada@example.org",
        "nobody",
        "nobody@example.org",
        "unverified@example.org",
        unverified.username,
        disabled.username,
    ):
        started = time.monotonic()
        resp = await request_reset(mail_client, name)
        elapsed = time.monotonic() - started
        headers = {k: v for k, v in resp.headers.items() if k.lower() != "date"}
        answers.append((resp.status, await resp.read(), headers))
        assert elapsed < 1.0  # nothing is looked up or sent before answering
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0][0] == 202 and answers[0][1] == b""

    counters = mail_client.app[METRICS].mails
    await eventually(lambda: counters["sent"] + counters["skipped"] == 7, what="every job done")
    assert (counters["sent"], counters["skipped"]) == (2, 5)
    assert {tuple(mail.recipients) for mail in mail_server.mails} == {("ada@example.org",)}


async def test_an_expired_reset_token_is_refused(mail_client, mail_server, make_user, db):
    ada = await make_user()
    await with_email(db, ada, "ada@example.org")
    await request_reset(mail_client, ada.username)
    [mail] = await mail_server.wait_for(1)
    _, token = mail.link()
    await db.execute("UPDATE email_tokens SET expires_at = now() - interval '1 second'")
    assert (await error_of(await confirm(mail_client, token), 422))["field"] == "token"
    assert (await login(mail_client, ada.username)).status == 200  # unchanged


async def test_a_refused_password_leaves_the_token_usable(mail_client, mail_server, make_user, db):
    ada = await make_user()
    await with_email(db, ada, "ada@example.org")
    await request_reset(mail_client, ada.username)
    [mail] = await mail_server.wait_for(1)
    _, token = mail.link()
    error = await error_of(await confirm(mail_client, token, "short"), 422)
    assert error["field"] == "password"
    error = await error_of(await confirm(mail_client, token, ada.username.upper()), 422)
    assert error == {
        "code": "invalid",
        "message": "password: must not be the username",
        "field": "password",
    }
    assert (await confirm(mail_client, token)).status == 204


async def test_a_token_dies_with_a_change_of_address(mail_client, mail_server, make_user, db):
    ada = await make_user()
    await with_email(db, ada, "ada@example.org")
    await request_reset(mail_client, ada.username)
    [mail] = await mail_server.wait_for(1)
    resp = await mail_client.patch(
        "/users/me",
        json={"email": "ada@example.net", "current_password": TEST_PASSWORD},
        headers=ada.headers,
    )
    assert resp.status == 200
    assert (await error_of(await confirm(mail_client, mail.link()[1]), 422))["field"] == "token"


async def test_one_reset_spends_the_other_links(mail_client, mail_server, make_user, db):
    """Every mail sent carries a working link (a stranger's requests cannot void the owner's),
    until one of them is used."""
    ada = await make_user()
    await with_email(db, ada, "ada@example.org")
    await request_reset(mail_client, ada.username)
    await request_reset(mail_client, "ada@example.org")
    first, second = await mail_server.wait_for(2)
    assert (await confirm(mail_client, first.link()[1])).status == 204
    assert (await error_of(await confirm(mail_client, second.link()[1]), 422))["field"] == "token"


async def test_reset_mails_per_account_are_capped_silently(
    make_client: AppFactory, mail_server: MailServer, make_user, db
):
    client = await make_client(smtp_url=mail_server.url, mails_per_recipient_per_hour=2)
    ada = await make_user()
    await with_email(db, ada, "ada@example.org")
    for _ in range(4):
        assert (await request_reset(client, ada.username)).status == 202
    counters = client.app[METRICS].mails
    await eventually(lambda: counters["sent"] + counters["skipped"] == 4, what="every job done")
    assert (counters["sent"], counters["skipped"]) == (2, 2)
    # The two mails that did go out both work (the first of them here).
    assert (await confirm(client, mail_server.mails[0].link()[1])).status == 204


async def test_reset_requests_are_limited_per_address(
    make_client: AppFactory, mail_server: MailServer
):
    client = await make_client(smtp_url=mail_server.url, auth_burst=2, auth_rate_per_s=0.001)
    for _ in range(2):
        answer = await post_from(client, "127.0.0.2", "/auth/password-reset", {"login": "x"})
        assert answer.status == 202
    answer = await post_from(client, "127.0.0.2", "/auth/password-reset", {"login": "x"})
    assert answer.status == 429
    assert answer.body["error"]["code"] == "rate_limited"
    assert int(answer.headers["Retry-After"]) >= 1
    # Another address is not held back.
    answer = await post_from(client, "127.0.0.3", "/auth/password-reset", {"login": "x"})
    assert answer.status == 202


async def test_a_disabled_account_cannot_complete_a_reset(mail_client, mail_server, make_user, db):
    ada = await make_user()
    await with_email(db, ada, "ada@example.org")
    await request_reset(mail_client, ada.username)
    [mail] = await mail_server.wait_for(1)
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", ada.id)
    error = await error_of(await confirm(mail_client, mail.link()[1]), 403)
    assert error["code"] == "account_disabled"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "login"),
        ({"login": ""}, "login"),
        ({"login": 5}, "login"),
        ({"login": "x" * 255}, "login"),
        ({"login": "ada", "extra": 1}, "extra"),
    ],
)
async def test_bad_reset_requests(mail_client, payload, field):
    resp = await mail_client.post("/auth/password-reset", json=payload)
    assert (await error_of(resp, 422))["field"] == field


async def test_bad_tokens(mail_client):
    for token in ("", "x" * 129, "not-a-token"):
        resp = await confirm(mail_client, token)
        assert (await error_of(resp, 422))["field"] == "token"
        resp = await mail_client.post("/auth/verify-email", json={"token": token})
        assert (await error_of(resp, 422))["field"] == "token"
