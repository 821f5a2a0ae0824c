"""No input is a 500: ids, cursors and integers out of range on every documented route.

Each path parameter and each query parameter protocol/openapi.yaml lists is given values that
parse as integers somewhere (beyond a bigint, digits of other scripts, signs, underscores) and
cursors that decode to such values; the server must answer each with a 4xx, never 500.
"""

from __future__ import annotations

import base64
import re

import pytest

from tests.openapi_contract import HTTP_METHODS, load_document

BIGINT_PLUS_ONE = str(2**63)
BAD_INTEGERS = [
    BIGINT_PLUS_ONE,
    "9" * 40,
    "-" + BIGINT_PLUS_ONE,
    "0",
    "-1",
    chr(0x0661),  # ARABIC-INDIC DIGIT ONE
    chr(0xFF11),  # FULLWIDTH DIGIT ONE
    "+1",
    "1_0",
    " 1",
]


def cursor_of(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


BAD_CURSORS = [
    cursor_of("0:" + BIGINT_PLUS_ONE),
    cursor_of(BIGINT_PLUS_ONE + ":1"),
    cursor_of("9" * 40 + ":1"),
    cursor_of("0:0"),
    cursor_of("0:" + chr(0x0661)),
    cursor_of("1:2:3"),
    cursor_of("a" * 40),
    cursor_of("\x00"),
]


def operations() -> list[tuple[str, str, list[str]]]:
    """(method, path template, query parameter names) of every documented operation."""
    found = []
    for template, item in load_document()["paths"].items():
        for method, node in item.items():
            if method in HTTP_METHODS:
                query = [p["name"] for p in node.get("parameters", []) if p.get("in") == "query"]
                found.append((method.upper(), template, query))
    return found


def requests_for(template: str, query: list[str]) -> list[tuple[str, dict[str, str]]]:
    """(path, query) pairs with one bad value each."""
    cases = []
    if "{" in template:
        for value in BAD_INTEGERS:
            encoded = value.replace(" ", "%20").replace("+", "%2B")
            cases.append((re.sub(r"\{\w+\}", encoded, template), {}))
    fixed = re.sub(r"\{\w+\}", "1", template)
    # A required search text stays valid, so the error is about the parameter under test.
    base = {"q": "word"} if "q" in query else {}
    for name in query:
        values = BAD_CURSORS if name == "cursor" else [] if name == "q" else BAD_INTEGERS
        cases.extend((fixed, {name: value, **base}) for value in values)
    return cases


@pytest.mark.parametrize(
    ("method", "template", "query"),
    [case for case in operations() if "{" in case[1] or case[2]],
    ids=lambda value: value if isinstance(value, str) else None,
)
async def test_out_of_range_input_is_never_a_500(
    client, make_user, caplog, method, template, query
) -> None:
    user = await make_user(is_admin=template.startswith("/admin"))  # else 403 before checks
    body = None if method in ("GET", "DELETE") else {}
    for path, params in requests_for(template, query):
        resp = await client.request(method, path, params=params, json=body, headers=user.headers)
        assert resp.status < 500, (path, params, resp.status, await resp.text())
        if params and resp.status != 404:
            # A bad query parameter is 422 naming it (404: the conversation comes first).
            error = (await resp.json())["error"]
            assert (error["code"], error["field"]) == ("invalid", next(iter(params))), error
    assert not [r for r in caplog.records if r.levelname == "ERROR"], "logged as a server fault"
