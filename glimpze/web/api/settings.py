"""`/v1/settings`: project settings (widget origins, quiet hours)."""

from __future__ import annotations

from litestar import Router, delete, get, put

from glimpze.accounts.settings import WidgetOriginList
from glimpze.push.quiet_hours import QuietHoursSpec, QuietHoursState
from glimpze.validation import Decoder
from glimpze.web.common import AnyRequest, App, Caller, read_json

WIDGET_ORIGINS: Decoder[WidgetOriginList] = Decoder(WidgetOriginList)
QUIET_HOURS: Decoder[QuietHoursSpec] = Decoder(QuietHoursSpec)


@put(
    "/widget-origins",
    opt={"body": WidgetOriginList},
    summary="Set the browser origins allowed to call the visitor API (/widget/v1)",
)
async def put_widget_origins(request: AnyRequest, glimpze: App, principal: Caller) -> WidgetOriginList:
    data = await read_json(request, WIDGET_ORIGINS)
    return WidgetOriginList(await glimpze.settings.set_widget_origins(principal.project_id, data.origins))


@get("/widget-origins", summary="The browser origins allowed to call the visitor API")
async def get_widget_origins(glimpze: App, principal: Caller) -> WidgetOriginList:
    return WidgetOriginList(await glimpze.settings.widget_origins(principal.project_id))


@put(
    "/quiet-hours",
    opt={"body": QuietHoursSpec},
    summary="Set quiet hours: local start and end (may cross midnight) and an IANA time zone",
)
async def put_quiet_hours(request: AnyRequest, glimpze: App, principal: Caller) -> QuietHoursState:
    return await glimpze.push.set_quiet_hours(principal.project_id, await read_json(request, QUIET_HOURS))


@get("/quiet-hours", summary="The project's quiet hours, and whether they are on now")
async def get_quiet_hours(glimpze: App, principal: Caller) -> QuietHoursState:
    return glimpze.quiet_hours.state(principal.project_id)


@delete("/quiet-hours", summary="Turn quiet hours off (held approvals are pushed at once)")
async def delete_quiet_hours(glimpze: App, principal: Caller) -> None:
    await glimpze.push.clear_quiet_hours(principal.project_id)


router = Router(
    "/settings",
    route_handlers=[put_widget_origins, get_widget_origins, put_quiet_hours, get_quiet_hours, delete_quiet_hours],
    tags=["settings"],
)
