"""Mail delivery: never in the request's way, retried through an SMTP outage, bounded, logged
without secrets; without an SMTP server, written to the log with its link."""

from __future__ import annotations

import logging
import re
import time

import pytest

from tests.conftest import TEST_PASSWORD, AppFactory, UserFactory, eventually
from tests.mailserver import MailServer
from trustmess.appkeys import METRICS


async def verified(db, user, address: str) -> None:
    await db.execute(
        "UPDATE users SET email = $2, email_verified_at = now() WHERE id = $1", user.id, address
    )


async def test_an_smtp_outage_delays_mail_but_no_request(
    make_client: AppFactory, mail_server: MailServer, make_user: UserFactory, db, caplog
):
    caplog.set_level(logging.WARNING, logger="trustmess.mail")
    client = await make_client(smtp_url=mail_server.url, mail_retry_s=0.05, mail_attempts=50)
    ada = await make_user()
    await verified(db, ada, "ada@example.org")
    await mail_server.stop()

    started = time.monotonic()
    resp = await client.post("/auth/password-reset", json={"login": ada.username})
    assert resp.status == 202
    assert time.monotonic() - started < 1.0
    await eventually(
        lambda: client.app[METRICS].mails["retried"] >= 2, what="failed tries to be retried"
    )
    failure = next(r.getMessage() for r in caplog.records if "failed (attempt" in r.getMessage())
    assert "reset mail to a recipient at example.org failed (attempt 1 of 50)" in failure
    assert "SMTPConnectError" in failure

    await mail_server.start()
    [mail] = await mail_server.wait_for(1)
    assert mail.recipients == ["ada@example.org"]
    await eventually(lambda: client.app[METRICS].mails["sent"] == 1, what="the mail sent")
    # The token (and the text) never reached the log.
    _, token = mail.link()
    assert all(token not in record.getMessage() for record in caplog.records)
    assert all("ada@example.org" not in record.getMessage() for record in caplog.records)


async def test_a_full_queue_drops_and_says_so(
    make_client: AppFactory, mail_server: MailServer, make_user: UserFactory, db, caplog
):
    caplog.set_level(logging.WARNING, logger="trustmess.mail")
    client = await make_client(
        smtp_url=mail_server.url, mail_queue_max=2, mail_retry_s=60, mail_attempts=5
    )
    ada = await make_user()
    await verified(db, ada, "ada@example.org")
    await mail_server.stop()
    counters = client.app[METRICS].mails
    # The first mail holds the sender in its backoff; two more wait; the rest are dropped.
    assert (await client.post("/auth/password-reset", json={"login": ada.username})).status == 202
    await eventually(lambda: counters["retried"] == 1, what="the first mail to wait for a retry")
    for _ in range(4):
        resp = await client.post("/auth/password-reset", json={"login": "nobody"})
        assert resp.status == 202
    assert (counters["queued"], counters["dropped"]) == (3, 2)
    assert any(
        "mail queue full (2 waiting): reset mail dropped" in record.getMessage()
        for record in caplog.records
    )
    text = await (await client.get("/metrics")).text()
    assert 'trustmess_mails_total{outcome="dropped"} 2' in text


async def test_a_permanent_refusal_is_not_retried(
    make_client: AppFactory, mail_server: MailServer, make_user: UserFactory, db, caplog
):
    """A 5xx answer (here: the recipient refused) fails the mail at once, logged."""
    caplog.set_level(logging.WARNING, logger="trustmess.mail")

    async def refuse(server, session, envelope, address, options):
        return "550 no such mailbox"

    mail_server.handle_RCPT = refuse  # type: ignore[attr-defined]
    client = await make_client(smtp_url=mail_server.url, mail_retry_s=0.05)
    ada = await make_user()
    await verified(db, ada, "ada@example.org")
    await client.post("/auth/password-reset", json={"login": ada.username})
    counters = client.app[METRICS].mails
    await eventually(lambda: counters["failed"] == 1, what="the mail to fail")
    assert counters["retried"] == 0
    assert any("failed after 1 attempt(s)" in r.getMessage() for r in caplog.records)


