"""The web client: ``GET /`` (the page; also at ``/reset-password`` and ``/verify-email``,
where the mailed links lead), its script and style sheet, and the JavaScript SDK.

The files are package data in ``trustmess/web/`` (``sdk/trustmess.js`` is the SDK other web apps
can reuse), read once when this module is imported, so a missing file stops the server at
start-up rather than failing a request. ``TRUSTMESS_WEB=false`` leaves these routes out.

Every answer carries a strict Content-Security-Policy: scripts, styles and connections only from
this origin (no inline script or style, no CDN), no framing, no plugins. ``connect-src 'self'``
covers ``ws://`` and ``wss://`` to the same host (CSP Level 3).
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

routes = web.RouteTableDef()

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The files change with the package: revalidate rather than run a stale client.
    "Cache-Control": "no-cache",
}

# URL path -> (file under trustmess/web/, content type). Keep in step with protocol/openapi.yaml.
FILES = {
    "/": ("index.html", "text/html"),
    "/app.js": ("app.js", "text/javascript"),
    "/style.css": ("style.css", "text/css"),
    "/sdk/trustmess.js": ("sdk/trustmess.js", "text/javascript"),
}

# Paths that serve the page itself: where the mailed links lead (trustmess/mail/letters.py).
LINK_PAGES = ("/reset-password", "/verify-email")


def _read(name: str) -> bytes:
    return resources.files("trustmess").joinpath("web", *name.split("/")).read_bytes()


_CONTENT = {path: (_read(name), content_type) for path, (name, content_type) in FILES.items()}


def _serve(path: str) -> web.Response:
    body, content_type = _CONTENT[path]
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=HEADERS)


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    """The web client's page."""
    return _serve("/")


# The pages the mailed links open (trustmess/mail/letters.py): the same page, whose script reads
# the path and the ``#token=`` fragment (a fragment never reaches the server or its logs).
@routes.get("/reset-password")
async def reset_password_page(request: web.Request) -> web.Response:
    """The web client's page, showing the new-password form of a mailed reset link."""
    return _serve("/")


@routes.get("/verify-email")
async def verify_email_page(request: web.Request) -> web.Response:
    """The web client's page, redeeming a mailed email-verification link."""
    return _serve("/")


@routes.get("/app.js")
async def app_js(request: web.Request) -> web.Response:
    """The web client's script (an ES module)."""
    return _serve("/app.js")


@routes.get("/style.css")
async def style_css(request: web.Request) -> web.Response:
    """The web client's style sheet."""
    return _serve("/style.css")


@routes.get("/sdk/trustmess.js")
async def sdk_js(request: web.Request) -> web.Response:
    """The JavaScript SDK (an ES module; protocol/web-sdk.md)."""
    return _serve("/sdk/trustmess.js")
