"""Access and refresh tokens: forged JWTs, rotation, reuse detection, logout and revocation."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid

import jwt
import pytest

from tests.conftest import JWT_SECRET, login
from trustmess.auth import issue_access_token


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def claims_for(user_id: int, **changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + 600,
        "iss": "trustmess",
        "typ": "access",
        "jti": uuid.uuid4().hex,
        "sid": uuid.uuid4().hex,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


async def me_with(client, token: str):
    return await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})


async def new_session(client, username: str) -> dict:
    """Log in with conftest's ``login``; the tokens of the session it must open."""
    resp = await login(client, username)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def refresh(client, token: str):
    return await client.post("/auth/refresh", json={"refresh_token": token})


async def assert_refresh_refused(client, token: str) -> None:
    resp = await refresh(client, token)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthenticated"
    assert resp.headers["WWW-Authenticate"] == "Bearer"  # RFC 9110: every 401 has a challenge


# --- access tokens ------------------------------------------------------------------------


async def test_valid_token_is_accepted(client, make_user) -> None:
    user = await make_user()
    token = jwt.encode(claims_for(user.id), JWT_SECRET, algorithm="HS256")
    assert (await me_with(client, token)).status == 200


async def test_expired_token_is_token_expired(client, make_user) -> None:
    user = await make_user()
    token, _ = issue_access_token(
        JWT_SECRET, user.id, 60, now=time.time() - 3600, session_id=uuid.uuid4().hex
    )
    resp = await me_with(client, token)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert (await resp.json())["error"]["code"] == "token_expired"


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "someone-else"},
        {"typ": "refresh"},
        {"typ": None},
        {"iss": None},
        {"jti": None},
        {"sub": "not-a-number"},
        {"sub": None},
        {"sid": None},
        {"sid": "not-a-session-id"},
        {"sid": 7},
    ],
    ids=[
        "issuer",
        "typ",
        "no-typ",
        "no-iss",
        "no-jti",
        "bad-sub",
        "no-sub",
        "no-sid",
        "bad-sid",
        "int-sid",
    ],
)
async def test_tokens_with_wrong_claims_are_refused(client, make_user, changes) -> None:
    user = await make_user()
    token = jwt.encode(claims_for(user.id, **changes), JWT_SECRET, algorithm="HS256")
    resp = await me_with(client, token)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert (await resp.json())["error"]["code"] == "unauthenticated"


# Digits of other scripts are digits to str.isdigit() and int(): "\u0661" (ARABIC-INDIC DIGIT
# ONE) would be user 1. The server only ever issues canonical ASCII decimal ids.
ARABIC_INDIC = str.maketrans("0123456789", "".join(chr(0x0660 + d) for d in range(10)))
FULLWIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + d) for d in range(10)))


@pytest.mark.parametrize(
    "sub_for",
    [
        lambda uid: str(uid).translate(ARABIC_INDIC),
        lambda uid: str(uid).translate(FULLWIDTH),
        lambda uid: "0" + str(uid),
        lambda uid: f" {uid}",
        lambda uid: f"+{uid}",
        lambda uid: f"{uid}_0",
        lambda uid: "9" * 30,
        lambda uid: str(2**63),
        lambda uid: "0",
    ],
    ids=[
        "arabic-indic",
        "fullwidth",
        "leading-zero",
        "space",
        "plus",
        "underscore",
        "huge",
        "bigint-plus-one",
        "zero",
    ],
)
async def test_sub_must_be_a_canonical_ascii_id(client, make_user, sub_for) -> None:
    user = await make_user()
    token = jwt.encode(claims_for(user.id, sub=sub_for(user.id)), JWT_SECRET, algorithm="HS256")
    resp = await me_with(client, token)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthenticated"
    ws_resp = await client.get("/ws", headers={"Authorization": f"Bearer {token}"})
    assert ws_resp.status == 401


async def test_token_signed_with_another_secret_is_refused(client, make_user) -> None:
    user = await make_user()
    token = jwt.encode(claims_for(user.id), "another-secret-" + "y" * 40, algorithm="HS256")
    assert (await me_with(client, token)).status == 401


