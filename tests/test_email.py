"""The account's email: set at signup or with PATCH /users/me, verified by a mailed link,
unique among verified addresses in any case, and never shown to anyone but its owner.

A real SMTP server on loopback (aiosmtpd, tests/mailserver.py) receives the mails.
"""

from __future__ import annotations

import asyncpg
import pytest

from tests.conftest import TEST_PASSWORD, AppFactory, UserFactory, error_of, eventually, login
from tests.mailserver import MailServer
from trustmess.appkeys import METRICS

PUBLIC_URL = "https://chat.example.org"


@pytest.fixture
async def mail_client(make_client: AppFactory, mail_server: MailServer):
    """The app sending through the loopback SMTP server, links under PUBLIC_URL."""
    return await make_client(smtp_url=mail_server.url, public_url=PUBLIC_URL, mail_retry_s=0.05)


async def signup(client, username: str, email: str | None) -> dict:
    payload = {"username": username, "password": TEST_PASSWORD}
    if email is not None:
        payload["email"] = email
    resp = await client.post("/auth/signup", json=payload)
    body = await resp.json()
    assert resp.status == 201, body
    return body


async def me(client, token: str) -> dict:
    resp = await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200
    return await resp.json()


async def access_token(client, username: str, password: str = TEST_PASSWORD) -> str:
    resp = await login(client, username, password)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["access_token"]


async def test_signup_with_email_mails_a_link_that_verifies_it(mail_client, mail_server) -> None:
    created = await signup(mail_client, "ada", "Ada.Lovelace@Example.org")
    assert "email" not in created  # the public profile
    token = await access_token(mail_client, "ada")
    profile = await me(mail_client, token)
    assert profile["email"] == "Ada.Lovelace@Example.org"  # kept as typed
    assert profile["email_verified"] is False

    [mail] = await mail_server.wait_for(1)
    assert mail.recipients == ["Ada.Lovelace@Example.org"]
    assert mail.subject == "Confirm your email address"
    assert mail.message.get_content_type() == "text/plain"
    url, link_token = mail.link()
    assert url == f"{PUBLIC_URL}/verify-email"

    resp = await mail_client.post("/auth/verify-email", json={"token": link_token})
    assert resp.status == 204
    assert (await me(mail_client, token))["email_verified"] is True

    # Single use.
    resp = await mail_client.post("/auth/verify-email", json={"token": link_token})
    error = await error_of(resp, 422)
    assert error["field"] == "token"
    assert "invalid, expired or already used" in error["message"]


async def test_only_the_owner_sees_the_email(mail_client, make_user: UserFactory, db) -> None:
    ada = await make_user()
    await db.execute(
        "UPDATE users SET email = 'ada@example.org', email_verified_at = now() WHERE id = $1",
        ada.id,
    )
    other = await make_user()
    resp = await mail_client.get(f"/users/{ada.id}", headers=other.headers)
    body = await resp.json()
    assert resp.status == 200
    assert "email" not in body and "email_verified" not in body
    resp = await mail_client.get("/users", params={"q": ada.username}, headers=other.headers)
    [item] = (await resp.json())["items"]
    assert "email" not in item
    assert "ada@example.org" not in await resp.text()
    assert (await me(mail_client, ada.token))["email"] == "ada@example.org"


async def test_verification_tokens_are_stored_hashed(mail_client, mail_server, db) -> None:
    await signup(mail_client, "grace", "grace@example.org")
    [mail] = await mail_server.wait_for(1)
    _, token = mail.link()
    stored = await db.fetch("SELECT token_hash, purpose, email FROM email_tokens")
    assert [(row["purpose"], row["email"]) for row in stored] == [("verify", "grace@example.org")]
    assert stored[0]["token_hash"] != token and token not in stored[0]["token_hash"]
    assert len(stored[0]["token_hash"]) == 64


async def test_an_expired_verification_token_is_refused(mail_client, mail_server, db) -> None:
    await signup(mail_client, "grace", "grace@example.org")
    [mail] = await mail_server.wait_for(1)
    _, token = mail.link()
    await db.execute("UPDATE email_tokens SET expires_at = now() - interval '1 second'")
    resp = await mail_client.post("/auth/verify-email", json={"token": token})
    assert (await error_of(resp, 422))["field"] == "token"
    assert await db.fetchval("SELECT email_verified_at FROM users") is None


