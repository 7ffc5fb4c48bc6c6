"""`/v1/screens`: screens (feeds laid out on a canvas) — create, list, read, change, delete, rotate the read token."""

from __future__ import annotations

from litestar import Router, delete, get, patch, post
from litestar.params import FromPath, FromQuery

from glimpze.displays.screens import Screen, ScreenCreate, ScreenPatch
from glimpze.store.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor
from glimpze.validation import Decoder
from glimpze.web.common import AnyRequest, App, Caller, read_json

SCREEN_CREATE = Decoder(ScreenCreate)
SCREEN_PATCH = Decoder(ScreenPatch)


@post("/", opt={"body": ScreenCreate}, summary="Create a screen: 1–4 feeds in a layout, with its own read token")
async def create_screen(request: AnyRequest, glimpze: App, principal: Caller) -> Screen:
    return await glimpze.screens.create(principal.project_id, await read_json(request, SCREEN_CREATE))


@get("/", summary="List screens, oldest first")
async def list_screens(
    glimpze: App, principal: Caller, limit: FromQuery[int] = DEFAULT_LIMIT, cursor: FromQuery[str | None] = None
) -> Page[Screen]:
    after = decode_cursor(cursor, int)
    return await glimpze.screens.page(principal.project_id, after=after, limit=check_limit(limit))


@get("/{screen_id:str}", summary="Read a screen, with its picture and kiosk URLs")
async def get_screen(screen_id: FromPath[str], glimpze: App, principal: Caller) -> Screen:
    return await glimpze.screens.get(principal.project_id, screen_id)


@patch("/{screen_id:str}", opt={"body": ScreenPatch}, summary="Change a screen's name, feeds, size, layout or theme")
async def update_screen(screen_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller) -> Screen:
    return await glimpze.screens.update(principal.project_id, screen_id, await read_json(request, SCREEN_PATCH))


@delete("/{screen_id:str}", summary="Delete a screen (it leaves every device's playlist)")
async def delete_screen(screen_id: FromPath[str], glimpze: App, principal: Caller) -> None:
    await glimpze.screens.delete(principal.project_id, screen_id)


@post(
    "/{screen_id:str}/rotate-read-token",
    status_code=200,
    summary="Replace the read token of the screen's picture and kiosk URLs; the old one stops at once",
)
async def rotate_screen_token(screen_id: FromPath[str], glimpze: App, principal: Caller) -> Screen:
    return await glimpze.screens.rotate_read_token(principal.project_id, screen_id)


router = Router(
    "/screens",
    route_handlers=[create_screen, list_screens, get_screen, update_screen, delete_screen, rotate_screen_token],
    tags=["screens"],
)
