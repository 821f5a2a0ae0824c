"""bcrypt under a flood: password checks (unknown usernames included) are bounded per client
address (429) and in total (503), both with Retry-After, over real HTTP from real addresses."""

from __future__ import annotations

import asyncio

from tests.conftest import login_from
from trustmess import auth

WRONG = "wrong password 1"


async def test_password_checks_per_address_are_capped(make_client) -> None:
    # Unknown usernames: they cost a real bcrypt check too, so they count the same.
    client = await make_client(bcrypt_rounds=11, bcrypt_per_address=2, bcrypt_queue_max=100)
    results = await asyncio.gather(
        *(login_from(client, "127.0.0.2", f"nobody{i}", WRONG) for i in range(6))
    )
    statuses = sorted(r.status for r in results)
    assert statuses == [401, 401, 429, 429, 429, 429], statuses
    refused = [r for r in results if r.status == 429]
    assert all(r.body["error"]["code"] == "rate_limited" for r in refused)
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    # Another address is not held back by the first one's cap.
    assert (await login_from(client, "127.0.0.3", "nobody", WRONG)).status == 401


async def test_a_full_queue_answers_503(make_client) -> None:
    client = await make_client(bcrypt_rounds=11, bcrypt_per_address=100, bcrypt_queue_max=2)
    n = auth.BCRYPT_THREADS + 2 + 4
    results = await asyncio.gather(
        *(login_from(client, f"127.0.0.{10 + i}", f"nobody{i}", WRONG) for i in range(n))
    )
    statuses = sorted(r.status for r in results)
    assert statuses.count(401) == auth.BCRYPT_THREADS + 2, statuses
    assert statuses.count(503) == 4, statuses
    busy = [r for r in results if r.status == 503]
    assert all(r.body["error"]["code"] == "unavailable" for r in busy)
    assert all(int(r.headers["Retry-After"]) >= 1 for r in busy)
