"""CORS: a page on an allowed origin can log in and call every route; other origins cannot.

``browser_fetch`` does what a browser does for a cross-origin ``fetch`` without credentials
(the Fetch standard's CORS checks): a preflight for anything but a simple request, then the
request, and it refuses to hand over a response the server did not allow the origin to read.
Everything goes over real sockets to the real app.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import TEST_PASSWORD
from tests.openapi_contract import HTTP_METHODS, load_document
from trustmess.settings import Settings, SettingsError

APP = "https://app.example"
EVIL = "https://evil.example"
SAFELISTED_METHODS = {"GET", "HEAD", "POST"}


class CorsBlocked(Exception):
    """What a browser's fetch() would reject with (a TypeError there)."""


async def browser_fetch(
    client, origin: str, method: str, path: str, *, token: str | None = None, json: Any = None
):
    """A cross-origin fetch as a browser makes it; the response, or CorsBlocked."""
    headers = {"Origin": origin}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if json is not None:
        headers["Content-Type"] = "application/json"
    # Authorization and a JSON Content-Type are not CORS-safelisted: they need a preflight.
    unsafe = sorted(name.lower() for name in headers if name in ("Authorization", "Content-Type"))
    if unsafe or method not in SAFELISTED_METHODS:
        preflight = await client.options(
            path,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": method,
                **({"Access-Control-Request-Headers": ",".join(unsafe)} if unsafe else {}),
            },
        )
        if not 200 <= preflight.status < 300:
            raise CorsBlocked(f"preflight answered {preflight.status}")
        check_allow_origin(preflight, origin)
        methods = split(preflight.headers.get("Access-Control-Allow-Methods", ""))
        if method not in SAFELISTED_METHODS and method.lower() not in methods:
            raise CorsBlocked(f"{method} not in Access-Control-Allow-Methods")
        allowed = split(preflight.headers.get("Access-Control-Allow-Headers", ""))
        if set(unsafe) - allowed:
            raise CorsBlocked(f"headers {set(unsafe) - allowed} not allowed")
    response = await client.request(method, path, headers=headers, json=json)
    check_allow_origin(response, origin)
    return response


def split(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",") if part.strip()}


def check_allow_origin(response, origin: str) -> None:
    allowed = response.headers.get("Access-Control-Allow-Origin")
    if allowed not in ("*", origin):
        raise CorsBlocked(f"Access-Control-Allow-Origin is {allowed!r}")


def readable_headers(response) -> set[str]:
    """The response headers a page's script may read (beyond the safelisted ones)."""
    return split(response.headers.get("Access-Control-Expose-Headers", ""))


@pytest.fixture
async def app_client(make_client):
    return await make_client(allowed_origins=(APP,), auth_burst=3, auth_rate_per_s=0.01)


def every_operation() -> list[tuple[str, str]]:
    document = load_document()
    return [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS and path != "/ws"  # a WebSocket is not subject to CORS
    ]


