"""A feed's widget as the dashboard shows it: its PNGs at each size (the feed page's preview and a
custom feed's tile), behind the session instead of a read token, and its content in words.

The pictures are the widget readers' own PNGs (widgets.py, the same ETags).
"""

from __future__ import annotations

from typing import Any, Literal

from litestar import Response, get
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect

from glimpze.errors import NotFound
from glimpze.feeds.feeds import Feed, ReaderFeed
from glimpze.feeds.images import WIDGET_PIXELS
from glimpze.services import Services
from glimpze.store.pagination import MAX_LIMIT, all_pages
from glimpze.web.common import AnyRequest, App, known_etags
from glimpze.web.dashboard.web import SignedIn

SIZES = tuple(WIDGET_PIXELS)  # small, medium, large
MAX_FEEDS_SHOWN = 500


def describe(schema_type: str, content: dict[str, Any] | None) -> str:
    """A widget's content in words: the pictures' alt text and the event log's summary."""
    if not content:
        return "No event yet"
    c = content
    if schema_type == "summary":
        extra = f" ({c['secondary_value']})" if c.get("secondary_value") else ""
        return f"{c.get('title', '')}: {c.get('primary_value', '')}{extra}"
    if schema_type == "status":
        extra = f" – {c['details']}" if c.get("details") else ""
        return f"{c.get('title', '')}: {c.get('status', '')}, {c.get('message', '')}{extra}"
    if schema_type == "counter":
        parts = [f"{c.get('title', '')}: {c.get('count', '')}"]
        if c.get("unit"):
            parts.append(str(c["unit"]))
        text = " ".join(parts)
        if c.get("trend") or c.get("trendValue"):
            text += f", trend {c.get('trend') or ''} {c.get('trendValue') or ''}".rstrip()
        return text
    if schema_type == "approval":
        return f"Approval: {c.get('description', '')}"
    if schema_type == "custom":
        sizes = [size for size in SIZES if c.get(size)]
        return f"Custom image ({', '.join(sizes)})" + (f", opens {c['widget_url']}" if c.get("widget_url") else "")
    return schema_type


def widget_url(content: dict[str, Any] | None) -> str | None:
    url = (content or {}).get("widget_url")
    return url if isinstance(url, str) and url.lower().startswith(("http://", "https://")) else None


async def project_feeds(glimpze: Services, project_id: str) -> list[Feed]:
    return await all_pages(
        lambda after: glimpze.feeds.page(project_id, after=after, limit=MAX_LIMIT), most=MAX_FEEDS_SHOWN
    )


@get("/feeds/{feed_id:str}/widget/{image:str}")
async def widget_image(
    request: AnyRequest,
    glimpze: App,
    viewer: SignedIn,
    feed_id: FromPath[str],
    image: FromPath[str],
    theme: FromQuery[Literal["light", "dark"]] = "light",
) -> Response[bytes] | Redirect:
    size, _, ext = image.partition(".")
    if ext != "png" or size not in WIDGET_PIXELS:
        raise NotFound(f"No widget image {image!r}.")
    feed = await glimpze.feeds.get(viewer.project_id, feed_id)
    reader = ReaderFeed(feed.id, feed.name, feed.schema_type)
    picture = await glimpze.widgets.picture(reader, size, theme, known_etags(request))
    headers = {"ETag": picture.etag, "Cache-Control": "private, no-cache"}
    if picture.redirect is not None:
        return Redirect(picture.redirect, status_code=302, headers=headers)
    if picture.png is None:
        return Response(b"", status_code=304, headers=headers)
    return Response(picture.png, media_type="image/png", headers=headers)


ROUTES = [widget_image]
