"""`/v1/settings`: project settings (widget origins)."""

from __future__ import annotations

from litestar import Request, Router, get, put

from glimpze.routes.common import App, Caller, read_json
from glimpze.settings import WidgetOriginList
from glimpze.validation import Decoder

WIDGET_ORIGINS = Decoder(WidgetOriginList)


@put(
    "/widget-origins",
    opt={"body": WidgetOriginList},
    summary="Set the browser origins allowed to call the visitor API (/widget/v1)",
)
async def put_widget_origins(request: Request, glimpze: App, principal: Caller) -> WidgetOriginList:
    data = await read_json(request, WIDGET_ORIGINS)
    return WidgetOriginList(await glimpze.settings.set_widget_origins(principal.project_id, data.origins))


@get("/widget-origins", summary="The browser origins allowed to call the visitor API")
async def get_widget_origins(glimpze: App, principal: Caller) -> WidgetOriginList:
    return WidgetOriginList(await glimpze.settings.widget_origins(principal.project_id))


router = Router("/settings", route_handlers=[put_widget_origins, get_widget_origins], tags=["settings"])
