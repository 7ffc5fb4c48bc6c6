"""Widget readers, with a feed's read token (`gzr_…` as a Bearer header or `?token=`):
`GET /w/{feed_id}.json` and `GET /w/{feed_id}/{small|medium|large}.png?theme=light|dark`."""

from __future__ import annotations

from typing import Literal

from litestar import Response, Router, get
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect

from glimpze.errors import NotFound
from glimpze.feeds.feeds import ReaderFeed
from glimpze.feeds.images import WIDGET_PIXELS
from glimpze.feeds.widgets import WidgetDocument
from glimpze.web.common import AnyRequest, App, bearer, client_address, known_etags

# Devices poll: they must revalidate (the ETag makes that a cheap 304), and the token in the
# URL means no shared cache may keep the answer.
_HEADERS = {"Cache-Control": "private, no-cache", "X-Content-Type-Options": "nosniff"}


async def _reader(request: AnyRequest, glimpze: App, feed_id: str, token: str | None) -> ReaderFeed:
    return await glimpze.widgets.open(feed_id, bearer(request) or token, client_address(request, glimpze))


@get("/{target:str}", summary="The feed's current widget state as JSON (path: {feed_id}.json)")
async def widget_json(
    target: FromPath[str], request: AnyRequest, glimpze: App, token: FromQuery[str | None] = None
) -> Response[WidgetDocument]:
    feed_id, dot, ext = target.rpartition(".")
    if not dot or ext != "json":
        raise NotFound(f"No widget document at /w/{target}; try /w/{{feed_id}}.json.")
    feed = await _reader(request, glimpze, feed_id, token)
    return Response(await glimpze.widgets.document(feed), headers=_HEADERS)


@get(
    "/{feed_id:str}/{image:str}",
    summary="The widget drawn as a PNG of the exact widget size (image: small.png, medium.png or large.png)",
    media_type="image/png",
)
async def widget_png(
    feed_id: FromPath[str],
    image: FromPath[str],
    request: AnyRequest,
    glimpze: App,
    theme: FromQuery[Literal["light", "dark"]] = "light",
    token: FromQuery[str | None] = None,
) -> Response[bytes]:
    feed = await _reader(request, glimpze, feed_id, token)
    size, dot, ext = image.partition(".")
    if ext != "png" or size not in WIDGET_PIXELS:
        raise NotFound(f"No widget image {image!r}; sizes: {', '.join(f'{s}.png' for s in WIDGET_PIXELS)}.")
    picture = await glimpze.widgets.picture(feed, size, theme, known_etags(request))
    headers = {**_HEADERS, "ETag": picture.etag}
    if picture.redirect is not None:
        return Redirect(picture.redirect, status_code=302, headers=headers, media_type="text/plain")
    if picture.png is None:
        return Response(b"", status_code=304, headers=headers)
    return Response(picture.png, media_type="image/png", headers=headers)


router = Router(
    "/w",
    route_handlers=[widget_json, widget_png],
    tags=["widgets"],
    security=[{"readToken": []}, {"readTokenQuery": []}],
)
