"""The server's mails, in plain text, with links built from the public URL.

Links carry the token in the URL's fragment (``#token=...``): a browser never sends a
fragment to any server, so the token stays out of access logs, proxies and ``Referer``. The
page at the link (a web client's) reads it and calls the API (protocol/README.md §11.6).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

VERIFY_PATH = "/verify-email"
RESET_PATH = "/reset-password"


@dataclass(frozen=True, slots=True)
class Letter:
    """One mail to send: ``kind`` names it in logs and metrics (never its text)."""

    kind: str
    to: str
    subject: str
    body: str
    link: str | None = None


def link(public_url: str, path: str, token: str) -> str:
    """``{public_url}{path}#token={token}`` (tokens are URL-safe base64: no escaping needed)."""
    return f"{public_url}{path}#token={token}"


def _hours(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return "1 hour" if hours == 1 else f"{hours} hours"
    minutes = max(1, seconds // 60)
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def verification(public_url: str, to: str, username: str, token: str, ttl_s: int) -> Letter:
    url = link(public_url, VERIFY_PATH, token)
    body = (
        f"Hello {username},\n\n"
        "please confirm that this is your email address for TrustMess by opening this link:\n\n"
        f"{url}\n\n"
        f"The link works once and expires in {_hours(ttl_s)}.\n"
        "If you did not ask for this, ignore this mail: nothing changes.\n"
    )
    return Letter("verify", to, "Confirm your email address", body, url)


def password_reset(public_url: str, to: str, username: str, token: str, ttl_s: int) -> Letter:
    url = link(public_url, RESET_PATH, token)
    body = (
        f"Hello {username},\n\n"
        "someone (hopefully you) asked to reset the password of your TrustMess account.\n"
        "To choose a new password, open this link:\n\n"
        f"{url}\n\n"
        f"The link works once and expires in {_hours(ttl_s)}. Setting a new password signs out\n"
        "every device signed in to your account.\n"
        "If you did not ask for this, ignore this mail: your password stays as it is.\n"
    )
    return Letter("reset", to, "Reset your password", body, url)


def address_in_use(public_url: str, to: str, username: str) -> Letter:
    """To the owner of a verified address that another account tried to claim. No link to
    act on: the claim can never be verified."""
    body = (
        f"Hello {username},\n\n"
        "someone tried to use this email address for another TrustMess account. It stays\n"
        "with your account; nothing changed.\n\n"
        f"If you forgot your password, you can reset it at {public_url}{RESET_PATH}\n"
    )
    return Letter("address_in_use", to, "Your email address was used for another account", body)


def to_message(letter: Letter, sender: str) -> EmailMessage:
    """The letter as a MIME message (text/plain, UTF-8)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = letter.to
    message["Subject"] = letter.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].rstrip(">") or None)
    message.set_content(letter.body)
    return message
