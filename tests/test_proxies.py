"""Behind a reverse proxy: rate limits count per client, never per proxy, and trust nothing
forwarded by anyone else. The test client connects from 127.0.0.1, which plays the proxy."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from aiohttp import web

from trustmess.appkeys import SETTINGS
from trustmess.http.clientaddr import client_address, client_key
from trustmess.settings import Settings, SettingsError

LOOPBACK = (ip_network("127.0.0.1"), ip_network("::1"))


async def attempt(client, **headers: str) -> int:
    """One signup attempt (it spends from the address's bucket before the body is read)."""
    resp = await client.post("/auth/signup", json={}, headers=headers)
    return resp.status


async def exhaust(client, **headers: str) -> None:
    """Spend the address's burst of 2; the third attempt is refused."""
    assert [await attempt(client, **headers) for _ in range(3)] == [422, 422, 429]


@pytest.fixture
async def behind_proxy(make_client):
    return await make_client(auth_burst=2, auth_rate_per_s=0.001, trusted_proxies=LOOPBACK)


async def test_each_forwarded_client_has_its_own_limit(behind_proxy) -> None:
    await exhaust(behind_proxy, **{"X-Forwarded-For": "203.0.113.7"})
    assert await attempt(behind_proxy, **{"X-Forwarded-For": "203.0.113.8"}) == 422
    assert await attempt(behind_proxy, Forwarded="for=203.0.113.9;proto=https") == 422
    # The same client through RFC 7239's header is the same client.
    assert await attempt(behind_proxy, Forwarded='for="203.0.113.7:4711"') == 429


async def test_a_client_cannot_escape_its_limit_by_writing_the_header(behind_proxy) -> None:
    """Only the hop our proxy appended counts; what the client put on the left is ignored."""
    await exhaust(behind_proxy, **{"X-Forwarded-For": "203.0.113.7"})
    spoofed = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
    assert await attempt(behind_proxy, **spoofed) == 429
    spoofed_forwarded = {"Forwarded": "for=198.51.100.1, for=203.0.113.7"}
    assert await attempt(behind_proxy, **spoofed_forwarded) == 429


async def test_ipv6_clients_share_a_limit_per_64(behind_proxy) -> None:
    await exhaust(behind_proxy, **{"X-Forwarded-For": "2001:db8:0:1::1"})
    assert await attempt(behind_proxy, **{"X-Forwarded-For": "2001:db8:0:1::2"}) == 429
    assert await attempt(behind_proxy, Forwarded='for="[2001:db8:0:1:ffff::9]:443"') == 429
    assert await attempt(behind_proxy, **{"X-Forwarded-For": "2001:db8:0:2::1"}) == 422


async def test_without_trusted_proxies_the_headers_are_ignored(make_client) -> None:
    client = await make_client(auth_burst=2, auth_rate_per_s=0.001)
    await exhaust(client, **{"X-Forwarded-For": "203.0.113.7"})
    # The peer (127.0.0.1) is what counts: another forwarded address changes nothing.
    assert await attempt(client, **{"X-Forwarded-For": "203.0.113.8"}) == 429


async def test_an_untrusted_peer_is_the_client(make_client) -> None:
    client = await make_client(
        auth_burst=2, auth_rate_per_s=0.001, trusted_proxies=(ip_network("10.0.0.0/8"),)
    )
    await exhaust(client, **{"X-Forwarded-For": "203.0.113.7"})
    assert await attempt(client, **{"X-Forwarded-For": "203.0.113.8"}) == 429


async def test_client_address_and_key(aiohttp_client, settings) -> None:
    """What the access log shows (the address) and what the limits count by (its /64)."""
    seen: list[tuple[str, str]] = []

    async def probe(request: web.Request) -> web.Response:
        seen.append((client_address(request), client_key(request)))
        return web.Response(status=204)

    app = web.Application()
    app[SETTINGS] = settings.replace(trusted_proxies=LOOPBACK)
    app.router.add_get("/probe", probe)
    client = await aiohttp_client(app)
    await client.get("/probe", headers={"X-Forwarded-For": "2001:db8:0:1::1"})
    await client.get("/probe", headers={"Forwarded": 'for="[::ffff:203.0.113.7]:80"'})
    await client.get("/probe")
    assert seen == [
        ("2001:db8:0:1::1", "2001:db8:0:1::/64"),
        ("203.0.113.7", "203.0.113.7"),
        ("127.0.0.1", "127.0.0.1"),
    ]


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("", ()),
        ("10.0.0.1", ("10.0.0.1/32",)),
        (" 10.0.0.0/8 , ::1, fd00::/8", ("10.0.0.0/8", "::1/128", "fd00::/8")),
        ("10.1.2.3/8", ("10.0.0.0/8",)),
    ],
)
def test_trusted_proxies_setting(raw, parsed) -> None:
    settings = Settings.from_env({"TRUSTMESS_TRUSTED_PROXIES": raw})
    assert tuple(map(str, settings.trusted_proxies)) == parsed


@pytest.mark.parametrize("raw", ["proxy.local", "10.0.0.0/33", "10.0.0.1, nope"])
def test_trusted_proxies_must_be_addresses(raw) -> None:
    with pytest.raises(SettingsError, match="TRUSTMESS_TRUSTED_PROXIES: must be IP addresses"):
        Settings.from_env({"TRUSTMESS_TRUSTED_PROXIES": raw})
