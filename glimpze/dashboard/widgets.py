"""The Widgets page (`/`): every feed's widget at each size, updated live over Server-Sent Events.

The pictures are the widget readers' own PNGs (widgets.py, the same ETags), behind the session
instead of a read token. `/live` follows the project's outgoing events from the cursor the page
was drawn at: a `feed.event` that updates a widget becomes a `widget` message, and the page swaps
that feed's pictures; `approval.requested` and `approval.responded` become `approval` messages, on
which the approvals pages redraw their live part. The stream ends when the server stops or the
session does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get
from litestar.params import FromPath, FromQuery, HeaderParameter
from litestar.response import Redirect, ServerSentEvent, ServerSentEventMessage, Template

from glimpze.core import Glimpze
from glimpze.dashboard.web import STREAM, glimpze_of, page, ui_of, viewer
from glimpze.errors import Gone, NotFound
from glimpze.feeds import Feed, ReaderFeed
from glimpze.images import WIDGET_PIXELS
from glimpze.pagination import MAX_LIMIT, all_pages, decode_cursor
from glimpze.routes.common import known_etags

AnyRequest = Request[Any, Any, Any]

SIZES = tuple(WIDGET_PIXELS)  # small, medium, large
LIVE_TYPES = ["feed.event", "approval.requested", "approval.responded"]
HEARTBEAT_SECONDS = 20
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


async def project_feeds(glimpze: Glimpze, project_id: str) -> list[Feed]:
    return await all_pages(
        lambda after: glimpze.feeds.list(project_id, after=after, limit=MAX_LIMIT), most=MAX_FEEDS_SHOWN
    )


@get("/", include_in_schema=False)
async def widgets_page(request: AnyRequest) -> Template:
    glimpze, v = glimpze_of(request), viewer(request)
    feeds = await project_feeds(glimpze, v.project_id)
    states = await glimpze.ingest.widgets(v.project_id)
    widgets = []
    for feed in feeds:
        event = states.get(feed.id)
        content = event.content if event else None
        widgets.append(
            {
                "feed": feed,
                "event": event,
                "label": f"{feed.name} widget: {describe(feed.schema_type, content)}",
                "url": widget_url(content),
                "version": event.id if event else "none",
            }
        )
    cursor = await glimpze.outbox.head()
    return page(
        request, "widgets.html", title="Widgets", section="widgets", widgets=widgets, sizes=SIZES, cursor=cursor
    )


@get("/feeds/{feed_id:str}/widget/{image:str}", include_in_schema=False)
async def widget_image(
    request: AnyRequest,
    feed_id: FromPath[str],
    image: FromPath[str],
    theme: FromQuery[Literal["light", "dark"]] = "light",
) -> Response[Any]:
    glimpze, v = glimpze_of(request), viewer(request)
    size, _, ext = image.partition(".")
    if ext != "png" or size not in WIDGET_PIXELS:
        raise NotFound(f"No widget image {image!r}.")
    feed = await glimpze.feeds.get(v.project_id, feed_id)
    reader = ReaderFeed(feed.id, feed.name, feed.schema_type)
    picture = await glimpze.widgets.picture(reader, size, theme, known_etags(request))
    headers = {"ETag": picture.etag, "Cache-Control": "private, no-cache"}
    if picture.redirect is not None:
        return Redirect(picture.redirect, status_code=302, headers=headers)
    if picture.png is None:
        return Response(b"", status_code=304, headers=headers)
    return Response(picture.png, media_type="image/png", headers=headers)


@get("/live", opt={STREAM: True}, include_in_schema=False)
async def live(
    request: AnyRequest,
    after: FromQuery[str | None] = None,
    last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID")] = None,
) -> ServerSentEvent:
    glimpze, v, ui = glimpze_of(request), viewer(request), ui_of(request)
    cursor = last_event_id or after or await glimpze.outbox.head()
    decode_cursor(cursor, int)  # a malformed cursor is a 422 now, not a broken stream later
    cookie = request.cookies.get(ui.session_cookie)
    return ServerSentEvent(_live_messages(glimpze, v.project_id, cursor, cookie))


async def _live_messages(
    glimpze: Glimpze, project_id: str, cursor: str, cookie: str | None
) -> AsyncIterator[ServerSentEventMessage]:
    yield ServerSentEventMessage(comment="live", retry=3000)
    while not glimpze.stopping.is_set():
        try:
            polled = await glimpze.outbox.poll(
                project_id, cursor=cursor, types=LIVE_TYPES, wait=HEARTBEAT_SECONDS, limit=100
            )
        except Gone:  # the page was open longer than outgoing events are kept
            cursor = await glimpze.outbox.head()
            continue
        if glimpze.stopping.is_set() or await glimpze.admin.session(cookie) is None:
            return
        messages = [m for raw in polled.data for m in _messages(raw)]
        for i, message in enumerate(messages):
            if i == len(messages) - 1:
                message.id = polled.next_cursor  # a reconnecting browser resumes after the batch
            yield message
        if not messages:
            yield ServerSentEventMessage(comment="ping", id=polled.next_cursor if polled.data else None)
        cursor = polled.next_cursor


def _messages(raw: msgspec.Raw) -> list[ServerSentEventMessage]:
    """What the pages hear of one outgoing event: `widget` (a feed's pictures changed: a widget-updating
    event, or an answer that changes an approval widget's state) and `approval` (the inbox changed)."""
    event = msgspec.json.decode(raw)
    kind = event.get("event")
    messages = []
    if kind == "feed.event" and (event.get("intent") or {}).get("update_widget", True):
        data = {
            "feed_id": event["feed_id"],
            "event_id": event["id"],
            "received_at": event["occurred_at"],
            "label": describe(event.get("schema_type", ""), event.get("content")),
            "widget_url": widget_url(event.get("content")),
        }
        messages.append(_sse("widget", data))
    if kind in ("approval.requested", "approval.responded"):
        approval = {
            "event_id": event["event_id"],
            "feed_id": event["feed_id"],
            "status": event.get("status", "pending"),
        }
        messages.append(_sse("approval", approval))
    if kind == "approval.responded":
        # The picture's URL changes with the answer, so the page fetches the new state; its label stays.
        state = {"feed_id": event["feed_id"], "event_id": event["id"], "received_at": event["occurred_at"]}
        messages.append(_sse("widget", {**state, "label": None, "widget_url": None}))
    return messages


def _sse(name: str, data: dict[str, Any]) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=msgspec.json.encode(data).decode(), event=name)


ROUTES = [widgets_page, widget_image, live]
