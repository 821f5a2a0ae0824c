"""A real SMTP server (aiosmtpd) on a loopback port, in the test's event loop, whose mails the
tests read. ``stop()`` and ``start()`` mid-test make an outage; the port stays the same."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import warnings
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from trustmess.cluster.supervisor import free_port

TOKEN_IN_LINK = re.compile(r"(https?://\S+?)#token=([A-Za-z0-9_-]+)")


@dataclass(frozen=True)
class Mail:
    """One mail the server received."""

    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        body: str = self.message.get_content()
        return body

    def link(self) -> tuple[str, str]:
        """(the URL before the fragment, the token) of the one link with a token."""
        found = TOKEN_IN_LINK.findall(self.text)
        assert len(found) == 1, self.text
        url, token = found[0]
        return url, token


class MailServer:
    """aiosmtpd on 127.0.0.1; with ``login`` set, it requires AUTH with that (user, password)."""

    def __init__(self, login: tuple[str, str] | None = None) -> None:
        self.port = free_port("127.0.0.1")
        self.login = login
        self.logins: list[tuple[bytes, bytes]] = []
        self.mails: list[Mail] = []
        self._arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._sessions: list[SMTP] = []

    @property
    def url(self) -> str:
        if self.login is None:
            return f"smtp://127.0.0.1:{self.port}"
        user, password = self.login
        return f"smtp://{user}:{password}@127.0.0.1:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, "127.0.0.1", self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            # Sessions still open would keep wait_closed waiting (and a client mid-mail is
            # what an outage looks like anyway).
            for session in self._sessions:
                if session.transport is not None:
                    session.transport.close()
            self._sessions.clear()
            await server.wait_closed()

    def _protocol(self) -> SMTP:
        with warnings.catch_warnings():
            # "Requiring AUTH while not requiring TLS": deliberate, on loopback only.
            warnings.filterwarnings("ignore", "Requiring AUTH", UserWarning)
            session = self._session()
        self._sessions.append(session)
        return session

    def _session(self) -> SMTP:
        return SMTP(
            self,
            hostname="mail.test",
            auth_required=self.login is not None,
            auth_require_tls=False,  # loopback only
            authenticator=self._authenticate,
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login, data.password))
        ok = self.login is not None and (data.login, data.password) == tuple(
            part.encode() for part in self.login
        )
        return AuthResult(success=ok, handled=False)  # aiosmtpd answers 235 or 535

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        async with self._arrived:
            self.mails.append(Mail(str(envelope.mail_from), list(envelope.rcpt_tos), message))
            self._arrived.notify_all()
        return "250 OK"

    async def wait_for(
        self, count: int, timeout: float = 10.0, *, to: str | None = None
    ) -> list[Mail]:
        """Wait until ``count`` mails have arrived in all (or to the address ``to``); return
        them all (those to ``to``)."""
        mails = (lambda: self.mails) if to is None else (lambda: self.to(to))
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(mails()) >= count)
        return list(mails())

    def to(self, address: str) -> list[Mail]:
        return [mail for mail in self.mails if address in mail.recipients]
