"""The test client's side of the HTTP contract: responses checked against protocol/openapi.yaml.

``conftest.py`` makes every ``aiohttp_client`` a :class:`ContractClient`, so each response the
suite receives from an operation the document lists is checked: its status must be documented
for that operation, a JSON body must match the schema of that status (formats such as
``date-time`` included), a body-less status must have no body, and the headers the document
marks required must be there. Requests to paths or methods the document does not list (a test's
own route, 404/405 probes) are left alone.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from aiohttp import ClientResponse, WSServerHandshakeError, web
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from jsonschema.exceptions import relevance
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from yarl import URL

OPENAPI_YAML = Path(__file__).resolve().parent.parent / "protocol" / "openapi.yaml"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_BASE_URI = "urn:trustmess:openapi"


def load_document(path: Path = OPENAPI_YAML) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    return document


def _pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901) to ``parts``, percent-encoded for use as a URI fragment."""
    return "".join("/" + quote(part.replace("~", "~0").replace("/", "~1")) for part in parts)


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    node: Mapping[str, Any]


class OpenApiContract:
    """Checks responses against an OpenAPI 3.1 document; counts what it checked."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._registry: Registry[Any] = Registry().with_resource(
            _BASE_URI, DRAFT202012.create_resource(document)
        )
        self._validators: dict[str, Draft202012Validator] = {}
        operations = []
        for template, item in document["paths"].items():
            regex = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
            for method, node in item.items():
                if method in HTTP_METHODS:
                    operations.append(
                        Operation(method.upper(), template, re.compile(regex + "$"), node)
                    )
        # A literal segment wins over a parameter (``/users/me`` is not ``/users/{id}``).
        self._operations = sorted(operations, key=lambda op: op.template.count("{"))
        self.checked: Counter[str] = Counter()
        self.seen: set[tuple[str, str, str]] = set()

    def unseen(self) -> list[tuple[str, str, str]]:
        """Documented (method, path, status) triples no checked response had."""
        documented = {
            (operation.method, operation.template, status)
            for operation in self._operations
            for status in operation.node["responses"]
        }
        return sorted(documented - self.seen)

    def operation_for(self, method: str, path: str) -> Operation | None:
        for operation in self._operations:
            if operation.method == method and operation.pattern.match(path):
                return operation
        return None

    def resolve(self, node: Mapping[str, Any], pointer: str) -> tuple[Mapping[str, Any], str]:
        """Follow a local ``$ref`` (as response and header objects may be) to its target."""
        while "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/"), ref
            pointer = ref[1:]
            node = self.document
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, pointer

    def validator(self, pointer: str) -> Draft202012Validator:
        """A validator for the schema at ``pointer`` (a URI-fragment JSON pointer)."""
        if pointer not in self._validators:
            self._validators[pointer] = Draft202012Validator(
                {"$ref": f"{_BASE_URI}#{pointer}"},
                registry=self._registry,
                format_checker=Draft202012Validator.FORMAT_CHECKER,
            )
        return self._validators[pointer]

    def check(
        self, method: str, path: str, status: int, headers: Mapping[str, str], body: bytes | None
    ) -> None:
        """Fail (AssertionError) unless the response is one the document allows.

        ``body`` None means it was not available (a refused WebSocket upgrade): only the
        status is checked then.
        """
        operation = self.operation_for(method, path)
        if operation is None:
            return
        where = f"{method} {path} (operation {method} {operation.template})"
        responses = operation.node["responses"]
        if str(status) not in responses:
            raise AssertionError(
                f"{where} answered {status}, which protocol/openapi.yaml does not document "
                f"for it (documented: {', '.join(responses)}); body: {body!r}"
            )
        response, pointer = self.resolve(
            responses[str(status)],
            _pointer("paths", operation.template, operation.method.lower(), "responses")
            + _pointer(str(status)),
        )
        self.checked[os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[0]] += 1
        self.seen.add((operation.method, operation.template, str(status)))
        if body is None:
            return
        self._check_headers(where, status, response, headers)
        content = response.get("content")
        if not content:
            if body:
                raise AssertionError(f"{where} {status} is documented without a body: {body!r}")
            return
        media_type = headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in content:
            raise AssertionError(
                f"{where} {status} has Content-Type {media_type!r}; "
                f"documented: {', '.join(content)}"
            )
        if media_type != "application/json":
            return
        data = json.loads(body)
        schema_pointer = pointer + _pointer("content", media_type, "schema")
        errors = sorted(self.validator(schema_pointer).iter_errors(data), key=relevance)
        if errors:
            details = "\n".join(
                f"  at {'/'.join(map(str, error.absolute_path)) or '(the body)'}: {error.message}"
                for error in errors[:5]
            )
            raise AssertionError(
                f"{where} {status} does not match protocol/openapi.yaml "
                f"({schema_pointer}):\n{details}\nbody: {body[:2000]!r}"
            )

    def _check_headers(
        self, where: str, status: int, response: Mapping[str, Any], headers: Mapping[str, str]
    ) -> None:
        for name, declared in response.get("headers", {}).items():
            header, _ = self.resolve(declared, "")
            if name not in headers:
                if header.get("required"):
                    raise AssertionError(f"{where} {status} lacks the header {name}")
                continue
            value: Any = headers[name]
            if header.get("schema", {}).get("type") == "integer":
                value = int(value) if value.isdigit() else value
            errors = list(Draft202012Validator(header.get("schema", {})).iter_errors(value))
            if errors:
                raise AssertionError(f"{where} {status} header {name}: {errors[0].message}")


@functools.cache
def shared_contract() -> OpenApiContract:
    """The one contract of a test session (the YAML is parsed once)."""
    return OpenApiContract(load_document())


class ContractClient(TestClient[web.Request, web.Application]):
    """aiohttp's test client, with every response checked by :func:`shared_contract`."""

    async def _request(self, method: str, path: Any, **kwargs: Any) -> ClientResponse:
        response = await super()._request(method, path, **kwargs)
        body = await response.read()  # kept by the response: the test can still read it
        shared_contract().check(
            response.method, response.url.path, response.status, response.headers, body
        )
        return response

    async def ws_connect(self, path: Any, **kwargs: Any) -> Any:
        """Check the upgrade's status: 101, or a documented refusal."""
        url_path = URL(str(path)).path
        try:
            ws = await super().ws_connect(path, **kwargs)
        except WSServerHandshakeError as error:
            shared_contract().check("GET", url_path, error.status, {}, None)
            raise
        shared_contract().check("GET", url_path, 101, {}, None)
        return ws
