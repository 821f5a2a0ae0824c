"""``GET /openapi.json``: the OpenAPI 3.1 reference of the HTTP API, as JSON.

The document is ``openapi.yaml`` of this package (in a source checkout, a link to the canonical
``protocol/openapi.yaml``). It is parsed and encoded once, when this module is imported while the
app is wired, so a broken document stops the server at start-up rather than failing a request.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson
import yaml
from aiohttp import web

routes = web.RouteTableDef()


def load_document() -> dict[str, Any]:
    """The OpenAPI document shipped with the package, as JSON-compatible data."""
    text = resources.files("trustmess.http").joinpath("openapi.yaml").read_text(encoding="utf-8")
    if hasattr(yaml, "CSafeLoader"):  # PyYAML with libyaml: 15x faster than pure Python
        document = yaml.load(text, Loader=yaml.CSafeLoader)
    else:
        document = yaml.safe_load(text)
    if not isinstance(document, dict) or "openapi" not in document:
        raise RuntimeError("trustmess/http/openapi.yaml is not an OpenAPI document")
    return document


DOCUMENT_JSON = orjson.dumps(load_document())


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    """This server's HTTP API as an OpenAPI 3.1 document."""
    return web.Response(body=DOCUMENT_JSON, content_type="application/json")
