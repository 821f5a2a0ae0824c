"""Signing up and logging in over HTTP: validation, errors, rate limits and off-loop bcrypt."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.conftest import TEST_PASSWORD, error_of, eventually, login, login_from, post_from
from trustmess.appkeys import LOGIN_GUARD, PASSWORDS
from trustmess.auth import _hash_password_sync


async def signup(client, username: str, password: str = TEST_PASSWORD, **extra):
    return await client.post(
        "/auth/signup", json={"username": username, "password": password, **extra}
    )


# --- signup -------------------------------------------------------------------------------


async def test_signup_returns_public_profile(client, db) -> None:
    resp = await signup(client, "Alice.B_1")
    assert resp.status == 201
    body = await resp.json()
    assert set(body) == {"id", "username", "display_name", "bio", "created_at"}
    assert body["username"] == "alice.b_1"
    assert body["display_name"] == "alice.b_1"
    assert body["bio"] == ""
    assert body["created_at"].endswith("Z")
    row = await db.fetchrow("SELECT * FROM users WHERE id = $1", body["id"])
    assert row["username"] == "alice.b_1"
    assert row["is_active"] and not row["is_admin"]
    assert row["password_hash"].startswith("$2") and TEST_PASSWORD not in row["password_hash"]


async def test_signup_with_display_name(client) -> None:
    resp = await signup(client, "bob", display_name="  Bob the Builder ")
    assert resp.status == 201
    assert (await resp.json())["display_name"] == "Bob the Builder"


async def test_signup_then_login(client) -> None:
    assert (await signup(client, "carol")).status == 201
    resp = await login(client, "carol")
    assert resp.status == 200


async def test_username_taken_case_insensitively(client) -> None:
    assert (await signup(client, "dave")).status == 201
    error = await error_of(await signup(client, "DaVe"), 409)
    assert error["code"] == "username_taken"


async def test_concurrent_signups_for_one_name_one_wins(make_client, db) -> None:
    client = await make_client(bcrypt_per_address=10)  # all five reach bcrypt at once
    responses = await asyncio.gather(*(signup(client, "erin") for _ in range(5)))
    assert sorted(r.status for r in responses) == [201, 409, 409, 409, 409]
    assert await db.fetchval("SELECT count(*) FROM users WHERE username = 'erin'") == 1


@pytest.mark.parametrize(
    "username",
    [
        "ab",
        "a" * 33,
        "has space",
        "dash-ed",
        "émile",
        "\u212aelvin",  # KELVIN SIGN lower-cases to an ASCII "k"; still refused
        "nul\x00byte",
        "",
        42,
        None,
        ["alice"],
    ],
)
async def test_signup_rejects_bad_usernames(client, username) -> None:
    resp = await client.post("/auth/signup", json={"username": username, "password": TEST_PASSWORD})
    error = await error_of(resp, 422)
    assert error["code"] == "invalid"
    assert error["field"] == "username"


async def test_username_limits_are_inclusive(client) -> None:
    assert (await signup(client, "abc")).status == 201
    assert (await signup(client, "z" * 32)).status == 201


@pytest.mark.parametrize(
    "password",
    ["short", "x" * 7, "y" * 129, "frank", "FRANK", "pass\x00word", 12345678, None],
)
async def test_signup_rejects_bad_passwords(client, password) -> None:
    resp = await client.post("/auth/signup", json={"username": "frank", "password": password})
    error = await error_of(resp, 422)
    assert error["field"] == "password"


async def test_password_equal_to_username_in_any_case_is_refused(client) -> None:
    error = await error_of(await signup(client, "longusername", "LongUserName"), 422)
    assert error["field"] == "password"
    assert "username" in error["message"]


@pytest.mark.parametrize(
    "display_name",
    ["d" * 65, "", "   ", "nul\x00", 7, ["x"], "\u202eroot", "\u200b", "\x1b[1mbold"],
)
async def test_signup_rejects_bad_display_names(client, display_name) -> None:
    error = await error_of(await signup(client, "grace", display_name=display_name), 422)
    assert error["field"] == "display_name"


async def test_display_name_of_64_characters_and_emoji_is_accepted(client) -> None:
    name = "😀" * 64
    resp = await signup(client, "heidi", display_name=name)
    assert resp.status == 201
    assert (await resp.json())["display_name"] == name


async def test_long_password_counts_beyond_72_bytes(client) -> None:
    # bcrypt alone reads 72 bytes; the pre-hash makes all 128 characters matter.
    password = "é" * 100 + "a" * 28
    assert len(password) == 128
    assert (await signup(client, "ivan", password)).status == 201
    assert (await login(client, "ivan", password)).status == 200
    error = await error_of(await login(client, "ivan", password[:-1] + "b"), 401)
    assert error["code"] == "invalid_credentials"


async def test_sql_looking_and_unicode_input_is_stored_verbatim(client, db) -> None:
    name = "Robert'); DROP TABLE users;-- 🧑‍💻 Zoë ﷽"
    resp = await signup(client, "bobby.tables", display_name=name)
    assert resp.status == 201
    assert (await resp.json())["display_name"] == name
    assert await db.fetchval("SELECT display_name FROM users WHERE username = 'bobby.tables'") == (
        name
    )
    assert await db.fetchval("SELECT count(*) FROM users") == 1


# --- malformed bodies ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/auth/signup", "/auth/login", "/auth/refresh", "/auth/logout"])
async def test_body_that_is_not_json_is_400(client, path) -> None:
    resp = await client.post(path, data=b"{not json", headers={"Content-Type": "application/json"})
    assert (await error_of(resp, 400))["code"] == "bad_json"


@pytest.mark.parametrize("path", ["/auth/signup", "/auth/login", "/auth/refresh", "/auth/logout"])
async def test_body_that_is_not_an_object_is_400(client, path) -> None:
    resp = await client.post(path, json=["username", "password"])
    assert (await error_of(resp, 400))["code"] == "bad_request"


@pytest.mark.parametrize("path", ["/auth/signup", "/auth/login", "/auth/refresh", "/auth/logout"])
async def test_body_over_64_kib_is_413(client, path) -> None:
    resp = await client.post(path, data=b'{"username": "' + b"a" * 70_000 + b'"}')
    assert (await error_of(resp, 413))["code"] == "too_large"


async def test_empty_body_is_400(client) -> None:
    resp = await client.post("/auth/login", data=b"")
    assert (await error_of(resp, 400))["code"] == "bad_json"


async def test_unknown_field_is_named(client) -> None:
    resp = await signup(client, "judy", is_admin=True)
    error = await error_of(resp, 422)
    assert error["field"] == "is_admin"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": TEST_PASSWORD}, "username"),
        ({"username": "judy"}, "password"),
        ({"username": 1, "password": TEST_PASSWORD}, "username"),
        ({"username": "judy", "password": {"x": 1}}, "password"),
        ({"username": "judy", "password": TEST_PASSWORD, "extra": 1}, "extra"),
        ({"username": "judy", "password": "x" * 1025}, "password"),
        ({"username": "ju\x00dy", "password": TEST_PASSWORD}, "username"),
    ],
)
async def test_login_body_errors_name_the_field(client, body, field) -> None:
    error = await error_of(await client.post("/auth/login", json=body), 422)
    assert error["code"] == "invalid"
    assert error["field"] == field


# --- login --------------------------------------------------------------------------------


async def test_login_returns_tokens_and_profile(client, make_user, settings) -> None:
    user = await make_user("kim")
    resp = await login(client, "KIM", user.password)
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.access_token_ttl_s
    assert body["user"]["id"] == user.id and body["user"]["username"] == "kim"
    assert body["user"]["is_admin"] is False
    me = await client.get("/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status == 200
    assert (await me.json())["id"] == user.id


async def test_login_stores_the_user_agent(client, make_user, db) -> None:
    await make_user("leo")
    resp = await client.post(
        "/auth/login",
        json={"username": "leo", "password": TEST_PASSWORD},
        headers={"User-Agent": "u" * 300},
    )
    assert resp.status == 200
    assert await db.fetchval("SELECT user_agent FROM refresh_tokens") == "u" * 256


async def test_wrong_password_and_unknown_user_look_the_same(
    client, make_user, monkeypatch
) -> None:
    await make_user("mallory")
    burned: list[int] = []
    passwords = client.app[PASSWORDS]
    real_burn = passwords.burn

    async def counting_burn(address: str, password: str, rounds: int) -> None:
        burned.append(rounds)
        await real_burn(address, password, rounds)

    monkeypatch.setattr(passwords, "burn", counting_burn)
    wrong_password = await error_of(await login(client, "mallory", "not the password"), 401)
    assert burned == []
    unknown_user = await error_of(await login(client, "nobody", "not the password"), 401)
    impossible_name = await error_of(await login(client, "no such user!", "whatever1"), 401)
    # Unknown names still pay for a bcrypt check, at the configured cost.
    assert burned == [4, 4]
    assert wrong_password == unknown_user == impossible_name
    assert wrong_password["code"] == "invalid_credentials"


async def test_disabled_user_is_told_only_with_the_right_password(client, make_user, db) -> None:
    user = await make_user("nina")
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", user.id)
    resp = await login(client, "nina", "wrong password")
    wrong = await error_of(resp, 401)
    assert wrong["code"] == "invalid_credentials"
    assert resp.headers["WWW-Authenticate"] == "Bearer"  # RFC 9110: every 401 has a challenge
    right = await error_of(await login(client, "nina", user.password), 403)
    assert right["code"] == "account_disabled"
    assert await db.fetchval("SELECT count(*) FROM refresh_tokens") == 0


async def test_secrets_never_reach_the_logs(client, caplog) -> None:
    caplog.set_level("DEBUG")
    secret_password = "S3cret-Passw0rd-xyz"
    assert (await signup(client, "oscar", secret_password)).status == 201
    body = await (await login(client, "oscar", secret_password)).json()
    refreshed = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert refreshed.status == 200
    # Reuse triggers a warning: it must name the user, not the token.
    reuse = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert reuse.status == 401
    assert "reused" in caplog.text
    for secret in (secret_password, body["refresh_token"], body["access_token"]):
        assert secret not in caplog.text


# --- rate limits --------------------------------------------------------------------------


async def wait_until_allowed(client, username: str, deadline_s: float = 5.0):
    """Log in until the answer is not 429 (bounded, so a regression fails fast); that answer."""

    async def not_limited():
        resp = await login(client, username)
        return None if resp.status == 429 else resp

    return await eventually(not_limited, deadline_s, f"a login as {username} not rate limited")


async def test_login_rate_limited_per_address_then_recovers(make_client, make_user) -> None:
    client = await make_client(auth_rate_per_s=20, auth_burst=2)
    await make_user("pat")
    # Different usernames and forged forwarding headers: the address bucket still empties.
    for name, forwarded in (("pat", "10.0.0.1"), ("quinn", "10.0.0.2")):
        resp = await client.post(
            "/auth/login",
            json={"username": name, "password": TEST_PASSWORD},
            headers={"X-Forwarded-For": forwarded},
        )
        assert resp.status in (200, 401)
    resp = await client.post(
        "/auth/login",
        json={"username": "rita", "password": TEST_PASSWORD},
        headers={"X-Forwarded-For": "10.0.0.3"},
    )
    error = await error_of(resp, 429)
    assert error["code"] == "rate_limited"
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await wait_until_allowed(client, "pat")).status == 200


async def test_login_failures_limited_per_username_and_address(make_client, make_user) -> None:
    client = await make_client(auth_rate_per_s=20, auth_burst=2)
    # Give the address room, so only the failure bucket can refuse.
    client.app[LOGIN_GUARD].attempts.burst = 1000
    await make_user("sam")
    for _ in range(2):
        assert (await login(client, "sam", "wrong password")).status == 401
    resp = await login(client, "SAM")
    assert (await error_of(resp, 429))["code"] == "rate_limited"
    assert "Retry-After" in resp.headers
    # Another username is not affected.
    assert (await login(client, "someone.else")).status == 401
    assert (await wait_until_allowed(client, "sam")).status == 200


async def test_signup_is_rate_limited_too(make_client) -> None:
    client = await make_client(auth_rate_per_s=0.001, auth_burst=2)
    assert (await signup(client, "tess")).status == 201
    assert (await signup(client, "uma")).status == 201
    resp = await signup(client, "vera")
    assert (await error_of(resp, 429))["code"] == "rate_limited"
    assert int(resp.headers["Retry-After"]) > 60


# --- strangers cannot lock a user out ------------------------------------------------------

STRANGERS = [f"127.0.0.{n}" for n in range(2, 10)]  # eight addresses, none of them the user's


async def test_strangers_hammering_a_name_do_not_lock_out_its_owner(make_client, make_user) -> None:
    # Production limits (the test default is generous), cheap bcrypt.
    client = await make_client(auth_rate_per_s=0.5, auth_burst=10, bcrypt_per_address=100)
    victim = await make_user("victim")
    assert (await login_from(client, "127.0.0.1", "victim")).status == 200  # her usual place

    async def stranger(address: str) -> list[int]:
        return [
            (await login_from(client, address, "victim", f"guess {i} {address}")).status
            for i in range(15)
        ]

    attack = asyncio.gather(*(stranger(address) for address in STRANGERS))
    victim_statuses = []
    # She logs in at the address limit's refill pace (one per 2 s, the attack's end cutting
    # the wait short): back to back, on a slow machine, she would exceed her own address's
    # limit, which is not what this test is about.
    while not attack.done():
        victim_statuses.append((await login_from(client, "127.0.0.1", "victim")).status)
        await asyncio.wait({attack}, timeout=2.0)
    statuses = [status for per_address in await attack for status in per_address]
    victim_statuses.append((await login_from(client, "127.0.0.1", "victim")).status)
    # The strangers were slowed down (each address, then the name everywhere else) ...
    assert statuses.count(429) >= 8 * 5 and set(statuses) == {401, 429}, statuses
    # ... and not one of her logins was refused.
    assert set(victim_statuses) == {200}, victim_statuses
    assert victim.password == TEST_PASSWORD


async def test_a_strangers_failures_do_not_spend_another_addresses_budget(
    make_client, make_user
) -> None:
    client = await make_client(
        auth_rate_per_s=0.001, auth_burst=3, login_failure_burst=1000, bcrypt_per_address=100
    )
    await make_user("victim")
    for _ in range(3):
        assert (await login_from(client, "127.0.0.2", "victim", "wrong guess")).status == 401
    refused = await login_from(client, "127.0.0.2", "victim")
    assert refused.status == 429 and int(refused.headers["Retry-After"]) > 60
    # Her first login ever, from her own (new) address: the stranger's failures are not hers.
    assert (await login_from(client, "127.0.0.3", "victim")).status == 200


async def test_the_names_failure_cap_slows_only_unknown_addresses(make_client, make_user) -> None:
    client = await make_client(
        auth_rate_per_s=0.5,
        auth_burst=10,
        login_failure_rate_per_s=0.001,
        login_failure_burst=6,
        bcrypt_per_address=100,
    )
    await make_user("victim")
    assert (await login_from(client, "127.0.0.1", "victim")).status == 200
    for address in STRANGERS[:3]:
        for _ in range(2):
            assert (await login_from(client, address, "victim", "wrong guess")).status == 401
    # Six failures from anywhere: a new address waits, even with the right password ...
    slowed = await login_from(client, "127.0.0.20", "victim")
    assert slowed.status == 429 and int(slowed.headers["Retry-After"]) > 60
    assert (await login_from(client, STRANGERS[4], "victim", "wrong guess")).status == 429
    # ... where she logged in before, she gets in.
    assert (await login_from(client, "127.0.0.1", "victim")).status == 200
    # Other names are not affected.
    await make_user("bystander")
    assert (await login_from(client, "127.0.0.20", "bystander")).status == 200


async def test_signups_for_a_taken_name_do_not_lock_out_its_owner(make_client, make_user) -> None:
    client = await make_client(auth_rate_per_s=0.5, auth_burst=10, bcrypt_per_address=100)
    await make_user("victim")
    for address in STRANGERS[:2]:
        for _ in range(6):
            answer = await post_from(
                client, address, "/auth/signup", {"username": "victim", "password": "x" * 12}
            )
            assert answer.status in (409, 429)
    assert (await login_from(client, "127.0.0.30", "victim")).status == 200


async def test_strangers_failures_do_not_block_a_password_change(make_client, make_user) -> None:
    client = await make_client(
        auth_rate_per_s=0.5, auth_burst=3, login_failure_burst=3, bcrypt_per_address=100
    )
    victim = await make_user("victim")
    for address in STRANGERS[:3]:
        for _ in range(3):
            await login_from(client, address, "victim", "wrong guess")
    answer = await post_from(
        client,
        "127.0.0.1",
        "/users/me/password",
        {"current_password": TEST_PASSWORD, "new_password": "a new password 1"},
        headers=victim.headers,
    )
    assert answer.status == 204, answer


# --- bcrypt off the event loop ------------------------------------------------------------


@pytest.mark.slow
async def test_logins_do_not_stall_the_event_loop(make_client) -> None:
    rounds = 12
    started = time.perf_counter()
    _hash_password_sync(TEST_PASSWORD, rounds)
    one_hash_s = time.perf_counter() - started

    client = await make_client(bcrypt_rounds=rounds, bcrypt_per_address=8)
    assert (await signup(client, "xena")).status == 201

    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    responses = await asyncio.gather(*(login(client, "xena") for _ in range(8)))
    stop.set()
    await ticking
    assert [r.status for r in responses] == [200] * 8
    # Run on the loop, each check would freeze it for a whole hash time.
    assert max(gaps) < one_hash_s / 2, (max(gaps), one_hash_s)