async def test_token_with_another_algorithm_is_refused(client, make_user) -> None:
    # Same secret, but the algorithm list is pinned to HS256.
    user = await make_user()
    token = jwt.encode(claims_for(user.id), JWT_SECRET, algorithm="HS384")
    assert (await me_with(client, token)).status == 401


async def test_tampered_payload_is_refused(client, make_user) -> None:
    victim = await make_user()
    attacker = await make_user()
    header, _, signature = attacker.token.split(".")
    forged = b64url(json.dumps(claims_for(victim.id)).encode())
    resp = await me_with(client, f"{header}.{forged}.{signature}")
    assert resp.status == 401
    assert (await me_with(client, attacker.token)).status == 200


async def test_alg_none_is_refused(client, make_user) -> None:
    user = await make_user()
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims_for(user.id)).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        resp = await me_with(client, token)
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "Bearer a.b.c"]
)
async def test_malformed_authorization_headers_are_401(client, header) -> None:
    headers = {} if header is None else {"Authorization": header}
    resp = await client.get("/users/me", headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"


async def test_refresh_token_is_not_an_access_token(client, make_user) -> None:
    user = await make_user()
    session = await new_session(client, user.username)
    resp = await me_with(client, session["refresh_token"])
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthenticated"


async def test_access_token_is_not_a_refresh_token(client, make_user) -> None:
    user = await make_user()
    session = await new_session(client, user.username)
    await assert_refresh_refused(client, session["access_token"])
    # Refusing it did not harm the real session.
    assert (await refresh(client, session["refresh_token"])).status == 200


# --- refresh rotation ---------------------------------------------------------------------


async def test_refresh_returns_a_new_pair(client, make_user, db) -> None:
    user = await make_user()
    session = await new_session(client, user.username)
    resp = await client.post(
        "/auth/refresh",
        json={"refresh_token": session["refresh_token"]},
        headers={"User-Agent": "phone/1.0"},
    )
    assert resp.status == 200
    fresh = await resp.json()
    assert set(fresh) == set(session)
    assert fresh["token_type"] == "bearer"
    assert fresh["user"] == session["user"]
    assert fresh["refresh_token"] != session["refresh_token"]
    assert fresh["access_token"] != session["access_token"]
    assert (await me_with(client, fresh["access_token"])).status == 200
    rows = await db.fetch("SELECT * FROM refresh_tokens ORDER BY id")
    assert len(rows) == 2
    assert rows[0]["family_id"] == rows[1]["family_id"]
    assert rows[0]["used_at"] is not None and rows[1]["used_at"] is None
    assert rows[1]["user_agent"] == "phone/1.0"


async def test_refresh_tokens_are_stored_hashed(client, make_user, db) -> None:
    user = await make_user()
    session = await new_session(client, user.username)
    stored = await db.fetchval("SELECT token_hash FROM refresh_tokens")
    assert stored == hashlib.sha256(session["refresh_token"].encode()).hexdigest()
    dump = str([dict(r) for r in await db.fetch("SELECT * FROM refresh_tokens")])
    assert session["refresh_token"] not in dump


async def test_a_refresh_token_works_once(client, make_user) -> None:
    user = await make_user()
    session = await new_session(client, user.username)
    assert (await refresh(client, session["refresh_token"])).status == 200
    await assert_refresh_refused(client, session["refresh_token"])


async def test_reuse_revokes_the_whole_family(client, make_user, db) -> None:
    user = await make_user()
    first = await new_session(client, user.username)
    other_device = await new_session(client, user.username)
    second = await (await refresh(client, first["refresh_token"])).json()
    third = await (await refresh(client, second["refresh_token"])).json()
    # The thief (or the victim) presents a spent token: the family dies, newest token included.
    await assert_refresh_refused(client, first["refresh_token"])
    await assert_refresh_refused(client, third["refresh_token"])
    family = await db.fetchval(
        "SELECT family_id FROM refresh_tokens WHERE token_hash = $1",
        hashlib.sha256(first["refresh_token"].encode()).hexdigest(),
    )
    assert await db.fetchval(
        "SELECT bool_and(revoked_at IS NOT NULL) FROM refresh_tokens WHERE family_id = $1", family
    )
    # Another login's family is untouched.
    assert (await refresh(client, other_device["refresh_token"])).status == 200


async def test_concurrent_refreshes_with_one_token_succeed_once(client, make_user) -> None:
    user = await make_user()
    session = await new_session(client, user.username)
    responses = await asyncio.gather(*(refresh(client, session["refresh_token"]) for _ in range(6)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [200, 401, 401, 401, 401, 401]
    # The losers presented a spent token, so even the winner's new token was revoked.
    winner = next(r for r in responses if r.status == 200)
    await assert_refresh_refused(client, (await winner.json())["refresh_token"])


async def test_expired_refresh_token_is_refused(client, make_user, db) -> None:
    user = await make_user()
    session = await new_session(client, user.username)
    await db.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'")
    await assert_refresh_refused(client, session["refresh_token"])


async def test_refresh_token_lifetime_comes_from_settings(make_client, make_user, db) -> None:
    client = await make_client(refresh_token_ttl_s=3600)
    user = await make_user()
    await new_session(client, user.username)
    lifetime = await db.fetchval("SELECT expires_at - created_at FROM refresh_tokens")
    assert abs(lifetime.total_seconds() - 3600) < 5


@pytest.mark.parametrize("token", ["", "x", "unknown-token-" + "z" * 30])
async def test_unknown_refresh_tokens_are_refused(client, token) -> None:
    await assert_refresh_refused(client, token)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "refresh_token"),
        ({"refresh_token": 5}, "refresh_token"),
        ({"refresh_token": "a", "b": 1}, "b"),
    ],
)
async def test_refresh_body_errors(client, body, field) -> None:
    resp = await client.post("/auth/refresh", json=body)
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == field


