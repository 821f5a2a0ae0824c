"""Passwords (bcrypt, off the event loop), access tokens (HS256 JWT) and refresh tokens.

Access tokens are verified with a pinned algorithm list, so a token whose header says
``alg: none`` or another algorithm is rejected whatever it claims. Refresh tokens are opaque
random strings; only their SHA-256 is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import bcrypt
import jwt

from trustmess.errors import ApiError, ErrorCode

JWT_ALGORITHMS = ["HS256"]
ISSUER = "trustmess"
ACCESS_TYP = "access"
BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The parts of a verified access token the server uses."""

    user_id: int
    expires_at: int
    jti: str


def unauthenticated(message: str = "missing or invalid access token") -> ApiError:
    return ApiError(401, ErrorCode.UNAUTHENTICATED, message, headers=dict(BEARER_CHALLENGE))


def token_expired() -> ApiError:
    return ApiError(
        401, ErrorCode.TOKEN_EXPIRED, "access token expired", headers=dict(BEARER_CHALLENGE)
    )


def issue_access_token(
    secret: str, user_id: int, ttl_s: int, now: float | None = None
) -> tuple[str, int]:
    """Return a signed access token for ``user_id`` and its expiry (unix seconds)."""
    issued = int(time.time() if now is None else now)
    expires = issued + ttl_s
    claims = {
        "sub": str(user_id),
        "iat": issued,
        "exp": expires,
        "iss": ISSUER,
        "typ": ACCESS_TYP,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHMS[0]), expires


def decode_access_token(secret: str, token: str) -> AccessClaims:
    """Verify signature, algorithm, ``exp``, ``iss`` and ``typ``; raise 401 otherwise."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=JWT_ALGORITHMS,
            issuer=ISSUER,
            options={"require": ["sub", "exp", "iat", "iss", "typ", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise token_expired() from None
    except jwt.PyJWTError:
        raise unauthenticated() from None
    sub = claims.get("sub")
    if claims.get("typ") != ACCESS_TYP or not isinstance(sub, str) or not sub.isdigit():
        raise unauthenticated()
    return AccessClaims(user_id=int(sub), expires_at=int(claims["exp"]), jti=str(claims["jti"]))


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or 401."""
    if not header:
        raise unauthenticated("missing Authorization: Bearer header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("Authorization header must be 'Bearer <token>'")
    return token.strip()


def _hash_password_sync(password: str, rounds: int) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def _check_password_sync(password: str, password_hash: str) -> bool:
    return bcrypt.checkpw(password.encode(), password_hash.encode())


async def hash_password(password: str, rounds: int) -> str:
    """bcrypt in the default executor: a hash takes ~0.25 s at cost 12."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _hash_password_sync, password, rounds)


async def verify_password(password: str, password_hash: str) -> bool:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _check_password_sync, password, password_hash)


_dummy_hashes: dict[int, str] = {}


async def burn_password_check(password: str, rounds: int) -> None:
    """Spend the time of a real check, so unknown usernames answer as slowly as wrong passwords."""
    if rounds not in _dummy_hashes:
        _dummy_hashes[rounds] = await hash_password(secrets.token_hex(8), rounds)
    await verify_password(password, _dummy_hashes[rounds])


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
