"""Home (`/`): a grid of live tiles, one per feed, each drawn at its size class; and `/live`.

A tile shows the feed's widget state in HTML (the same state the widget's JSON and PNGs show:
an approval feed's oldest pending request and how many wait), when it was updated, and whether
it is late against its "expected every". Tapping one opens the feed page. The order is the
project's (tiles.py): the script drags tiles, or moves them with the keyboard, and saves the order
with `POST /tiles/order`; without the script, `/?arrange=1` has a form per move.

`/live` is the one live channel of every page: Server-Sent Events carrying change notices (a
kind and ids: live.py), never data. A page re-reads what a notice names: a tile (`GET
/feeds/{id}/tile`), the navigation's counts (`GET /counts`), or its own live regions. A page
that reconnects (or fell behind: `resync`) re-reads all of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec
from litestar import Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, ServerSentEvent, ServerSentEventMessage, Template

from glimpze.errors import ValidationFailed
from glimpze.feeds.events import ApprovalView, Event, Widget
from glimpze.feeds.feeds import Feed
from glimpze.feeds.tiles import Placement, TileOrder, arranged, is_stale, tile_size
from glimpze.services import Services
from glimpze.validation import Decoder
from glimpze.web.common import AnyRequest, App, read_json
from glimpze.web.dashboard.web import FRAGMENT, STREAM, DashboardUi, SignedIn, counts, form_of, page, redirect
from glimpze.web.dashboard.widgets import describe, project_feeds, widget_url
from glimpze.web.problems import EXCEPTION_HANDLERS as PROBLEM_HANDLERS

HEARTBEAT_SECONDS = 20
TILE_ORDER: Decoder[TileOrder] = Decoder(TileOrder)
STATUS_WORDS = {"success": "OK", "warning": "Warning", "info": "Info", "error": "Error"}
APPROVAL_WORDS = {"pending": "Waiting", "deferred": "Deferred", "approved": "Approved", "rejected": "Rejected"}


@dataclass(frozen=True, slots=True)
class PreviewFeed:
    """A feed that does not exist yet: the create dialog's example tiles."""

    id: str
    name: str
    schema_type: str


@dataclass(frozen=True, slots=True)
class TileView:
    """What a tile draws: the feed, its size, the event its widget shows, and how fresh it is."""

    feed: Feed | PreviewFeed
    size: str
    event: Event | None
    approval: ApprovalView | None
    expected_seconds: float | None
    stale: bool
    label: str  # the widget in words (screen readers, and the custom image's alt text)
    link: str | None  # a custom widget's own URL
    preview: bool = False  # an example in the create dialog: not a link, not live

    @property
    def content(self) -> dict[str, Any]:
        return self.event.content if self.event else {}

    @property
    def status_word(self) -> str:
        return STATUS_WORDS.get(str(self.content.get("status")), str(self.content.get("status", "")))

    @property
    def approval_word(self) -> str:
        view = self.approval or ApprovalView("pending", 0)
        if view.state in ("pending", "deferred") and view.waiting:
            return f"{view.waiting} waiting"
        return APPROVAL_WORDS.get(view.state, view.state)


def tile_view(feed: Feed, widget: Widget | None, placement: Placement, now: float) -> TileView:
    event = widget.event if widget else None
    received = None if event is None else _timestamp(event.received_at)
    return TileView(
        feed=feed,
        size=tile_size(placement, feed.schema_type),
        event=event,
        approval=widget.approval if widget else None,
        expected_seconds=placement.expected_seconds,
        stale=is_stale(received, placement.expected_seconds, now),
        label=describe(feed.schema_type, event.content if event else None),
        link=widget_url(event.content if event else None),
    )


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def home_tiles(glimpze: Services, project_id: str) -> list[TileView]:
    feeds = await project_feeds(glimpze, project_id)
    widgets = await glimpze.events.widgets(project_id)
    layout = await glimpze.tiles.layout(project_id)
    by_id = {feed.id: feed for feed in feeds}
    now = glimpze.clock.now()
    order = arranged([feed.id for feed in feeds], layout)
    return [tile_view(by_id[i], widgets.get(i), layout.get(i, Placement()), now) for i in order]


