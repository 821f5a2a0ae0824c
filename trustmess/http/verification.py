"""Mailed tokens and the verification of a newly set email address (signup, PATCH /users/me).

Tokens are ``secrets.token_urlsafe(32)``; only their SHA-256 is stored (store/emailtokens.py).
"""

from __future__ import annotations

import hashlib
import logging
import secrets

from aiohttp import web

from trustmess.appkeys import MAIL_OUTBOX, MAILS_BY_RECIPIENT, POOL, SETTINGS
from trustmess.mail import letters
from trustmess.mail.letters import Letter
from trustmess.settings import Settings
from trustmess.store import emailtokens, users
from trustmess.store.emailtokens import Purpose

log = logging.getLogger(__name__)


def public_url(settings: Settings) -> str:
    """Where links in mails point: ``TRUSTMESS_PUBLIC_URL``, else this listener."""
    return settings.public_url or f"http://{settings.host}:{settings.port}"


def new_mail_token() -> tuple[str, str]:
    """A fresh token and the SHA-256 (hex) that is stored of it."""
    token = secrets.token_urlsafe(32)
    return token, hash_mail_token(token)


def hash_mail_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def mail_allowed(app: web.Application, address: str) -> bool:
    """Spend one of the address's mails this hour; False (logged) when it has none left.

    Whatever asks for mail (reset requests, signups and address changes naming someone else's
    address, claims of a verified one), one inbox gets at most this many an hour.
    """
    if app[MAILS_BY_RECIPIENT].take(address.lower()) is None:
        return True
    log.info("mail to a recipient at %s not sent: over its hourly cap", address.rpartition("@")[2])
    return False


def start_verification(app: web.Application, user_id: int, email: str) -> None:
    """Queue the mail for a newly set address: a verification link, or, when another account
    verified the address already, a notice to that account instead (the caller is answered
    the same either way, so an address's use cannot be probed). The lookup runs in the queue."""
    settings, pool = app[SETTINGS], app[POOL]

    async def letter() -> Letter | None:
        owner_id = await users.verified_owner(pool, email)
        if owner_id is not None and owner_id != user_id:
            owner = await users.get_user(pool, owner_id)
            if owner is None or owner.email is None:
                return None
            if not mail_allowed(app, owner.email):
                return None
            return letters.address_in_use(public_url(settings), owner.email, owner.username)
        user = await users.get_user(pool, user_id)
        if user is None or user.email != email or user.email_verified:
            return None  # changed again meanwhile, or this was only a change of letter case
        if not mail_allowed(app, email):
            return None
        token, token_hash = new_mail_token()
        await emailtokens.insert_token(
            pool,
            user_id=user_id,
            purpose=Purpose.VERIFY,
            token_hash=token_hash,
            email=email,
            ttl_s=settings.verify_token_ttl_s,
        )
        return letters.verification(
            public_url(settings), email, user.username, token, settings.verify_token_ttl_s
        )

    app[MAIL_OUTBOX].submit_job("verify", letter)
