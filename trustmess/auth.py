"""Passwords (bcrypt, off the event loop), access tokens (HS256 JWT) and refresh tokens.

Passwords are pre-hashed (HMAC-SHA-256, base64) before bcrypt, which reads at most 72 bytes and
(from bcrypt 5) refuses longer input: every character of a 128-character password counts.

Access tokens are verified with a pinned algorithm list, so a token whose header says
``alg: none`` or another algorithm is rejected whatever it claims. Refresh tokens are opaque
random strings; only their SHA-256 is stored.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import math
import os
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import bcrypt
import jwt

from trustmess.errors import ApiError, ErrorCode, invalid
from trustmess.wire.validation import BIGINT_MAX, require_str

JWT_ALGORITHMS = ["HS256"]
ISSUER = "trustmess"
ACCESS_TYP = "access"
BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# Checked on the raw input before lower-casing, so no non-ASCII letter (such as the Kelvin sign,
# which str.lower() turns into "k") can slip in.
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9_.]{3,32}")
# The only ``sub`` this server issues: ``str(user_id)``, ASCII digits without a leading zero,
# at most a bigint. str.isdigit() and int() would also take U+0661 (ARABIC-INDIC DIGIT ONE) or
# the fullwidth digits as user 1, and a larger number would fail in the database.
USER_ID = re.compile(r"[1-9][0-9]{0,18}", re.ASCII)
# A session id: the refresh-token family's uuid4 hex.
SESSION_ID = re.compile(r"[0-9a-f]{32}", re.ASCII)
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_CHARS = 128


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The parts of a verified access token the server uses."""

    user_id: int
    expires_at: int
    jti: str
    # The session (device) the token was issued for: revoking it revokes the token at once.
    session_id: str


def unauthenticated(message: str = "missing or invalid access token") -> ApiError:
    return ApiError(401, ErrorCode.UNAUTHENTICATED, message, headers=dict(BEARER_CHALLENGE))


def invalid_credentials() -> ApiError:
    """The one answer for an unknown username and a wrong password alike.

    With ``WWW-Authenticate: Bearer`` like every 401 (RFC 9110 requires a challenge): the scheme
    the rest of the API expects. Not ``Basic``, which would make browsers show a login dialog.
    """
    return ApiError(
        401,
        ErrorCode.INVALID_CREDENTIALS,
        "wrong username or password",
        headers=dict(BEARER_CHALLENGE),
    )


def account_disabled() -> ApiError:
    """403 for a disabled account: only said once its password (or refresh token) checked out."""
    return ApiError(403, ErrorCode.ACCOUNT_DISABLED, "this account is disabled")


def require_username(data: Mapping[str, Any], name: str = "username") -> str:
    """A new account's username: 3-32 characters of ``A-Za-z0-9_.``, returned lower-cased."""
    value = data.get(name)
    if value is None:
        raise invalid(name, "is required")
    if not isinstance(value, str):
        raise invalid(name, "must be a string")
    if not USERNAME_PATTERN.fullmatch(value):
        raise invalid(name, "must be 3-32 characters of a-z, 0-9, '_' and '.'")
    return value.lower()