async def one_tile(glimpze: Services, project_id: str, feed_id: str) -> TileView:
    feed = await glimpze.feeds.get(project_id, feed_id)
    widget = await glimpze.events.widget_of(feed.id, feed.schema_type)
    placement = await glimpze.tiles.placement(feed.id)
    return tile_view(feed, widget, placement, glimpze.clock.now())


@get("/")
async def home_page(
    request: AnyRequest, glimpze: App, viewer: SignedIn, arrange: FromQuery[str | None] = None
) -> Template:
    tiles = await home_tiles(glimpze, viewer.project_id)
    return page(request, "home.html", title="Home", section="home", tiles=tiles, arranging=arrange is not None)


@get("/feeds/{feed_id:str}/tile", opt={FRAGMENT: True})
async def tile_fragment(glimpze: App, viewer: SignedIn, feed_id: FromPath[str]) -> Template:
    """One tile's HTML, for the script to swap in after a notice about its feed."""
    tile = await one_tile(glimpze, viewer.project_id, feed_id)
    return Template(template_name="tile.html", context={"tile": tile, "arranging": False, "csrf": viewer.csrf})


@get("/counts", opt={FRAGMENT: True})
async def nav_counts(glimpze: App, viewer: SignedIn) -> dict[str, int]:
    """The navigation's counts (approvals waiting, unread conversations), for the script."""
    return await counts(glimpze, viewer.project_id)


@post("/tiles/order", opt={STREAM: True}, exception_handlers=PROBLEM_HANDLERS)
async def save_order(request: AnyRequest, glimpze: App, viewer: SignedIn) -> Response[bytes]:
    """The script's `{"feeds": [...]}` after a drag or a keyboard move (problem+json on errors)."""
    await glimpze.tiles.reorder(viewer.project_id, await read_json(request, TILE_ORDER))
    return Response(b"", status_code=204)


@post("/tiles/{feed_id:str}/move")
async def move_tile(request: AnyRequest, glimpze: App, viewer: SignedIn, feed_id: FromPath[str]) -> Redirect:
    """Without the script: move one tile a place earlier or later (`direction`), back to arranging."""
    form = await form_of(request)
    direction: Literal["earlier", "later"] | str = form["direction"]
    if direction not in ("earlier", "later"):
        raise ValidationFailed.at("direction", "must be earlier or later")
    order = [tile.feed.id for tile in await home_tiles(glimpze, viewer.project_id)]
    if feed_id not in order:
        await glimpze.feeds.get(viewer.project_id, feed_id)  # 404 for another project's feed
    at = order.index(feed_id)
    to = at - 1 if direction == "earlier" else at + 1
    if 0 <= to < len(order):
        order[at], order[to] = order[to], order[at]
        await glimpze.tiles.reorder(viewer.project_id, TileOrder(order))
    return redirect(f"/?arrange=1#tile-{feed_id}")


# The live channel


@get("/live", opt={STREAM: True})
async def live(request: AnyRequest, glimpze: App, viewer: SignedIn, ui: DashboardUi) -> ServerSentEvent:
    cookie = request.cookies.get(ui.session_cookie)
    return ServerSentEvent(_notices(glimpze, viewer.project_id, cookie))


async def _notices(glimpze: Services, project_id: str, cookie: str | None) -> AsyncIterator[ServerSentEventMessage]:
    subscription = glimpze.changes.subscribe(project_id)
    try:
        # "ready", not the stream's opening: the browser's `open` fires with the headers, which may
        # leave before this subscription exists; a change in between would never be told.
        yield ServerSentEventMessage(event="ready", data="{}", retry=3000)
        while not glimpze.stopping.is_set() and not glimpze.changes.stopping:
            change = await subscription.next(HEARTBEAT_SECONDS)
            if glimpze.stopping.is_set() or glimpze.changes.stopping:
                return
            if change is None:
                if await glimpze.admin.session(cookie) is None:  # signed out meanwhile
                    return
                yield ServerSentEventMessage(comment="ping")
                continue
            yield ServerSentEventMessage(data=msgspec.json.encode(change).decode(), event="change")
    finally:
        subscription.close()


ROUTES = [home_page, tile_fragment, nav_counts, save_order, move_tile, live]
