"""Screens for whatever shows them, and the e-ink device protocol.

- `GET /s/{screen_id}.png?token=gzr_…` (or the token as a Bearer header): the screen as a PNG, for
  Home Assistant picture entities and cards. The ETag is the image's filename (a hash of its bytes)
  and `Cache-Control: private, no-cache` makes every poll a revalidation (a 304 while nothing
  changed); the token in the URL keeps shared caches out. `?bit_depth=1|2` shows the e-ink rendering.
- `GET /s/{screen_id}?token=…`: the kiosk page, the screen filling a browser (a wall tablet). Its
  script follows `GET /s/{screen_id}/live?token=…` (Server-Sent Events): the server hears the change
  notices of the screen's feeds and sends the new filename when the picture changes (and rechecks
  every minute, as "3 h ago" ages); the page then swaps the image. No reload loop, no inline script.
- `GET /s/img/{filename}.{png|bmp}`: the images `/api/display` points devices at; immutable.
- `GET /api/setup`, `GET /api/display`, `POST /api/log`: the TRMNL firmware's protocol (displays/trmnl.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.params import FromPath, FromQuery, HeaderParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage, Template

from glimpze.displays.screens import ReaderScreen, bit_depth_of
from glimpze.displays.trmnl import DeviceHeaders, DisplayAnswer, LogAnswer, LogBody, SetupAnswer
from glimpze.errors import GlimpzeError, NotFound, ValidationFailed
from glimpze.services import Services
from glimpze.store.changes import Change
from glimpze.web.common import App, bearer, client_address, known_etags

AnyRequest = Request[Any, Any, Any]

RECHECK_SECONDS = 60  # the kiosk stream looks again this often, changes or not ("3 h ago" ages)
LOG_MAX_BODY_BYTES = 64 * 1024
_IMAGE_TYPES = {"png": "image/png", "bmp": "image/bmp"}
# Pollers revalidate (a 304 while unchanged); the token in the URL keeps shared caches out.
_POLLED = {"Cache-Control": "private, no-cache", "X-Content-Type-Options": "nosniff"}
_IMMUTABLE = {
    "Cache-Control": "public, max-age=31536000, immutable",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}
KIOSK_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
    ]
)
_KIOSK_HEADERS = {
    "Content-Security-Policy": KIOSK_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the read token is in the URL
    "Cache-Control": "no-store",
}


async def _screen(request: AnyRequest, glimpze: Services, screen_id: str, token: str | None) -> ReaderScreen:
    client = client_address(request, glimpze)
    return await glimpze.auth_failures.guard(
        client, lambda: glimpze.screens.reader(screen_id, bearer(request) or token)
    )


@get(
    "/{screen_file:str}",
    summary="A screen as a PNG ({screen_id}.png); {screen_id} alone is its full-screen kiosk page (HTML)",
    media_type="image/png",
    security=[{"readToken": []}, {"readTokenQuery": []}],
)
async def screen_image(
    screen_file: FromPath[str],
    request: AnyRequest,
    glimpze: App,
    token: FromQuery[str | None] = None,
    bit_depth: FromQuery[int] = 8,
) -> Response[Any]:
    if bit_depth not in (1, 2, 8):
        raise ValidationFailed.at("query.bit_depth", "must be 1, 2 or 8")
    screen_id, dot, ext = screen_file.rpartition(".")
    if not dot:
        return await _kiosk(request, glimpze, screen_file, token)
    if ext != "png":
        raise NotFound(f"No screen image {screen_file!r}; try /s/{{screen_id}}.png.")
    screen = await _screen(request, glimpze, screen_id, token)
    picture = await glimpze.screens.draw(screen, bit_depth=bit_depth_of(bit_depth))
    headers = {**_POLLED, "ETag": picture.etag}
    if picture.etag in known_etags(request) or "*" in known_etags(request):
        return Response(b"", status_code=304, headers=headers)
    return Response(picture.data, media_type="image/png", headers=headers)


async def _kiosk(request: AnyRequest, glimpze: Services, screen_id: str, token: str | None) -> Template:
    screen = await _screen(request, glimpze, screen_id, token)
    picture = await glimpze.screens.draw(screen)
    width, height = screen.spec.size
    query = f"token={token}" if token else ""
    return Template(
        template_name="kiosk.html",
        context={
            "screen": screen,
            "width": width,
            "height": height,
            "image": f"/s/{screen.id}.png?{query}",
            "live": f"/s/{screen.id}/live?{query}",
            "etag": picture.filename,
            "theme": screen.spec.theme,
            "v": request.app.state.ui.asset_version,
        },
        headers=_KIOSK_HEADERS,
        media_type="text/html; charset=utf-8",
    )


@get("/{screen_id:str}/live", include_in_schema=False)
async def screen_live(
    screen_id: FromPath[str], request: AnyRequest, glimpze: App, token: FromQuery[str | None] = None
) -> ServerSentEvent:
    """The kiosk page's channel: `screen` events carry the picture's new filename."""
    screen = await _screen(request, glimpze, screen_id, token)
    return ServerSentEvent(_screen_changes(glimpze, screen, bearer(request) or token))


async def _screen_changes(
    glimpze: Services, screen: ReaderScreen, token: str | None
) -> AsyncIterator[ServerSentEventMessage]:
    listener = glimpze.changes.subscribe(screen.project_id)
    try:
        yield ServerSentEventMessage(comment="live", retry=5000)
        shown = ""
        change: Change | None = Change("resync", "")
        while True:
            if change is None or _concerns(screen, change):
                try:  # the token may have been rotated, the screen edited or deleted
                    screen = await glimpze.screens.reader(screen.id, token)
                except GlimpzeError:
                    yield ServerSentEventMessage(event="gone", data="{}")
                    return
                picture = await glimpze.screens.draw(screen)
                if picture.filename != shown:
                    shown = picture.filename
                    yield ServerSentEventMessage(event="screen", data=msgspec.json.encode({"etag": shown}).decode())
                elif change is None:
                    yield ServerSentEventMessage(comment="ping")
            change = await listener.next(RECHECK_SECONDS)
            if glimpze.stopping.is_set() or glimpze.changes.stopping:
                return
    finally:
        listener.close()


def _concerns(screen: ReaderScreen, change: Change) -> bool:
    return (
        change.kind == "resync"
        or (change.kind == "tile" and change.id in screen.feeds)
        or (change.kind == "screen" and change.id == screen.id)
    )


@get("/img/{name:str}", summary="An image /api/display pointed a device at ({filename}.png or .bmp); immutable")
async def display_image(name: FromPath[str], request: AnyRequest, glimpze: App) -> Response[bytes]:
    data, ext = await glimpze.trmnl.image(name)
    etag = f'"{name.partition(".")[0]}"'
    headers = {**_IMMUTABLE, "ETag": etag}
    if etag in known_etags(request):
        return Response(b"", status_code=304, headers=headers)
    return Response(data, media_type=_IMAGE_TYPES[ext], headers=headers)


screens_router = Router("/s", route_handlers=[display_image, screen_live, screen_image], tags=["screens"])


# The device protocol (TRMNL firmware)


def _device(request: AnyRequest) -> DeviceHeaders:
    return DeviceHeaders.read(request.headers.get)


# Declared for the OpenAPI document; DeviceHeaders reads and checks them (a bad ID is a 422 naming it).
MacHeader = Annotated[str | None, HeaderParameter(name="ID", description="The device's MAC address, AA:BB:CC:DD:EE:FF")]
TokenHeader = Annotated[
    str | None, HeaderParameter(name="Access-Token", description="The access token /api/setup gave the device")
]


@get(
    ["/setup", "/setup/"],
    summary="TRMNL firmware: exchange the device's MAC address (header ID) for its access token once accepted",
)
async def api_setup(request: AnyRequest, glimpze: App, mac: MacHeader = None) -> SetupAnswer:
    return await glimpze.trmnl.setup(_device(request), client_address(request, glimpze))


@get(
    ["/display", "/display/"],
    summary="TRMNL firmware: the image to show now (headers ID and Access-Token, and the device's telemetry)",
)
async def api_display(
    request: AnyRequest, glimpze: App, mac: MacHeader = None, token: TokenHeader = None
) -> DisplayAnswer:
    return await glimpze.trmnl.display(_device(request), client_address(request, glimpze))


@post(
    "/log",
    status_code=200,
    opt={"body": LogBody},
    request_max_body_size=LOG_MAX_BODY_BYTES,
    summary="TRMNL firmware: store the device's log lines (the newest 500 per device are kept)",
)
async def api_log(request: AnyRequest, glimpze: App, mac: MacHeader = None, token: TokenHeader = None) -> LogAnswer:
    said = _device(request)
    return await glimpze.trmnl.log(said, await request.body(), client_address(request, glimpze))


device_router = Router("/api", route_handlers=[api_setup, api_display, api_log], tags=["devices"])
