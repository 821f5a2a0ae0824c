"""The web client's files: served at their paths with a strict CSP, shipped as package data,
and absent with ``TRUSTMESS_WEB=false``. (The client itself is tested in a real browser:
tests/test_web_browser.py.)"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import AppFactory
from trustmess.http import webclient

WEB = Path(__file__).resolve().parent.parent / "trustmess" / "web"


async def test_the_page_and_its_files_are_served_with_a_strict_csp(make_client: AppFactory) -> None:
    client = await make_client()
    # The pages the mailed links open are the page itself.
    pages = {path: webclient.FILES["/"] for path in webclient.LINK_PAGES}
    for path, (name, content_type) in {**webclient.FILES, **pages}.items():
        response = await client.get(path)
        assert response.status == 200, path
        assert response.content_type == content_type
        assert await response.read() == (WEB / name).read_bytes()
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_web_false_serves_the_api_only(make_client: AppFactory) -> None:
    client = await make_client(web=False)
    for path in [*webclient.FILES, *webclient.LINK_PAGES]:
        response = await client.get(path)
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "not_found"
    assert (await client.get("/healthz")).status == 200


def test_the_page_has_no_inline_script_or_style_and_loads_nothing_from_elsewhere() -> None:
    html = (WEB / "index.html").read_text()
    # Every script is an external module from this origin; no style attribute or element.
    assert re.findall(r"<script[^>]*>", html) == ['<script type="module" src="/app.js">']
    assert "<style" not in html and "style=" not in html
    assert not re.search(r"\son[a-z]+=", html), "an inline event handler"

    for text in (html, (WEB / "app.js").read_text(), (WEB / "style.css").read_text()):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
