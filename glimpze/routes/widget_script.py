"""`GET /widget.js`: the visitor widget's script, served from package data (`glimpze/static/widget.js`).

A site embeds it with `<script src="…/widget.js" data-token-url="/its/token/endpoint" defer>`; the
script reads its own address to find the API, so it needs no build step and no configuration here.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

from litestar import Request, Response, get

from glimpze.routes.common import known_etags

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
MEDIA_TYPE = "text/javascript"  # Litestar adds `; charset=utf-8` to text types


@functools.cache
def widget_script() -> tuple[bytes, str]:
    """The script's bytes and ETag, read from the installed package once (on first use)."""
    data = resources.files("glimpze").joinpath(SCRIPT).read_bytes()
    return data, f'"{hashlib.sha256(data).hexdigest()[:32]}"'


@get("/widget.js", include_in_schema=False)
async def widget_js(request: Request) -> Response[bytes]:
    data, etag = widget_script()
    headers = {**HEADERS, "ETag": etag}
    if etag in known_etags(request):
        return Response(b"", status_code=304, headers=headers)
    return Response(data, media_type=MEDIA_TYPE, headers=headers)