def require_new_password(data: Mapping[str, Any], name: str, *, username: str) -> str:
    """A password being set: 8-128 characters, no NUL, not the username in any case."""
    value = require_str(data, name, min_len=PASSWORD_MIN_CHARS, max_len=PASSWORD_MAX_CHARS)
    if "\x00" in value:
        raise invalid(name, "must not contain NUL characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise invalid(name, "must be valid Unicode text") from None
    if value.lower() == username.lower():
        raise invalid(name, "must not be the username")
    return value


def token_expired() -> ApiError:
    return ApiError(
        401, ErrorCode.TOKEN_EXPIRED, "access token expired", headers=dict(BEARER_CHALLENGE)
    )


def issue_access_token(
    secret: str, user_id: int, ttl_s: int, now: float | None = None, *, session_id: str
) -> tuple[str, int]:
    """Return a signed access token for ``user_id`` in session ``session_id`` and its expiry
    (unix seconds)."""
    issued = int(time.time() if now is None else now)
    expires = issued + ttl_s
    claims = {
        "sub": str(user_id),
        "iat": issued,
        "exp": expires,
        "iss": ISSUER,
        "typ": ACCESS_TYP,
        "jti": uuid.uuid4().hex,
        "sid": session_id,
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHMS[0]), expires


def decode_access_token(secret: str, token: str) -> AccessClaims:
    """Verify signature, algorithm, ``exp``, ``iss`` and ``typ``; raise 401 otherwise.

    A client sends the same token with every request until it refreshes, so verified tokens
    are remembered (:func:`_verified`); only the expiry is checked again. A token that fails
    is never remembered: every try of a bad one is verified in full.
    """
    claims = _verified(secret, token)
    # PyJWT's own test: a token is expired from its ``exp`` second on.
    if claims.expires_at <= time.time():
        raise token_expired()
    return claims


# PyJWT's decode costs about 37 µs (header and claims parsed as JSON, options merged, the key
# checked for PEM and SSH formats on every call): most of an authenticated GET's own work. A
# hit costs under 1 µs. 1,024 tokens of about 300 bytes: some 0.5 MiB at most.
@functools.lru_cache(maxsize=1024)
def _verified(secret: str, token: str) -> AccessClaims:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=JWT_ALGORITHMS,
            issuer=ISSUER,
            options={"require": ["sub", "exp", "iat", "iss", "typ", "jti", "sid"]},
        )
    except jwt.ExpiredSignatureError:
        raise token_expired() from None
    except jwt.PyJWTError:
        raise unauthenticated() from None
    sub = claims.get("sub")
    if claims.get("typ") != ACCESS_TYP or not isinstance(sub, str) or not USER_ID.fullmatch(sub):
        raise unauthenticated()
    if int(sub) > BIGINT_MAX:
        raise unauthenticated()
    # Tokens issued before sessions existed have no ``sid``: refused (the client refreshes),
    # since nothing could revoke them.
    sid = claims.get("sid")
    if not isinstance(sid, str) or not SESSION_ID.fullmatch(sid):
        raise unauthenticated()
    return AccessClaims(
        user_id=int(sub), expires_at=int(claims["exp"]), jti=str(claims["jti"]), session_id=sid
    )


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or 401."""
    if not header:
        raise unauthenticated("missing Authorization: Bearer header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("Authorization header must be 'Bearer <token>'")
    return token.strip()


# A fixed key, not a secret: it makes the pre-hash differ from a bare SHA-256, so unsalted
# SHA-256 hashes leaked by other sites cannot be fed to our bcrypt hashes ("password shucking").
# surrogatepass: input that is not valid Unicode simply fails to match instead of raising.
_PREHASH_KEY = b"trustmess-password-v1"


def _bcrypt_input(password: str) -> bytes:
    digest = hmac.new(_PREHASH_KEY, password.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return base64.b64encode(digest.digest())


def _hash_password_sync(password: str, rounds: int) -> str:
    return bcrypt.hashpw(_bcrypt_input(password), bcrypt.gensalt(rounds)).decode()


def _check_password_sync(password: str, password_hash: str) -> bool:
    return bcrypt.checkpw(_bcrypt_input(password), password_hash.encode())


# bcrypt threads: one core fewer than the machine has (at least one). The default executor's
# cpu+4 threads let a burst of logins take every core, and the event loop (every socket of the
# process) then waits its turn for tens of milliseconds; more threads than cores would not hash
# any faster anyway.
BCRYPT_THREADS = max(1, (os.cpu_count() or 2) - 1)
_HASHERS = ThreadPoolExecutor(max_workers=BCRYPT_THREADS, thread_name_prefix="bcrypt")


async def hash_password(password: str, rounds: int) -> str:
    """bcrypt off the event loop: a hash takes ~0.25 s at cost 12. Unqueued: for the command
    line; requests go through a :class:`PasswordQueue`."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_HASHERS, _hash_password_sync, password, rounds)


async def verify_password(password: str, password_hash: str) -> bool:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_HASHERS, _check_password_sync, password, password_hash)


@dataclass(slots=True, eq=False)
class _Check:
    """One bcrypt call waiting for (or on) a thread."""

    client: str
    call: Callable[[], Any]
    future: asyncio.Future[Any]
    started: bool = False


