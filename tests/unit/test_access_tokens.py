"""trustmess.auth.decode_access_token remembers verified tokens, and still expires them."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from trustmess import auth
from trustmess.errors import ApiError, ErrorCode

SECRET = "unit-test-secret-" + "x" * 32


def fresh_token(ttl_s: int = 60, user_id: int = 7) -> tuple[str, int]:
    return auth.issue_access_token(SECRET, user_id, ttl_s, session_id=uuid.uuid4().hex)


def test_a_remembered_token_still_expires_at_its_exp(monkeypatch: pytest.MonkeyPatch) -> None:
    token, expires = fresh_token()
    assert auth.decode_access_token(SECRET, token).user_id == 7
    hits = auth._verified.cache_info().hits
    assert auth.decode_access_token(SECRET, token).expires_at == expires
    assert auth._verified.cache_info().hits == hits + 1  # the second check was the cache's
    # From the exp second on, the remembered token is expired, as PyJWT would say.
    monkeypatch.setattr(auth.time, "time", lambda: float(expires))
    with pytest.raises(ApiError) as caught:
        auth.decode_access_token(SECRET, token)
    assert caught.value.code == ErrorCode.TOKEN_EXPIRED
    assert caught.value.status == 401


def test_a_refused_token_is_verified_in_full_every_time() -> None:
    token, _ = fresh_token()
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for _ in range(2):
        misses = auth._verified.cache_info().misses
        with pytest.raises(ApiError) as caught:
            auth.decode_access_token(SECRET, tampered)
        assert caught.value.code == ErrorCode.UNAUTHENTICATED
        assert auth._verified.cache_info().misses == misses + 1


def test_a_token_is_remembered_per_secret() -> None:
    token, _ = fresh_token()
    assert auth.decode_access_token(SECRET, token).user_id == 7
    with pytest.raises(ApiError) as caught:
        auth.decode_access_token("another-secret-" + "y" * 32, token)
    assert caught.value.code == ErrorCode.UNAUTHENTICATED


def test_an_expired_token_is_refused_before_it_is_remembered() -> None:
    claims = {
        "sub": "7",
        "iat": int(time.time()) - 120,
        "exp": int(time.time()) - 60,
        "iss": auth.ISSUER,
        "typ": auth.ACCESS_TYP,
        "jti": uuid.uuid4().hex,
        "sid": uuid.uuid4().hex,
    }
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    size = auth._verified.cache_info().currsize
    with pytest.raises(ApiError) as caught:
        auth.decode_access_token(SECRET, token)
    assert caught.value.code == ErrorCode.TOKEN_EXPIRED
    assert auth._verified.cache_info().currsize == size
