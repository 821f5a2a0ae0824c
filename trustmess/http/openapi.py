"""``GET /openapi.json``: the OpenAPI 3.1 reference of the HTTP API, as JSON.

The document is ``protocol/openapi.yaml``; an installed wheel carries it as ``openapi.yaml``
beside this module (setup.py copies it there). It is parsed and encoded once, when this module is
imported while the app is wired, so a broken or missing document stops the server at start-up
rather than failing a request.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web

routes = web.RouteTableDef()


class DocumentNotFound(RuntimeError):
    """Neither the installed package nor the checkout holds the OpenAPI document."""


def document_path() -> Path:
    """``openapi.yaml`` of the installed package, else ``protocol/openapi.yaml`` of the checkout
    the package was imported from (an editable install, the tests)."""
    package = resources.files("trustmess.http")
    if not isinstance(package, Path):
        raise DocumentNotFound(f"trustmess is not installed as files on disk ({package})")
    candidates = (
        package / "openapi.yaml",
        package.resolve().parent.parent / "protocol/openapi.yaml",
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DocumentNotFound("openapi.yaml not found at " + " or ".join(map(str, candidates)))


def load_document() -> dict[str, Any]:
    """The OpenAPI document, as JSON-compatible data."""
    path = document_path()
    text = path.read_text(encoding="utf-8")
    if hasattr(yaml, "CSafeLoader"):  # PyYAML with libyaml: 15x faster than pure Python
        document = yaml.load(text, Loader=yaml.CSafeLoader)
    else:
        document = yaml.safe_load(text)
    if not isinstance(document, dict) or "openapi" not in document:
        raise DocumentNotFound(f"{path} is not an OpenAPI document")
    return document


DOCUMENT_JSON = orjson.dumps(load_document())


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    """This server's HTTP API as an OpenAPI 3.1 document."""
    return web.Response(body=DOCUMENT_JSON, content_type="application/json")