class PasswordQueue:
    """Fair, bounded access to the bcrypt threads for requests.

    bcrypt is the server's most expensive operation and anyone can ask for it (a login for any
    name costs a check: unknown names are checked against a dummy hash so that they take as
    long). Each client (address) may have ``per_client`` checks queued or running, beyond which
    it is answered 429; at most ``queue_max`` checks wait for a thread, beyond which everyone
    is answered 503. Waiting checks are served round robin by client, so a legitimate login
    waits for at most one check of each other client, not for a flood queued before it. Both
    answers carry Retry-After, estimated from the measured time of a check.
    """

    def __init__(self, *, queue_max: int, per_client: int, threads: int = BCRYPT_THREADS) -> None:
        self.queue_max = queue_max
        self.per_client = per_client
        self.threads = threads
        self.check_s = 0.25  # a moving average of one check's duration
        self._running = 0
        self._queued = 0
        # client -> its waiting checks; a client served goes to the back (dicts keep order).
        self._waiting: dict[str, deque[_Check]] = {}
        self._load: dict[str, int] = {}  # checks queued or running, per client
        self._dummy_hashes: dict[int, str] = {}

    async def hash(self, client: str, password: str, rounds: int) -> str:
        result: str = await self._run(client, _hash_password_sync, password, rounds)
        return result

    async def verify(self, client: str, password: str, password_hash: str) -> bool:
        result: bool = await self._run(client, _check_password_sync, password, password_hash)
        return result

    async def burn(self, client: str, password: str, rounds: int) -> None:
        """Spend the time of a real check (an unknown username), in the client's turn."""
        if rounds not in self._dummy_hashes:
            self._dummy_hashes[rounds] = await self.hash(client, secrets.token_hex(8), rounds)
        await self.verify(client, password, self._dummy_hashes[rounds])

    def _retry_after(self, checks: int) -> float:
        return max(1.0, checks * self.check_s / self.threads)

    async def _run(self, client: str, func: Callable[..., Any], *args: Any) -> Any:
        load = self._load.get(client, 0)
        if load >= self.per_client:
            raise ApiError(
                429,
                ErrorCode.RATE_LIMITED,
                "too many password checks from your address at once; retry later",
                headers=_retry_after_header(max(1.0, load * self.check_s)),
            )
        if self._running >= self.threads and self._queued >= self.queue_max:
            raise ApiError(
                503,
                ErrorCode.UNAVAILABLE,
                "the server is busy checking passwords; retry later",
                headers=_retry_after_header(self._retry_after(self._queued + self._running)),
            )
        loop = asyncio.get_running_loop()
        check = _Check(client, functools.partial(func, *args), loop.create_future())
        self._load[client] = load + 1
        self._waiting.setdefault(client, deque()).append(check)
        self._queued += 1
        check.future.add_done_callback(lambda _: self._abandoned(check))
        self._pump()
        return await check.future

    def _pump(self) -> None:
        while self._running < self.threads and self._waiting:
            client = next(iter(self._waiting))
            waiting = self._waiting.pop(client)
            check = waiting.popleft()
            if waiting:
                self._waiting[client] = waiting  # to the back of the round
            self._queued -= 1
            if check.future.done():  # cancelled, not yet taken out by _abandoned
                self._release(check.client)
                continue
            self._start(check)

    def _start(self, check: _Check) -> None:
        check.started = True
        self._running += 1
        started = time.monotonic()
        done = asyncio.get_running_loop().run_in_executor(_HASHERS, check.call)

        def finished(done: asyncio.Future[Any]) -> None:
            self._running -= 1
            self._release(check.client)
            self.check_s = 0.8 * self.check_s + 0.2 * (time.monotonic() - started)
            if not check.future.done():  # else the request went away meanwhile
                if done.cancelled():
                    check.future.cancel()
                elif (error := done.exception()) is not None:
                    check.future.set_exception(error)
                else:
                    check.future.set_result(done.result())
            self._pump()

        done.add_done_callback(finished)

    def _abandoned(self, check: _Check) -> None:
        """A waiting check whose request went away (cancelled) leaves the queue unchecked."""
        if check.started or not check.future.cancelled():
            return
        waiting = self._waiting.get(check.client)
        if waiting is not None and check in waiting:  # else _pump dropped it already
            waiting.remove(check)
            if not waiting:
                del self._waiting[check.client]
            self._queued -= 1
            self._release(check.client)

    def _release(self, client: str) -> None:
        load = self._load[client] - 1
        if load:
            self._load[client] = load
        else:
            del self._load[client]


def _retry_after_header(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