async def test_changing_email_needs_the_current_password(
    mail_client, mail_server, make_user: UserFactory
) -> None:
    ada = await make_user()
    resp = await mail_client.patch(
        "/users/me", json={"email": "ada@example.org"}, headers=ada.headers
    )
    error = await error_of(resp, 422)
    assert error["field"] == "current_password"
    assert "required" in error["message"]

    resp = await mail_client.patch(
        "/users/me",
        json={"email": "ada@example.org", "current_password": "not my password"},
        headers=ada.headers,
    )
    error = await error_of(resp, 422)
    assert error == {
        "code": "invalid",
        "message": "current_password: is not your current password",
        "field": "current_password",
    }
    resp = await mail_client.patch(
        "/users/me", json={"bio": "hi", "current_password": TEST_PASSWORD}, headers=ada.headers
    )
    assert (await error_of(resp, 422))["field"] == "current_password"
    assert mail_server.mails == []

    resp = await mail_client.patch(
        "/users/me",
        json={"email": "ada@example.org", "current_password": TEST_PASSWORD, "bio": "hi"},
        headers=ada.headers,
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert (body["email"], body["email_verified"], body["bio"]) == ("ada@example.org", False, "hi")
    [mail] = await mail_server.wait_for(1)
    assert mail.recipients == ["ada@example.org"]


async def test_a_new_address_kills_the_links_mailed_to_the_old_one(
    mail_client, mail_server, db
) -> None:
    await signup(mail_client, "ada", "ada@example.org")
    [first] = await mail_server.wait_for(1)
    _, old_token = first.link()
    token = await access_token(mail_client, "ada")
    resp = await mail_client.patch(
        "/users/me",
        json={"email": "ada@example.net", "current_password": TEST_PASSWORD},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status == 200
    resp = await mail_client.post("/auth/verify-email", json={"token": old_token})
    assert (await error_of(resp, 422))["field"] == "token"
    _, second = await mail_server.wait_for(2)
    assert second.recipients == ["ada@example.net"]
    _, new_token = second.link()
    assert (await mail_client.post("/auth/verify-email", json={"token": new_token})).status == 204
    profile = await me(mail_client, token)
    assert (profile["email"], profile["email_verified"]) == ("ada@example.net", True)


async def test_a_change_of_letter_case_keeps_the_verification(mail_client, mail_server, db) -> None:
    await signup(mail_client, "ada", "ada@example.org")
    [mail] = await mail_server.wait_for(1)
    assert (
        await mail_client.post("/auth/verify-email", json={"token": mail.link()[1]})
    ).status == 204
    token = await access_token(mail_client, "ada")
    resp = await mail_client.patch(
        "/users/me",
        json={"email": "Ada@Example.org", "current_password": TEST_PASSWORD},
        headers={"Authorization": f"Bearer {token}"},
    )
    body = await resp.json()
    assert (body["email"], body["email_verified"]) == ("Ada@Example.org", True)


async def test_removing_the_email(mail_client, mail_server) -> None:
    await signup(mail_client, "ada", "ada@example.org")
    token = await access_token(mail_client, "ada")
    resp = await mail_client.patch(
        "/users/me",
        json={"email": None, "current_password": TEST_PASSWORD},
        headers={"Authorization": f"Bearer {token}"},
    )
    body = await resp.json()
    assert (body["email"], body["email_verified"]) == (None, False)


async def test_an_address_verified_elsewhere_is_answered_alike_and_its_owner_told(
    mail_client, mail_server, make_user: UserFactory, db
) -> None:
    """Claiming someone's verified address looks exactly like claiming a fresh one; the owner
    gets a notice without a link, and the claim can never be verified."""
    owner = await make_user()
    await db.execute(
        "UPDATE users SET email = 'ada@example.org', email_verified_at = now() WHERE id = $1",
        owner.id,
    )
    taker, fresh = await make_user(), await make_user()

    async def claim(user, address: str):
        resp = await mail_client.patch(
            "/users/me",
            json={"email": address, "current_password": TEST_PASSWORD},
            headers=user.headers,
        )
        body = await resp.json()
        return resp.status, {
            k: v
            for k, v in body.items()
            if k
            not in ("id", "username", "display_name", "created_at", "direct_policy", "group_policy")
        }

    assert await claim(taker, "ADA@example.ORG") == (
        200,
        {"email": "ADA@example.ORG", "email_verified": False, "bio": "", "is_admin": False},
    )
    assert await claim(fresh, "someone.new@example.org") == (
        200,
        {"email": "someone.new@example.org", "email_verified": False, "bio": "", "is_admin": False},
    )
    mails = await mail_server.wait_for(2)
    [notice] = mail_server.to("ada@example.org")
    assert notice.subject == "Your email address was used for another account"
    assert "#token=" not in notice.text
    assert mail_server.to("ADA@example.ORG") == []  # no link to the claimed address
    assert {tuple(m.recipients) for m in mails} == {
        ("ada@example.org",),
        ("someone.new@example.org",),
    }
    assert await db.fetchval("SELECT count(*) FROM email_tokens WHERE user_id = $1", taker.id) == 0

    # The database holds the line too: a second verified copy, in any case, is refused.
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute("UPDATE users SET email_verified_at = now() WHERE id = $1", taker.id)


async def test_the_first_to_verify_a_shared_claim_wins(mail_client, mail_server, db) -> None:
    """Two accounts claim one unverified address; the link opened first verifies it, the
    other claim is dropped and its link refused."""
    await signup(mail_client, "ada", "shared@example.org")
    await signup(mail_client, "bob", "Shared@Example.org")
    first, second = await mail_server.wait_for(2)
    tokens = {mail.recipients[0]: mail.link()[1] for mail in (first, second)}
    resp = await mail_client.post(
        "/auth/verify-email", json={"token": tokens["Shared@Example.org"]}
    )
    assert resp.status == 204
    resp = await mail_client.post(
        "/auth/verify-email", json={"token": tokens["shared@example.org"]}
    )
    assert (await error_of(resp, 422))["field"] == "token"
    rows = await db.fetch(
        "SELECT username, email, email_verified_at IS NOT NULL AS v FROM users ORDER BY username"
    )
    assert [(r["username"], r["email"], r["v"]) for r in rows] == [
        ("ada", None, False),
        ("bob", "Shared@Example.org", True),
    ]


@pytest.mark.parametrize(
    ("address", "complaint"),
    [
        ("", "must not be empty"),
        ("ada", "exactly one @"),
        ("ada@@example.org", "exactly one @"),
        ("a@b@example.org", "exactly one @"),
        ("@example.org", "before and after the @"),
        ("ada@", "before and after the @"),
        ("ada lovelace@example.org", "spaces or control characters"),
        ("ada@example.org\r\nBcc: x@example.org", "spaces or control characters"),
        ("ada\x7f@example.org", "spaces or control characters"),
        ("adä@example.org", "must be ASCII"),
        ("a" * 65 + "@example.org", "at most 64 characters before the @"),
        ("ada@" + "a" * 250 + ".org", "at most 254 characters"),
        ("ada..l@example.org", "single dots"),
        (".ada@example.org", "single dots"),
        ('"ada"@example.org', "single dots"),
        ("ada@localhost", "with a dot"),
        ("ada@-example.org", "labels"),
        ("ada@example..org", "labels"),
        ("ada@127.0.0.1", "not an IP address"),
        (7, "must be a string"),
    ],
)
async def test_bad_addresses_are_refused_with_the_reason(
    mail_client, mail_server, address, complaint
) -> None:
    resp = await mail_client.post(
        "/auth/signup", json={"username": "ada", "password": TEST_PASSWORD, "email": address}
    )
    error = await error_of(resp, 422)
    assert error["field"] == "email"
    assert complaint in error["message"], error


async def test_metrics_count_the_mails(mail_client, mail_server) -> None:
    await signup(mail_client, "ada", "ada@example.org")
    await mail_server.wait_for(1)
    counters = mail_client.app[METRICS].mails
    # The server has the mail a moment before the client hears its 250.
    await eventually(lambda: counters["sent"] == 1, what="the mail counted as sent")
    assert counters["queued"] == 1
    resp = await mail_client.get("/metrics")
    text = await resp.text()
    assert 'trustmess_mails_total{outcome="queued"} 1' in text
    assert 'trustmess_mails_total{outcome="sent"} 1' in text


async def test_mails_to_one_address_are_capped(make_client: AppFactory, mail_server, make_user):
    """Signups and address changes naming someone's address cannot flood that inbox: past the
    hourly cap the mail is dropped, and the requests are answered as before."""
    client = await make_client(smtp_url=mail_server.url, mails_per_recipient_per_hour=2)
    for name in ("ada", "bob", "cyd"):
        await signup(client, name, "victim@example.org")
    user = await make_user()
    resp = await client.patch(
        "/users/me",
        json={"email": "Victim@Example.org", "current_password": TEST_PASSWORD},
        headers=user.headers,
    )
    assert resp.status == 200
    counters = client.app[METRICS].mails
    await eventually(lambda: counters["sent"] + counters["skipped"] == 4, what="every job done")
    assert (counters["sent"], counters["skipped"]) == (2, 2)
    assert len(mail_server.mails) == 2


async def test_a_new_link_on_request(mail_client, mail_server, make_user: UserFactory, db):
    await signup(mail_client, "ada", "ada@example.org")
    token = await access_token(mail_client, "ada")
    auth = {"Authorization": f"Bearer {token}"}
    resp = await mail_client.post("/auth/verify-email/resend", headers=auth)
    assert resp.status == 202
    first, second = await mail_server.wait_for(2)
    assert first.link()[1] != second.link()[1]
    assert (
        await mail_client.post("/auth/verify-email", json={"token": second.link()[1]})
    ).status == 204
    resp = await mail_client.post("/auth/verify-email/resend", headers=auth)
    assert "verified already" in (await error_of(resp, 409))["message"]

    nobody = await make_user()
    resp = await mail_client.post("/auth/verify-email/resend", headers=nobody.headers)
    assert "no email address" in (await error_of(resp, 409))["message"]
    resp = await mail_client.post("/auth/verify-email/resend")
    assert (await error_of(resp, 401))["code"] == "unauthenticated"


async def test_a_change_of_letter_case_keeps_a_pending_link_working(mail_client, mail_server):
    await signup(mail_client, "ada", "ada@example.org")
    [mail] = await mail_server.wait_for(1)
    token = await access_token(mail_client, "ada")
    auth = {"Authorization": f"Bearer {token}"}
    resp = await mail_client.patch(
        "/users/me",
        json={"email": "ADA@example.org", "current_password": TEST_PASSWORD},
        headers=auth,
    )
    assert resp.status == 200
    assert (
        await mail_client.post("/auth/verify-email", json={"token": mail.link()[1]})
    ).status == 204
    profile = await me(mail_client, token)
    assert (profile["email"], profile["email_verified"]) == ("ADA@example.org", True)
