"""protocol/openapi.yaml: a valid OpenAPI 3.1 document that lists exactly the routes the app
registers, whose limits and error codes are the server's, whose examples match their schemas,
which the server serves at ``GET /openapi.json``, and whose response check (conftest's test
client) really catches a response that drifts from it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from tests.conftest import JWT_SECRET
from tests.openapi_contract import (
    HTTP_METHODS,
    OPENAPI_YAML,
    OpenApiContract,
    load_document,
    shared_contract,
)
from trustmess import auth
from trustmess.app import create_app
from trustmess.errors import ErrorCode
from trustmess.http import accounts, admin, conversations, messages, users
from trustmess.http.openapi import document_path
from trustmess.settings import Settings
from trustmess.store import sessions
from trustmess.store import users as users_store
from trustmess.wire import validation

# Socket-only codes: HTTP never answers them.
SOCKET_ONLY_CODES = {ErrorCode.BAD_FRAME, ErrorCode.UNKNOWN_TYPE}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return load_document()


def schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = document["components"]["schemas"][name]
    return found


def query_parameter(document: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    for parameter in document["paths"][path][method]["parameters"]:
        if parameter.get("name") == name:
            found: dict[str, Any] = parameter["schema"]
            return found
    raise KeyError(name)


# --- the document itself --------------------------------------------------------------------


def test_document_is_valid_openapi_3_1(document) -> None:
    assert document["openapi"].startswith("3.1.")
    OpenAPIV31SpecValidator(document).validate()


def test_document_is_plain_json_data(document) -> None:
    # A YAML-only value (an unquoted timestamp becomes a datetime) would not survive JSON.
    assert json.loads(json.dumps(document)) == document


def test_every_registered_route_is_documented_and_nothing_else(document, tmp_path: Path) -> None:
    # Building the app opens nothing: no database is needed to list its routes.
    settings = Settings(
        database_url="postgresql://unused@127.0.0.1/unused",
        jwt_secret=JWT_SECRET,
        data_dir=tmp_path,
    )
    app = create_app(settings)
    registered = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue  # aiohttp adds one to every GET route
        assert route.resource is not None
        # aiohttp writes a constrained parameter as {name:regex}; OpenAPI only as {name}.
        template = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", route.resource.canonical)
        registered.add((route.method, template))
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    assert sorted(registered - documented) == [], "routes missing from protocol/openapi.yaml"
    assert sorted(documented - registered) == [], "documented routes the server does not have"


def test_error_codes_are_the_servers(document) -> None:
    codes = set(schema(document, "ErrorCode")["enum"])
    assert codes == {str(code) for code in ErrorCode} - SOCKET_ONLY_CODES


def test_limits_are_the_servers(document) -> None:
    """The bounds the document states are the constants the server validates with."""
    public_user = schema(document, "PublicUser")
    assert schema(document, "DisplayName")["maxLength"] == users.DISPLAY_NAME_MAX
    assert schema(document, "Bio")["maxLength"] == users.BIO_MAX
    assert public_user["required"] == list(public_user["properties"])

    signup = schema(document, "SignupRequest")["properties"]
    assert signup["username"]["pattern"] == f"^{auth.USERNAME_PATTERN.pattern}$"
    assert signup["password"]["minLength"] == auth.PASSWORD_MIN_CHARS
    assert signup["password"]["maxLength"] == auth.PASSWORD_MAX_CHARS
    assert signup["display_name"]["maxLength"] == users.DISPLAY_NAME_MAX
    login = schema(document, "LoginRequest")["properties"]
    assert login["username"]["maxLength"] == login["password"]["maxLength"]
    assert login["password"]["maxLength"] == accounts.LOGIN_FIELD_MAX
    assert (
        schema(document, "RefreshTokenRequest")["properties"]["refresh_token"]["maxLength"]
        == accounts.REFRESH_TOKEN_MAX
    )
    change = schema(document, "PasswordChange")["properties"]
    assert change["current_password"]["maxLength"] == auth.PASSWORD_MAX_CHARS
    assert change["new_password"]["minLength"] == auth.PASSWORD_MIN_CHARS
    assert change["new_password"]["maxLength"] == auth.PASSWORD_MAX_CHARS
    update = schema(document, "ProfileUpdate")["properties"]
    assert update["display_name"]["maxLength"] == users.DISPLAY_NAME_MAX
    assert update["bio"]["maxLength"] == users.BIO_MAX

    assert schema(document, "Id")["maximum"] == validation.BIGINT_MAX
    assert schema(document, "Seq")["maximum"] == validation.BIGINT_MAX
    assert schema(document, "ClientMsgId")["pattern"] == f"^{validation.CLIENT_MSG_ID.pattern}$"
    assert schema(document, "Message")["properties"]["body"]["maxLength"] == (
        validation.MAX_BODY_CHARS
    )
    title = schema(document, "ConversationCreate")["properties"]["title"]
    assert title["maxLength"] == conversations.MAX_TITLE_CHARS
    rename = schema(document, "ConversationRename")["properties"]["title"]
    assert rename["maxLength"] == conversations.MAX_TITLE_CHARS
    for name, field in (("ConversationCreate", "member_ids"), ("MembersAdd", "user_ids")):
        assert schema(document, name)["properties"][field]["maxItems"] == conversations.MAX_MEMBERS
    assert schema(document, "Conversation")["properties"]["members"]["maxItems"] == (
        conversations.MAX_MEMBERS
    )

    pages = [
        ("/users", users.PAGE_DEFAULT, users.PAGE_MAX, "UserPage"),
        ("/conversations", conversations.DEFAULT_PAGE, conversations.MAX_PAGE, "ConversationPage"),
        ("/conversations/{id}/messages", messages.DEFAULT_PAGE, messages.MAX_PAGE, "MessagePage"),
    ]
    for path, default, most, page in pages:
        limit = query_parameter(document, path, "get", "limit")
        assert (limit["minimum"], limit["default"], limit["maximum"]) == (1, default, most), path
        assert schema(document, page)["properties"]["items"]["maxItems"] == most
    assert query_parameter(document, "/users", "get", "q")["maxLength"] == users.SEARCH_PREFIX_MAX


def _examples(
    contract: OpenApiContract, media: dict[str, Any], pointer: str
) -> Iterator[tuple[str, str, Any]]:
    """(where, schema pointer, value) of every example of a media type or parameter object."""
    if "example" in media:
        yield pointer, pointer + "/schema", media["example"]
    for name, example in media.get("examples", {}).items():
        example, _ = contract.resolve(example, "")
        yield f"{pointer}/examples/{name}", pointer + "/schema", example["value"]


def _every_example(contract: OpenApiContract) -> Iterator[tuple[str, str, Any]]:
    for path, item in contract.document["paths"].items():
        escaped = "/paths/" + path.replace("/", "~1")
        for index, parameter in enumerate(item.get("parameters", [])):
            parameter, where = contract.resolve(parameter, f"{escaped}/parameters/{index}")
            yield from _examples(contract, parameter, where)
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            base = f"{escaped}/{method}"
            for index, parameter in enumerate(operation.get("parameters", [])):
                parameter, where = contract.resolve(parameter, f"{base}/parameters/{index}")
                yield from _examples(contract, parameter, where)
            body = operation.get("requestBody", {})
            for media_type, media in body.get("content", {}).items():
                where = f"{base}/requestBody/content/{media_type.replace('/', '~1')}"
                yield from _examples(contract, media, where)
            assert operation["responses"], base
            for status, response in operation["responses"].items():
                response, where = contract.resolve(response, f"{base}/responses/{status}")
                for media_type, media in response.get("content", {}).items():
                    media_where = f"{where}/content/{media_type.replace('/', '~1')}"
                    yield from _examples(contract, media, media_where)


def test_examples_match_their_schemas(document) -> None:
    contract = OpenApiContract(document)
    checked = 0
    for where, schema_pointer, value in _every_example(contract):
        errors = [error.message for error in contract.validator(schema_pointer).iter_errors(value)]
        assert errors == [], where
        checked += 1
    assert checked > 60


def test_every_operation_has_a_success_example(document) -> None:
    contract = OpenApiContract(document)
    with_examples = {where.split("/responses/")[0] for where, _, _ in _every_example(contract)}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            success = [s for s in operation["responses"] if s.startswith("2")]
            if not any("content" in operation["responses"][s] for s in success):
                continue  # 204 (or 101): nothing to show but errors
            assert f"/paths/{path.replace('/', '~1')}/{method}" in with_examples, (method, path)


# --- what the package ships and the server serves ------------------------------------------


def test_a_checkout_serves_its_protocol_document() -> None:
    # This test run imports trustmess from the checkout; a wheel carries a copy
    # (tests/test_packaging.py checks it).
    assert document_path() == OPENAPI_YAML


async def test_get_openapi_json_serves_the_document(client, document) -> None:
    before = shared_contract().checked.total()
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert orjson.loads(await resp.read()) == document
    # The test client checked this response against the document too.
    assert shared_contract().checked.total() == before + 1


# --- the response check conftest applies to every test ------------------------------------

JSON = {"Content-Type": "application/json; charset=utf-8"}
PROFILE = {
    "id": 42,
    "username": "ada",
    "display_name": "Ada",
    "bio": "",
    "created_at": "2026-11-22T10:00:00.123Z",
    "is_admin": False,
    "email": None,
    "email_verified": False,
}


def body(data: Any) -> bytes:
    return orjson.dumps(data)


def test_the_response_check_accepts_what_the_document_allows(document) -> None:
    contract = OpenApiContract(document)
    contract.check("GET", "/users/me", 200, JSON, body(PROFILE))
    contract.check("POST", "/auth/logout", 204, {}, b"")
    retry = {**JSON, "Retry-After": "3"}
    error = {"error": {"code": "rate_limited", "message": "too many requests; retry in 3 s"}}
    contract.check("POST", "/auth/login", 429, retry, body(error))
    # Neither a documented path nor a documented method there: not checked.
    contract.check("GET", "/no/such/thing", 404, JSON, b"{}")
    contract.check("DELETE", "/healthz", 405, JSON, b"{}")
    assert contract.checked.total() == 3


@pytest.mark.parametrize(
    ("method", "path", "status", "headers", "data", "complaint"),
    [
        ("GET", "/users/me", 418, JSON, PROFILE, "does not document"),
        # /users/me is not /users/{id}: the public profile has no is_admin.
        ("GET", "/users/7", 200, JSON, PROFILE, "Additional properties"),
        ("GET", "/users/me", 200, JSON, {**PROFILE, "is_admin": None}, "is_admin"),
        ("GET", "/users/me", 200, JSON, {**PROFILE, "created_at": "yesterday"}, "created_at"),
        ("GET", "/users/me", 200, JSON, {**PROFILE, "username": "Ada"}, "username"),
        ("GET", "/users/me", 200, {"Content-Type": "text/html"}, PROFILE, "Content-Type"),
        ("POST", "/auth/logout", 204, JSON, {}, "without a body"),
        (
            "POST",
            "/auth/login",
            429,
            JSON,
            {"error": {"code": "rate_limited", "message": "slow down"}},
            "Retry-After",
        ),
        (
            "GET",
            "/users/me",
            401,
            {**JSON, "WWW-Authenticate": "Bearer"},
            {"error": {"code": "invalid_credentials", "message": "no"}},
            "code",
        ),
        (
            "GET",
            "/users",
            422,
            JSON,
            {"error": {"code": "invalid", "message": "limit: must be between 1 and 100"}},
            "field",
        ),
    ],
)
def test_the_response_check_catches_drift(
    document, method, path, status, headers, data, complaint
) -> None:
    contract = OpenApiContract(document)
    with pytest.raises(AssertionError, match=complaint):
        contract.check(method, path, status, headers, body(data))


def test_session_and_admin_limits_are_the_servers(document) -> None:
    """The bounds of the sessions, deletion and administration schemas are the server's."""

    session = schema(document, "LoginSession")["properties"]
    assert session["id"]["pattern"] == f"^{auth.SESSION_ID.pattern}$"
    assert session["user_agent"]["maxLength"] == sessions.USER_AGENT_MAX
    assert session["address"]["maxLength"] == sessions.ADDRESS_MAX
    deletion = schema(document, "AccountDeletion")["properties"]
    assert deletion["password"]["maxLength"] == auth.PASSWORD_MAX_CHARS
    q = query_parameter(document, "/admin/users", "get", "q")
    assert q["pattern"] == f"^{admin.USERNAME_PREFIX.pattern}$"
    state = query_parameter(document, "/admin/users", "get", "state")
    assert [value for value in state["enum"] if value] == list(users_store.ADMIN_STATES)
    limit = query_parameter(document, "/admin/users", "get", "limit")
    assert (limit["default"], limit["maximum"]) == (users.PAGE_DEFAULT, users.PAGE_MAX)
    assert schema(document, "AdminUserPage")["properties"]["items"]["maxItems"] == users.PAGE_MAX
