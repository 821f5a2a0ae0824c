"""How a mail leaves the server: SMTP (aiosmtplib), or the log when no server is configured."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from trustmess.mail.letters import Letter, to_message

log = logging.getLogger("trustmess.mail")

SMTP_TIMEOUT_S = 30.0


class Transport(Protocol):
    async def send(self, letter: Letter) -> None:
        """Hand the letter on, or raise."""


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where and how to submit mail, from ``TRUSTMESS_SMTP_URL`` (already validated).

    ``smtps://`` is TLS from the first byte (port 465 by default). ``smtp://`` (port 25 by
    default) upgrades with STARTTLS when the server offers it; ``?starttls=require`` refuses to
    send without it, ``?starttls=off`` never tries. ``user:password@`` logs in (AUTH).
    """

    hostname: str
    port: int
    use_tls: bool
    start_tls: bool | None  # None: when offered
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        assert parts.hostname is not None
        starttls = parse_qs(parts.query).get("starttls", [""])[0]
        implicit = parts.scheme == "smtps"
        return cls(
            hostname=parts.hostname,
            port=parts.port or (465 if implicit else 25),
            use_tls=implicit,
            start_tls={"require": True, "off": False}.get(starttls),
            username=None if parts.username is None else unquote(parts.username),
            password=None if parts.password is None else unquote(parts.password),
        )


class SmtpTransport:
    """Submits each mail on a connection of its own (mails are rare; nothing to keep open)."""

    def __init__(self, server: SmtpServer, sender: str) -> None:
        self.server = server
        self.sender = sender

    async def send(self, letter: Letter) -> None:
        server = self.server
        await aiosmtplib.send(
            to_message(letter, self.sender),
            hostname=server.hostname,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.use_tls,
            start_tls=server.start_tls,
            timeout=SMTP_TIMEOUT_S,
        )


class LogTransport:
    """No SMTP server (the embedded default): the mail, link included, goes to the log at INFO,
    so a developer can verify an address or reset a password locally."""

    def __init__(self, sender: str) -> None:
        self.sender = sender

    async def send(self, letter: Letter) -> None:
        log.info(
            "mail not sent (no TRUSTMESS_SMTP_URL): %s to %s, subject %r%s",
            letter.kind,
            letter.to,
            letter.subject,
            "" if letter.link is None else f", link {letter.link}",
            extra={"mail": letter.kind},
        )
