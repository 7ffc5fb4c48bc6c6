"""What makes the dashboard an installable app: the web manifest, the service worker, static files.

None of these need a session: the browser fetches them before anyone signs in (and the login page
must be installable too). The service worker is served from `/sw.js` so its scope is the whole
site; it carries the assets' version, so a new release replaces the cached shell.

All of them go out through glimpze.routes.static (compressed once per process, an ETag per form,
304s, HEAD). `/static/{path}` serves only the files found under `static/` (listed once, at the
first request), so no path a client sends can reach anything else.
"""

from __future__ import annotations

import functools
from pathlib import Path

import msgspec
from litestar import Router, route
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response.base import ASGIResponse

from glimpze.web.common import AnyRequest
from glimpze.web.dashboard.web import PUBLIC, STATIC, DashboardUi, SecurityHeaders
from glimpze.web.static import METHODS, Asset, make_asset, media_type_of, serve

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
STATIC_HEADERS = {"Cache-Control": f"public, max-age={STATIC_MAX_AGE}"}


@route("/manifest.webmanifest", http_method=METHODS, opt={PUBLIC: True})
async def manifest(request: AnyRequest) -> ASGIResponse:
    return serve(request, _manifest())


@route("/sw.js", http_method=METHODS, opt={PUBLIC: True})
async def service_worker(request: AnyRequest, ui: DashboardUi) -> ASGIResponse:
    return serve(request, _service_worker(ui.asset_version))


@route("/{path:path}", http_method=METHODS)
async def static_file(request: AnyRequest, path: FromPath[str]) -> ASGIResponse:
    asset = static_asset(path.lstrip("/"))
    if asset is None:
        raise NotFoundException()  # answered like any unknown path
    return serve(request, asset)


def static_asset(name: str) -> Asset | None:
    """The file `static/{name}`, read and compressed at its first request; None when there is none."""
    asset = _STATIC_ASSETS.get(name)
    if asset is None and (path := _static_files().get(name)) is not None:
        asset = _STATIC_ASSETS[name] = make_asset(path.read_bytes(), media_type_of(path.name), STATIC_HEADERS)
    return asset


_STATIC_ASSETS: dict[str, Asset] = {}


@functools.cache
def _static_files() -> dict[str, Path]:
    """The files under `static/` by their path there (hidden ones left out), listed once."""
    files = {path.relative_to(STATIC).as_posix(): path for path in sorted(STATIC.rglob("*")) if path.is_file()}
    return {name: path for name, path in files.items() if not any(p.startswith(".") for p in name.split("/"))}


@functools.cache
def _manifest() -> Asset:
    headers = {"Cache-Control": "public, max-age=3600"}
    return make_asset(msgspec.json.encode(MANIFEST), media_type_of(".webmanifest"), headers)


@functools.cache
def _service_worker(version: str) -> Asset:
    script = (STATIC / "sw.js").read_text(encoding="utf-8").replace("__VERSION__", version)
    # Browsers re-check the worker at most daily anyway; no-cache makes an update show at the next visit.
    headers = {"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"}
    return make_asset(script.encode(), media_type_of(".js"), headers)


static_router = Router(
    "/static", route_handlers=[static_file], middleware=[SecurityHeaders], opt={PUBLIC: True}, include_in_schema=False
)

ROUTES = [manifest, service_worker]