@pytest.mark.parametrize(("method", "path"), every_operation())
async def test_every_route_passes_the_preflight_from_an_allowed_origin_only(
    app_client, method, path
) -> None:
    concrete = re.sub(r"\{\w+\}", "1", path)
    preflight = await app_client.options(
        concrete,
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status == 204, await preflight.text()
    assert preflight.headers["Access-Control-Allow-Origin"] == APP
    assert method.lower() in split(preflight.headers["Access-Control-Allow-Methods"])
    assert {"authorization", "content-type"} <= split(
        preflight.headers["Access-Control-Allow-Headers"]
    )
    assert int(preflight.headers["Access-Control-Max-Age"]) > 0
    assert "origin" in split(preflight.headers["Vary"])
    refused = await app_client.options(
        concrete, headers={"Origin": EVIL, "Access-Control-Request-Method": method}
    )
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "forbidden"
    assert "Access-Control-Allow-Origin" not in refused.headers


async def test_a_page_on_an_allowed_origin_logs_in_and_uses_the_api(app_client, make_user) -> None:
    grace = await make_user("grace")
    signup = await browser_fetch(
        app_client,
        APP,
        "POST",
        "/auth/signup",
        json={"username": "ada", "password": TEST_PASSWORD},
    )
    assert signup.status == 201
    login = await browser_fetch(
        app_client,
        APP,
        "POST",
        "/auth/login",
        json={"username": "ada", "password": TEST_PASSWORD},
    )
    session = await login.json()
    token = session["access_token"]
    me = await browser_fetch(app_client, APP, "GET", "/users/me", token=token)
    assert (await me.json())["username"] == "ada"
    created = await browser_fetch(
        app_client, APP, "POST", "/conversations", token=token, json={"member_ids": [grace.id]}
    )
    cid = (await created.json())["id"]
    sent = await browser_fetch(
        app_client,
        APP,
        "POST",
        f"/conversations/{cid}/messages",
        token=token,
        json={"client_msg_id": "c1", "body": "hello"},
    )
    assert sent.status == 201
    history = await browser_fetch(
        app_client, APP, "GET", f"/conversations/{cid}/messages", token=token
    )
    assert [m["body"] for m in (await history.json())["items"]] == ["hello"]
    patched = await browser_fetch(
        app_client, APP, "PATCH", "/users/me", token=token, json={"bio": "from the web"}
    )
    assert patched.status == 200
    refreshed = await browser_fetch(
        app_client,
        APP,
        "POST",
        "/auth/refresh",
        json={"refresh_token": session["refresh_token"]},
    )
    assert refreshed.status == 200


async def test_errors_and_their_headers_are_readable(app_client, make_user) -> None:
    """A page must see the JSON error, ``Retry-After`` of a 429 and the 401 challenge."""
    missing = await browser_fetch(app_client, APP, "GET", "/users/me")
    assert missing.status == 401
    assert "www-authenticate" in readable_headers(missing)
    unknown = await browser_fetch(app_client, APP, "GET", "/no/such/path")
    assert unknown.status == 404 and (await unknown.json())["error"]["code"] == "not_found"
    with pytest.raises(CorsBlocked, match="DELETE not in"):  # the preflight lists GET, HEAD
        await browser_fetch(app_client, APP, "DELETE", "/users")
    statuses = []
    for _ in range(4):  # burst 3
        resp = await browser_fetch(
            app_client, APP, "POST", "/auth/login", json={"username": "x", "password": "y"}
        )
        statuses.append(resp.status)
    assert statuses[-1] == 429, statuses
    assert {"retry-after", "ratelimit", "ratelimit-policy"} <= readable_headers(resp)
    assert int(resp.headers["Retry-After"]) >= 1


async def test_a_page_on_another_origin_can_do_nothing(app_client, make_user) -> None:
    user = await make_user()
    with pytest.raises(CorsBlocked, match="preflight answered 403"):
        await browser_fetch(app_client, EVIL, "GET", "/users/me", token=user.token)
    with pytest.raises(CorsBlocked, match="preflight answered 403"):
        await browser_fetch(
            app_client, EVIL, "POST", "/auth/login", json={"username": "a", "password": "b"}
        )
    # A simple request goes out without a preflight (browsers send it), but its answer cannot
    # be read: no Access-Control-Allow-Origin.
    with pytest.raises(CorsBlocked, match="Access-Control-Allow-Origin is None"):
        await browser_fetch(app_client, EVIL, "GET", "/healthz")


async def test_the_servers_own_origin_is_always_allowed(make_client) -> None:
    """The list adds to the server's own origin; it does not replace it."""
    client = await make_client(allowed_origins=(APP,))
    own = f"http://{client.host}:{client.port}"
    resp = await browser_fetch(client, own, "POST", "/auth/login", json={"username": "a"})
    assert resp.status == 422
    resp = await browser_fetch(client, APP, "GET", "/healthz")
    assert resp.status == 200


async def test_star_allows_any_origin_without_vary(make_client) -> None:
    client = await make_client(allowed_origins=("*",))
    resp = await browser_fetch(client, EVIL, "POST", "/auth/login", json={"username": "a"})
    assert resp.status == 422
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Vary" not in resp.headers
    assert "Access-Control-Allow-Credentials" not in resp.headers  # bearer tokens, no cookies


async def test_answers_vary_by_origin_even_without_one(client) -> None:
    """A shared cache must not hand an answer without CORS headers to a page that needs them."""
    resp = await client.get("/healthz")
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert resp.headers["Vary"] == "Origin"


async def test_a_plain_options_request_is_still_405(client) -> None:
    resp = await client.options("/users/me")
    assert resp.status == 405 and "GET" in resp.headers["Allow"]


async def test_sockets_use_the_same_list(make_client, make_user) -> None:
    client = await make_client(allowed_origins=(APP,))
    user = await make_user()
    ws = await client.ws_connect("/ws", headers={**user.headers, "Origin": APP})
    assert (await ws.receive_json())["type"] == "hello"
    await ws.close()
    own = f"http://{client.host}:{client.port}"
    ws = await client.ws_connect("/ws", headers={**user.headers, "Origin": own})
    assert (await ws.receive_json())["type"] == "hello"
    await ws.close()


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("", ()),
        ("*", ("*",)),
        (" https://App.Example/ , http://localhost:3000", (APP, "http://localhost:3000")),
        ("capacitor://localhost", ("capacitor://localhost",)),
    ],
)
def test_allowed_origins_setting(raw, parsed) -> None:
    assert Settings.from_env({"TRUSTMESS_ALLOWED_ORIGINS": raw}).allowed_origins == parsed


@pytest.mark.parametrize("raw", ["app.example", "https://app.example/path", "null", "https://"])
def test_allowed_origins_must_be_origins(raw) -> None:
    with pytest.raises(SettingsError, match="TRUSTMESS_ALLOWED_ORIGINS: must be \\* or origins"):
        Settings.from_env({"TRUSTMESS_ALLOWED_ORIGINS": raw})