async def test_refresh_for_a_disabled_user_is_403(client, make_user, db) -> None:
    user = await make_user()
    session = await new_session(client, user.username)
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", user.id)
    resp = await refresh(client, session["refresh_token"])
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "account_disabled"


# --- logout -------------------------------------------------------------------------------


async def test_logout_revokes_the_family(client, make_user) -> None:
    user = await make_user()
    session = await new_session(client, user.username)
    rotated = await (await refresh(client, session["refresh_token"])).json()
    other_device = await new_session(client, user.username)
    resp = await client.post("/auth/logout", json={"refresh_token": rotated["refresh_token"]})
    assert resp.status == 204
    await assert_refresh_refused(client, rotated["refresh_token"])
    assert (await refresh(client, other_device["refresh_token"])).status == 200


async def test_logout_is_idempotent_and_quiet_about_unknown_tokens(client, make_user) -> None:
    user = await make_user()
    session = await new_session(client, user.username)
    for token in (session["refresh_token"], session["refresh_token"], "never-issued"):
        resp = await client.post("/auth/logout", json={"refresh_token": token})
        assert resp.status == 204
    await assert_refresh_refused(client, session["refresh_token"])


async def test_logout_body_is_validated(client) -> None:
    resp = await client.post("/auth/logout", json={"token": "x"})
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == "token"


async def test_logout_all_revokes_every_session(client, make_user) -> None:
    user = await make_user()
    other = await make_user()
    sessions = [await new_session(client, user.username) for _ in range(3)]
    others = await new_session(client, other.username)
    resp = await client.post("/auth/logout-all", headers=user.headers)
    assert resp.status == 204
    for session in sessions:
        await assert_refresh_refused(client, session["refresh_token"])
    assert (await refresh(client, others["refresh_token"])).status == 200


async def test_logout_all_needs_an_access_token(client, make_user) -> None:
    user = await make_user()
    session = await new_session(client, user.username)
    resp = await client.post("/auth/logout-all")
    assert resp.status == 401
    resp = await client.post(
        "/auth/logout-all", headers={"Authorization": f"Bearer {session['refresh_token']}"}
    )
    assert resp.status == 401
    assert (await refresh(client, session["refresh_token"])).status == 200
