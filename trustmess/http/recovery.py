"""Email verification and password reset: the mailed links and what redeems them.

* ``POST /auth/verify-email {token}``: the address the token was mailed to becomes verified,
  if it is still the account's address and no other account verified it first.
* ``POST /auth/password-reset {login}``: 202 whatever ``login`` names. The lookup (username, or
  verified email), the per-recipient cap and the mail happen afterwards in the mail queue, so
  the answer, and its timing, are the same for every ``login``. Mails go only to a verified
  address: an unverified one is a claim anyone can make (a typo, or someone else's address),
  and a reset link is the account.
* ``POST /auth/password-reset/confirm {token, password}``: the new password, then every
  session of the account ends (:func:`revoke_all_sessions`).

Tokens are ``secrets.token_urlsafe(32)``; only their SHA-256 is stored (store/emailtokens.py).
"""

from __future__ import annotations

import logging

from aiohttp import web

from trustmess.appkeys import (
    MAIL_OUTBOX,
    PASSWORDS,
    POOL,
    RESET_LIMIT_BY_ADDRESS,
    SETTINGS,
)
from trustmess.auth import account_disabled, require_new_password
from trustmess.errors import ApiError, ErrorCode, invalid, not_found, rate_limited
from trustmess.http.authn import current_user_id
from trustmess.http.clientaddr import client_key
from trustmess.http.sessions import ALL_SESSIONS, PASSWORD_RESET, end_sessions
from trustmess.http.users import no_content, read_fields
from trustmess.http.verification import (
    hash_mail_token,
    mail_allowed,
    new_mail_token,
    public_url,
    start_verification,
)
from trustmess.mail import letters
from trustmess.mail.letters import Letter
from trustmess.store import emailtokens, users
from trustmess.store.emailtokens import Purpose
from trustmess.store.users import Db, User
from trustmess.wire.emailaddress import EMAIL_MAX
from trustmess.wire.validation import require_str

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

# token_urlsafe(32) is 43 characters; anything much longer is not ours.
TOKEN_MAX = 128


def _bad_token() -> ApiError:
    return invalid("token", "is invalid, expired or already used")


async def revoke_all_sessions(app: web.Application, user_id: int) -> None:
    """End every session of the user at once, on every node (access tokens 401, sockets closed
    with 4001 ``password reset``): the one place a password reset ends them."""
    await end_sessions(app, user_id, ALL_SESSIONS, PASSWORD_RESET)


@routes.post("/auth/verify-email")
async def verify_email(request: web.Request) -> web.Response:
    """``{token}`` → 204: the address the token was mailed to is verified.

    422 ``invalid`` (field ``token``) when the token is unknown, used or expired, or the
    account's address changed since, or another account verified that address first.
    """
    data = await read_fields(request, {"token"}, {"token"})
    token_hash = hash_mail_token(require_str(data, "token", max_len=TOKEN_MAX))
    async with request.app[POOL].acquire() as conn, conn.transaction():
        spent = await emailtokens.spend_token(conn, token_hash, Purpose.VERIFY)
        if spent is None or not await users.mark_email_verified(conn, spent.user_id, spent.email):
            raise _bad_token()
    return no_content()


@routes.post("/auth/verify-email/resend")
async def resend_verification(request: web.Request) -> web.Response:
    """Authenticated → 202: a new verification link is mailed to the caller's address (earlier
    links keep working until they expire). 409 ``conflict`` without an address, or when it is
    verified already. Mails to one address are capped per hour like every mail."""
    user_id = await current_user_id(request)
    user = await users.get_user(request.app[POOL], user_id)
    if user is None:
        raise not_found("user not found")
    if user.email is None:
        raise ApiError(409, ErrorCode.CONFLICT, "you have no email address to verify")
    if user.email_verified:
        raise ApiError(409, ErrorCode.CONFLICT, "your email address is verified already")
    start_verification(request.app, user.id, user.email)
    return web.Response(status=202)


@routes.post("/auth/password-reset")
async def request_password_reset(request: web.Request) -> web.Response:
    """``{login}`` (a username or an email address) → 202, whatever it names.

    Limited per client address (429, before the body is read). If ``login`` names an active
    account with a verified address, a reset link is mailed to it, at most
    ``TRUSTMESS_MAILS_PER_RECIPIENT_PER_HOUR`` to one address (more are dropped silently;
    every mail sent carries a working link, so strangers' requests cannot keep the owner from
    resetting).
    """
    wait = request.app[RESET_LIMIT_BY_ADDRESS].take(client_key(request))
    if wait is not None:
        raise rate_limited(wait)
    data = await read_fields(request, {"login"}, {"login"})
    login = require_str(data, "login", min_len=1, max_len=EMAIL_MAX)
    app = request.app

    async def letter() -> Letter | None:
        return await _reset_letter(app, login)

    app[MAIL_OUTBOX].submit_job("reset", letter)
    return web.Response(status=202)


async def _reset_letter(app: web.Application, login: str) -> Letter | None:
    settings, pool = app[SETTINGS], app[POOL]
    user = await users.find_by_login(pool, login)
    if user is None or not user.is_active or not user.email_verified or user.email is None:
        return None
    if not mail_allowed(app, user.email):
        return None
    token, token_hash = new_mail_token()
    await emailtokens.insert_token(
        pool,
        user_id=user.id,
        purpose=Purpose.RESET,
        token_hash=token_hash,
        email=user.email,
        ttl_s=settings.reset_token_ttl_s,
    )
    return letters.password_reset(
        public_url(settings), user.email, user.username, token, settings.reset_token_ttl_s
    )


@routes.post("/auth/password-reset/confirm")
async def confirm_password_reset(request: web.Request) -> web.Response:
    """``{token, password}`` → 204: the new password is set, the account's other reset links
    die, and every session of the account ends.

    422 ``invalid``: ``token`` unknown, used or expired (or the account's address changed since
    it was mailed), or ``password`` breaks the signup rules (the token is then not spent, so
    the user can try another password). 403 ``account_disabled`` for a disabled account.
    """
    data = await read_fields(request, {"token", "password"}, {"token", "password"})
    token_hash = hash_mail_token(require_str(data, "token", max_len=TOKEN_MAX))
    pool = request.app[POOL]
    user = await _reset_target(pool, token_hash)
    password = require_new_password(data, "password", username=user.username)
    password_hash = await request.app[PASSWORDS].hash(
        client_key(request), password, request.app[SETTINGS].bcrypt_rounds
    )
    async with pool.acquire() as conn, conn.transaction():
        spent = await emailtokens.spend_token(conn, token_hash, Purpose.RESET)
        if spent is None or spent.user_id != user.id:
            raise _bad_token()  # used meanwhile
        await users.set_password_hash(conn, user.id, password_hash)
        await emailtokens.spend_user_tokens(conn, user.id, Purpose.RESET)
    await revoke_all_sessions(request.app, user.id)
    log.info("password of user %s reset by a mailed link; every session ended", user.id)
    return no_content()


async def _reset_target(pool: Db, token_hash: str) -> User:
    """The account a live reset token is for, still at the address it was mailed to."""
    found = await emailtokens.find_live_token(pool, token_hash, Purpose.RESET)
    user = None if found is None else await users.get_user(pool, found.user_id)
    if (
        found is None
        or user is None
        or user.email is None
        or user.email.lower() != found.email.lower()
        or not user.email_verified
    ):
        raise _bad_token()
    if not user.is_active:
        raise account_disabled()
    return user