async def test_smtp_auth_logs_in_and_keeps_the_password_out_of_logs(
    make_client: AppFactory, make_user: UserFactory, db, caplog
):
    caplog.set_level(logging.DEBUG)
    server = MailServer(login=("mailer", "s3cret-Pass"))
    await server.start()
    try:
        client = await make_client(smtp_url=server.url, mail_retry_s=0.05)
        ada = await make_user()
        await verified(db, ada, "ada@example.org")
        await client.post("/auth/password-reset", json={"login": ada.username})
        [mail] = await server.wait_for(1)
        assert server.logins == [(b"mailer", b"s3cret-Pass")]
        assert mail.sender == "noreply@localhost"
        assert str(mail.message["From"]) == "TrustMess <noreply@localhost>"
        assert all("s3cret-Pass" not in record.getMessage() for record in caplog.records)
    finally:
        await server.stop()


async def test_wrong_smtp_credentials_fail_the_mail_loudly(
    make_client: AppFactory, make_user: UserFactory, db, caplog
):
    caplog.set_level(logging.WARNING, logger="trustmess.mail")
    server = MailServer(login=("mailer", "right"))
    await server.start()
    try:
        client = await make_client(
            smtp_url=f"smtp://mailer:wr0ng-Secret@127.0.0.1:{server.port}", mail_retry_s=0.05
        )
        ada = await make_user()
        await verified(db, ada, "ada@example.org")
        await client.post("/auth/password-reset", json={"login": ada.username})
        counters = client.app[METRICS].mails
        await eventually(lambda: counters["failed"] == 1, what="the mail to fail")
        assert server.mails == []
        failure = next(r for r in caplog.records if r.levelno == logging.ERROR)
        assert "SMTPAuthenticationError" in failure.getMessage()
        assert all("wr0ng-Secret" not in r.getMessage() for r in caplog.records)
    finally:
        await server.stop()


async def test_without_smtp_the_mail_and_its_link_go_to_the_log(make_client: AppFactory, caplog):
    """The embedded default: a developer finds the link in the log and completes the flow."""
    caplog.set_level(logging.INFO, logger="trustmess.mail")
    client = await make_client(public_url="http://localhost:3000")
    resp = await client.post(
        "/auth/signup",
        json={"username": "ada", "password": TEST_PASSWORD, "email": "ada@example.org"},
    )
    assert resp.status == 201

    def logged_link() -> re.Match[str] | None:
        for record in caplog.records:
            if record.levelno == logging.INFO and record.name == "trustmess.mail":
                found = re.search(
                    r"http://localhost:3000/verify-email#token=([A-Za-z0-9_-]+)",
                    record.getMessage(),
                )
                if found:
                    return found
        return None

    found = await eventually(logged_link, what="the link in the log")
    assert "ada@example.org" in found.string
    resp = await client.post("/auth/verify-email", json={"token": found.group(1)})
    assert resp.status == 204
    # No SMTP server is no reason to be unready.
    resp = await client.get("/readyz")
    assert resp.status == 200


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://mail.example.org", "smtp://host:port"),
        ("smtp://", "smtp://host:port"),
        ("smtp://mail.example.org:99999", "port"),
        ("smtp://mail.example.org/path", "path"),
        ("smtp://mail.example.org?starttls=maybe", "require or off"),
        ("smtp://mail.example.org?tls=1", "only the starttls"),
        ("smtps://mail.example.org?starttls=require", "smtp:// only"),
    ],
)
def test_bad_smtp_urls_stop_start_up(url: str, complaint: str) -> None:
    from trustmess.settings import Settings, SettingsError

    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"TRUSTMESS_SMTP_URL": url})
    assert str(caught.value).startswith("TRUSTMESS_SMTP_URL: ")
    assert complaint in str(caught.value)


def test_smtp_urls_say_how_to_connect() -> None:
    from trustmess.mail.transport import SmtpServer

    server = SmtpServer.from_url("smtps://us%40er:p%3Ass@mail.example.org")
    assert (server.hostname, server.port, server.use_tls, server.start_tls) == (
        "mail.example.org",
        465,
        True,
        None,
    )
    assert (server.username, server.password) == ("us@er", "p:ss")
    assert "p:ss" not in repr(server)
    plain = SmtpServer.from_url("smtp://mail.example.org:587?starttls=require")
    assert (plain.port, plain.use_tls, plain.start_tls, plain.username) == (587, False, True, None)
    assert SmtpServer.from_url("smtp://h.example?starttls=off").start_tls is False
    assert SmtpServer.from_url("smtp://h.example").port == 25
