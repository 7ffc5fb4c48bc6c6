"""`GET /widget.js`: the visitor widget's script, served from package data (`glimpze/static/widget.js`).

A site embeds it with `<script src="…/widget.js" data-token-url="/its/token/endpoint" defer>`; the
script reads its own address to find the API, so it needs no build step and no configuration here.
It is read and compressed once per process (glimpze.routes.static), and answers HEAD and 304s.
"""

from __future__ import annotations

import functools
from importlib import resources

from litestar import route
from litestar.response.base import ASGIResponse

from glimpze.web.common import AnyRequest
from glimpze.web.static import METHODS, Asset, make_asset, serve

SCRIPT = "static/widget.js"
# The URL is not versioned, so caches keep it briefly and revalidate with the ETag: a new release
# reaches visitors within minutes. CORS and CORP let a site load it with `crossorigin`/SRI or under
# COEP; the CSP and nosniff matter only when someone opens the URL itself (a script never runs as a
# page).
HEADERS = {
    "Cache-Control": "public, max-age=300",
    "Access-Control-Allow-Origin": "*",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; sandbox",
    "X-Content-Type-Options": "nosniff",
}
MEDIA_TYPE = "text/javascript; charset=utf-8"


@functools.cache
def widget_script() -> Asset:
    """The script in every form, read from the installed package and compressed once (on first use)."""
    return make_asset(resources.files("glimpze").joinpath(SCRIPT).read_bytes(), MEDIA_TYPE, HEADERS)


@route("/widget.js", http_method=METHODS, include_in_schema=False)
async def widget_js(request: AnyRequest) -> ASGIResponse:
    return serve(request, widget_script())
