"""What makes the dashboard an installable app: the web manifest, the service worker, static files.

None of these need a session: the browser fetches them before anyone signs in (and the login page
must be installable too). The service worker is served from `/sw.js` so its scope is the whole
site; it carries the assets' version, so a new release replaces the cached shell.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

from glimpze.dashboard.web import PUBLIC, STATIC, SecurityHeaders, ui_of

THEME_COLOUR = "#4338ca"
BACKGROUND_LIGHT = "#f6f7f9"
STATIC_MAX_AGE = 7 * 86400  # asset URLs carry the version: a new release is a new URL

_SHORTCUT_ICON = {"src": "/static/icons/icon-192.png", "sizes": "192x192", "type": "image/png"}
MANIFEST = {
    "id": "/",
    "name": "Glimpze",
    "short_name": "Glimpze",
    "description": "Live widgets, approvals and webhooks from your own server.",
    "start_url": "/",
    "scope": "/",
    "display": "standalone",
    "orientation": "any",
    "background_color": BACKGROUND_LIGHT,
    "theme_color": THEME_COLOUR,
    "categories": ["productivity", "utilities"],
    "icons": [
        {"src": "/static/icons/icon-192.png", "sizes": "192x192", "type": "image/png", "purpose": "any"},
        {"src": "/static/icons/icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "any"},
        {"src": "/static/icons/maskable-512.png", "sizes": "512x512", "type": "image/png", "purpose": "maskable"},
    ],
    "shortcuts": [
        {"name": "Feeds", "url": "/feeds", "icons": [_SHORTCUT_ICON]},
        {"name": "Webhooks", "url": "/webhooks", "icons": [_SHORTCUT_ICON]},
    ],
}
_MANIFEST_BYTES = msgspec.json.encode(MANIFEST)


@get("/manifest.webmanifest", opt={PUBLIC: True}, include_in_schema=False)
async def manifest() -> Response[bytes]:
    return Response(
        _MANIFEST_BYTES, media_type="application/manifest+json", headers={"Cache-Control": "public, max-age=3600"}
    )


@get("/sw.js", opt={PUBLIC: True}, include_in_schema=False)
async def service_worker(request: Request[Any, Any, Any]) -> Response[bytes]:
    script = (STATIC / "sw.js").read_text(encoding="utf-8").replace("__VERSION__", ui_of(request).asset_version)
    # Browsers re-check the worker at most daily anyway; no-cache makes an update show at the next visit.
    return Response(
        script.encode(),
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"},
    )


static_router = create_static_files_router(
    "/static",
    directories=[STATIC],
    name="dashboard-static",
    cache_control=CacheControlHeader(public=True, max_age=STATIC_MAX_AGE),
    middleware=[SecurityHeaders],
    include_in_schema=False,
)

ROUTES = [manifest, service_worker]
